"""The command-line entry point: help, version, exit codes, one-line errors."""

from __future__ import annotations

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


def test_unknown_command_is_usage_error() -> None:
    proc = run("frobnicate")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


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
