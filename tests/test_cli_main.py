"""The command-line entry point: help, version, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

from socketkit.cli.exit_codes import ExitStatus, status_for
from socketkit.cli.main import COMMANDS


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socketkit", *args], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("socketkit ")


def test_help_lists_every_command() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout


def test_no_command_is_usage_error() -> None:
    proc = run()
    assert proc.returncode == ExitStatus.USAGE
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "socketkit: a command is needed: " + ", ".join(COMMANDS),
        "see 'socketkit --help'",
    ]


def test_unknown_command_is_usage_error() -> None:
    proc = run("frobnicate")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0].startswith("socketkit: argument COMMAND: invalid choice")
    assert proc.stderr.splitlines()[1:] == ["see 'socketkit --help'"]


def test_a_negative_value_is_judged_as_a_value() -> None:
    """ping has -4 and -6, which makes argparse read "-1" as an option ("expected one
    argument"); the message must be about -1 itself."""
    proc = run("ping", "-c", "-1", "127.0.0.1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "socketkit ping: argument -c: '-1': out of range: value >= 1",
        "see 'socketkit ping --help'",
    ]
    assert (
        run("ping", "-4", "-c", "1", "-W", "1", "127.0.0.1").returncode == 0
    )  # -4 still an option


def test_debug_shows_the_traceback_and_keeps_the_exit_code() -> None:
    quiet = run("ping", "-4", "::1")
    loud = run("--debug", "ping", "-4", "::1")
    assert quiet.returncode == loud.returncode == ExitStatus.RESOLVE
    assert "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.splitlines()[-1] == quiet.stderr.strip()


def test_status_for_maps_error_tree() -> None:
    import socketkit as sk

    assert status_for(sk.ResolutionError("x")) == ExitStatus.RESOLVE
    assert status_for(sk.AddressError("x")) == ExitStatus.USAGE
    assert status_for(sk.ConnectTimeout("x")) == ExitStatus.TIMEOUT
    assert status_for(sk.ConnectionRefused("x")) == ExitStatus.REFUSED
    assert status_for(sk.TLSError("x")) == ExitStatus.TLS
    assert status_for(sk.PermissionDenied("x")) == ExitStatus.PERMISSION
    assert status_for(OSError(28, "No space left on device")) == ExitStatus.IO
    assert status_for(ZeroDivisionError()) == ExitStatus.INTERNAL


def test_an_unwritable_stderr_keeps_the_exit_code() -> None:
    """With stderr closed or full, a refused connect still exits 4 and a usage error 2 (both
    were Python's exit 1: the error line itself failed)."""
    refused = [sys.executable, "-m", "socketkit", "connect", "127.0.0.1", "1"]
    usage = [sys.executable, "-m", "socketkit", "connect", "127.0.0.1", "70000"]
    with open("/dev/full", "w") as full:
        for argv, status in ((refused, 4), (usage, 2)):
            closed = subprocess.run(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=60, preexec_fn=lambda: os.close(2))  # fmt: skip
            assert closed.returncode == status
            assert (
                subprocess.run(argv, stdin=subprocess.DEVNULL, stderr=full, timeout=60).returncode
                == status
            )
