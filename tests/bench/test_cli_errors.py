"""``socketkit bench`` command-line errors: checked before any work, one line, the right code.

And its ``--help``: every option described with its default, the exit codes it can return.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.procs import running

from .helpers import SK, free_port, wait_for_first_interval, wait_listening


def _sk(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SK, *args], capture_output=True, text=True, timeout=timeout)


def _one_line_usage(proc: subprocess.CompletedProcess[str], prog: str) -> str:
    """A usage error: exit 2, nothing on stdout, one line + where to read more."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[1] == f"see '{prog} --help'"
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("mode", ["server", "client"])
@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_port_out_of_range_is_a_usage_error(mode: str, port: str) -> None:
    args = ["bench", mode, f"--port={port}"] + (["127.0.0.1"] if mode == "client" else [])
    line = _one_line_usage(_sk(*args), f"socketkit bench {mode}")
    valid = "0..65535" if mode == "server" else "1..65535"
    assert f"'{port}'" in line and valid in line, line


@pytest.mark.parametrize(
    ("option", "value", "expect"),
    [
        ("-b", "fast", "'fast' is not a rate"),
        ("-l", "1x", "'1x' is not a size"),
        ("-n", "lots", "'lots' is not a size"),
        ("-w", "-5", "'-5' is not a size"),
        ("-w", "1T", "'1T' is too large"),
    ],
)
def test_bad_number_says_what_a_valid_one_looks_like(option: str, value: str, expect: str) -> None:
    line = _one_line_usage(
        _sk("bench", "client", "127.0.0.1", option, value), "socketkit bench client"
    )
    assert expect in line, line
    assert "_rate" not in line and "_size" not in line
    assert re.search(r"(e\.g\.|at most) \S+", line), line


@pytest.mark.parametrize(
    "args",
    [
        ["-t", "-1"],
        ["-t", "nan"],
        ["-i", "-1"],
        ["-O", "-2"],
        ["-P", "0"],
        ["-P", "129"],
        ["-k", "-3"],
        ["--connect-timeout", "0"],
    ],
)
def test_client_range_checks_before_any_work(args: list[str]) -> None:
    _one_line_usage(_sk("bench", "client", "127.0.0.1", *args), "socketkit bench client")


@pytest.mark.parametrize(
    "args",
    [
        ["--max-tests", "-1"],
        ["--max-tests", "0"],
        ["--max-tests-per-host", "0"],
        ["--control-timeout", "0"],
        ["--control-timeout", "inf"],
    ],
)
def test_server_range_checks(args: list[str]) -> None:
    _one_line_usage(_sk("bench", "server", *args), "socketkit bench server")


def test_unwritable_plot_is_refused_before_the_test(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens: a test that ran would exit 4, not 9
    target = tmp_path / "nonexist" / "x.svg"
    proc = _sk("bench", "client", "127.0.0.1", "-p", str(closed), "-t", "1", "--plot", str(target))
    assert proc.returncode == 9, proc.stderr
    assert proc.stdout == ""  # not even "Connecting to host"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("socketkit bench: cannot write --plot file ")
    assert "[Errno" not in lines[0] and str(target) in lines[0]
    assert not target.exists()


def test_plot_into_a_directory_is_refused(tmp_path: Path) -> None:
    proc = _sk("bench", "client", "127.0.0.1", "-p", str(free_port()), "--plot", str(tmp_path))
    assert proc.returncode == 9 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("where", ["top", "bench", "client"])
def test_debug_reaches_the_client(where: str) -> None:
    closed = str(free_port())
    argv = {
        "top": ["--debug", "bench", "client", "127.0.0.1", "-p", closed, "-t", "1"],
        "bench": ["bench", "--debug", "client", "127.0.0.1", "-p", closed, "-t", "1"],
        "client": ["bench", "client", "--debug", "127.0.0.1", "-p", closed, "-t", "1"],
    }[where]
    proc = _sk(*argv)
    assert proc.returncode == 4  # refused, the documented code: --debug does not change it
    # --debug: the traceback as well as the line (as for every other command).
    assert "Traceback (most recent call last)" in proc.stderr, proc.stderr


def test_bench_debug_reaches_the_server() -> None:
    proc = _sk("bench", "--debug", "server", "-B", "nosuchhost.invalid", "-p", str(free_port()))
    assert proc.returncode == 3  # the name did not resolve
    assert "Traceback (most recent call last)" in proc.stderr, proc.stderr


def test_listening_line_brackets_ipv6() -> None:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port)]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        assert srv.stdout is not None
        line = srv.stdout.readline().decode()
    assert f"listening on [::]:{port} " in line, line
    assert ":::" not in line
    argv4 = [*SK, "bench", "server", "-p", str(port), "-B", "127.0.0.1"]
    with running(argv4, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        assert srv.stdout is not None
        line = srv.stdout.readline().decode()
    assert f"listening on 127.0.0.1:{port} " in line, line


def test_server_bind_to_unknown_name_exits_3() -> None:
    proc = _sk("bench", "server", "-B", "nosuchhost.invalid", "-p", str(free_port()))
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "resolve" in proc.stderr


def test_server_interrupted_exits_130_with_one_line() -> None:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port), "-B", "127.0.0.1"]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        time.sleep(0.2)
        srv.send_signal(signal.SIGINT)
        _out, err = srv.communicate(timeout=15)
        assert srv.returncode == 130
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


# --help -----------------------------------------------------------------------------------


def _options(help_text: str) -> dict[str, str]:
    """``--help`` parsed: option strings -> their description (all lines of it)."""
    opts: dict[str, str] = {}
    current = ""
    in_options = False
    for line in help_text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            in_options = line.startswith(("options", "optional arguments"))
            current = ""
            continue
        if not in_options:
            continue
        m = re.match(r"^  (-[^ ].*?)(?:  +(\S.*))?$", line)
        if m:
            current = m.group(1)
            opts[current] = m.group(2) or ""
        elif current and line.startswith("      "):
            opts[current] += " " + line.strip()
    return opts


def _exit_codes(help_text: str) -> set[int]:
    m = re.search(r"^exit codes:(.*?)(?:\n\n|\Z)", help_text, re.S | re.M)
    assert m, help_text
    return {int(n) for n in re.findall(r"(?<![\w.-])(\d+) ", m.group(1))}


# The codes each command can return (docs/bench.md, "Exit codes").
CODES = {
    "bench": {0, 1, 2, 70, 130},
    "bench server": {0, 1, 2, 3, 8, 70, 130},
    "bench client": {0, 1, 2, 3, 4, 5, 7, 9, 10, 70, 130},
}


@pytest.mark.parametrize("command", list(CODES))
def test_help_describes_every_option_with_its_default(command: str) -> None:
    proc = _sk(*command.split(), "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    opts = _options(text)
    assert "--debug" in " ".join(opts), text
    for names, desc in opts.items():
        assert desc.strip(), f"{names}: no description"
        if names.startswith("-h, --help"):
            continue
        takes_value = bool(re.search(r" [A-Z]{1,}", names))
        if takes_value:
            assert "default" in desc, f"{names}: {desc!r} does not show its default"
    assert _exit_codes(text) == CODES[command], text


def test_server_help_has_description_and_examples() -> None:
    text = _sk("bench", "server", "--help").stdout
    body = text.split("\n\n")
    assert len(body) > 2 and "iperf3" in body[1], text  # a description after the usage
    assert "\nexamples:\n" in text
    assert "socketkit bench server -p" in text


# Interrupted and failed tests in JSON modes ---------------------------------------------


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port), "-B", "127.0.0.1"]
    with running(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_listening(port)
        yield port


def _interrupted(port: int, *mode: str) -> tuple[int, str, str]:
    argv = [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "8", *mode]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        if "-J" in mode:
            time.sleep(1.5)
        else:
            wait_for_first_interval(proc.stdout)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    return proc.returncode, out.decode(), err.decode()


def test_interrupted_json_says_interrupted(server_port: int) -> None:
    rc, out, err = _interrupted(server_port, "-J")
    assert rc == 130
    doc = json.loads(out)
    assert doc["error"] == "interrupted" and doc["end"] == {}
    assert err.splitlines() == ["socketkit bench: interrupted"]
    assert "KeyboardInterrupt" not in out + err


def test_interrupted_json_stream_ends_with_an_error_event(server_port: int) -> None:
    rc, out, err = _interrupted(server_port, "--json-stream")
    assert rc == 130
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1] == {"event": "error", "data": {"error": "interrupted"}}
    assert err.splitlines() == ["socketkit bench: interrupted"]


@pytest.mark.parametrize("direction", [[], ["-R"]], ids=["sender", "-R receiver"])
def test_interrupted_text_says_interrupted_after_a_partial_summary(
    server_port: int, direction: list[str]
) -> None:
    """As iperf3 on Ctrl-C: the interval under way, then what this side counted."""
    rc, out, err = _interrupted(server_port, "-i", "0.5", *direction)
    assert rc == 130
    assert err.splitlines() == ["socketkit bench: interrupted"]
    lines = out.splitlines()
    role = "receiver" if direction else "sender"
    assert lines[-2] == "- - - - - - - - - - - - - - - - - - - - - - - - -"
    summary = lines[-1]
    assert summary.startswith("[SUM]         0.00-"), summary
    assert f"  {role}" in summary and summary.endswith("(interrupted: this side's count only)")
    intervals = [line for line in lines if line.startswith("[  1]")]
    # The summary spans every interval reported, the last (partial) one included.
    assert intervals and summary.split()[1].split("-")[1] == intervals[-1].split()[2].split("-")[1]


def test_failed_test_with_json_prints_a_json_error() -> None:
    closed = free_port()
    proc = _sk("bench", "client", "127.0.0.1", "-p", str(closed), "-t", "1", "-J")
    assert proc.returncode == 4
    doc = json.loads(proc.stdout)  # iperf3 -J prints its error in the JSON document too
    assert "refused" in doc["error"].lower() and doc["end"] == {}
    assert len(proc.stderr.splitlines()) == 1 and "refused" in proc.stderr.lower()


def test_latency_with_length_zero_is_still_a_latency_test(server_port: int) -> None:
    """-l 0 means "the default" (as in iperf3): 64 bytes with --latency, not a silent switch
    to a throughput test."""
    proc = _sk(
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        str(server_port),
        "--latency",
        "-l",
        "0",
        "-t",
        "0.5",
        "-J",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["socketkit"]["latency"]["count"] > 0
    assert doc["start"]["test_start"]["blksize"] == 64


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--latency", "-R"], "-R does not apply"),
        (["--latency", "--bidir"], "--bidir does not apply"),
        (["--latency", "-n", "1M"], "-n does not apply"),
        (["--latency", "-b", "1M"], "-b does not apply"),
        (["-u", "-M", "1000"], "-M/--set-mss is a TCP option"),
        (["-u", "-N"], "-N is a TCP option"),
        (["--gso"], "--gso/--no-gso is a UDP option"),
        (["--udp-counters-64bit"], "--udp-counters-64bit is a UDP option"),
        (["-n", "1M", "-k", "5"], "-n and -k both end the test"),
        (["-J", "--json-stream"], "-J and --json-stream"),
        (["--bidir", "-R"], "cannot be both reverse and bidirectional"),
        (["-R", "--bidir", "-u"], "cannot be both reverse and bidirectional"),
    ],
)
def test_options_that_cannot_apply_are_refused(args: list[str], expect: str) -> None:
    line = _one_line_usage(_sk("bench", "client", "127.0.0.1", *args), "socketkit bench client")
    assert expect in line, line


def test_time_zero_runs_until_interrupted(server_port: int) -> None:
    argv = [*SK, "bench", "client", "127.0.0.1", "-p", str(server_port), "-t", "0", "-i", "0.5"]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        lines = 0
        while lines < 4:  # 2 s of intervals: not a 0 s test
            lines += b"sec" in proc.stdout.readline()
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.decode().splitlines() == ["socketkit bench: interrupted"]
