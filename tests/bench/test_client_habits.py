"""iperf3 client options users type: ``-C`` (congestion control, both ends), ``-B`` (the
local address) and ``--logfile``; each against iperf3 on the other end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening


def _against(server: list[str], client: list[str]) -> tuple[int, dict[str, object], str]:
    port = free_port()
    with running([*server, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE):
        wait_listening(port)
        return run_json([*client, "-p", str(port), "-t", "1", "-J"])


@pytest.mark.parametrize("server", ["iperf3", "socketkit"])
def test_congestion_control_is_set_at_both_ends(server: str) -> None:
    """reno is built into every Linux kernel, and is nobody's default here."""
    iperf3 = require_tool("iperf3")
    argv = [iperf3, "-s", "-1"] if server == "iperf3" else [*SK, "bench", "-s", "-1"]
    status, doc, err = _against(argv, [*SK, "bench", "-c", "127.0.0.1", "-C", "reno"])
    assert status == 0, err
    end = doc["end"]
    assert isinstance(end, dict)
    assert (end["sender_tcp_congestion"], end["receiver_tcp_congestion"]) == ("reno", "reno")


def test_iperf3_dash_c_congestion_against_the_socketkit_server() -> None:
    iperf3 = require_tool("iperf3")
    status, doc, err = _against(
        [*SK, "bench", "-s", "-1"], [iperf3, "-c", "127.0.0.1", "-C", "reno"]
    )
    assert status == 0, err
    end = doc["end"]
    assert isinstance(end, dict)
    assert end["receiver_tcp_congestion"] == "reno"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-C", "no_such_algo"], "congestion control 'no_such_algo' is not available on this host"),
        (["-u", "-C", "reno"], "-C/--congestion is a TCP option; drop it or -u"),
    ],
)
def test_congestion_mistakes_are_usage_errors_before_connecting(
    args: list[str], message: str
) -> None:
    closed = free_port()  # nothing listens: a check made after connecting would say "refused"
    proc = subprocess.run(
        [*SK, "bench", "-c", "127.0.0.1", "-p", str(closed), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0].startswith(f"socketkit bench client: {message}")


def test_bind_puts_every_connection_on_the_local_address() -> None:
    iperf3 = require_tool("iperf3")
    client = [*SK, "bench", "-c", "127.0.0.1", "-B", "127.0.0.2", "-P", "2"]
    status, doc, err = _against([iperf3, "-s", "-1"], client)
    assert status == 0, err
    start = doc["start"]
    assert isinstance(start, dict)
    assert [c["local_host"] for c in start["connected"]] == ["127.0.0.2", "127.0.0.2"]


def test_logfile_takes_the_output_and_is_checked_first(tmp_path: Path) -> None:
    iperf3 = require_tool("iperf3")
    log = tmp_path / "bench.log"
    port = free_port()
    with running([iperf3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL):
        wait_listening(port)
        argv = [*SK, "bench", "-c", "127.0.0.1", "-p", str(port), "-t", "1", "--logfile", str(log)]
        proc = subprocess.run([*argv, "-J"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert json.loads(log.read_text())["end"]["sum_received"]["bytes"] > 0
    closed, missing = free_port(), tmp_path / "no" / "x"
    bad = subprocess.run(
        [*SK, "bench", "-c", "127.0.0.1", "-p", str(closed), "--logfile", str(missing)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 9  # before connecting: refused would be 4
    assert bad.stderr == (
        f"socketkit bench: cannot write --logfile {missing}: no such directory {missing.parent}\n"
    )


def test_a_failed_test_says_so_on_stderr_not_in_the_logfile(tmp_path: Path) -> None:
    log, closed = tmp_path / "bench.log", free_port()
    argv = [*SK, "bench", "-c", "127.0.0.1", "-p", str(closed), "--logfile", str(log)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 4
    assert proc.stderr == f"socketkit bench: connect to 127.0.0.1:{closed}: Connection refused\n"
    assert log.read_text() == f"Connecting to host 127.0.0.1, port {closed}\n"


def test_server_logfile(tmp_path: Path) -> None:
    iperf3 = require_tool("iperf3")
    log = tmp_path / "server.log"
    port = free_port()
    argv = [*SK, "bench", "-s", "-1", "-p", str(port), "--logfile", str(log)]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        status, _doc, err = run_json([iperf3, "-c", "127.0.0.1", "-p", str(port), "-t", "1", "-J"])
        assert status == 0, err
        out, errs = srv.communicate(timeout=30)
    assert srv.returncode == 0 and out == b"" and errs == b""
    text = log.read_text()
    assert f"listening on [::]:{port}" in text and "test from 127.0.0.1" in text


def test_interval_lines_on_a_terminal_too() -> None:
    """iperf3 prints its interval lines on a terminal; so does bench (no progress bar)."""
    import os
    import pty

    iperf3 = require_tool("iperf3")
    port = free_port()
    with running([iperf3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL):
        wait_listening(port)
        primary, secondary = pty.openpty()
        argv = [*SK, "bench", "-c", "127.0.0.1", "-p", str(port), "-t", "2"]
        with running(argv, stdout=secondary, stderr=secondary) as client:
            os.close(secondary)
            chunks = []
            while True:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: the client exited and closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            assert client.wait(30) == 0
        os.close(primary)
    lines = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    assert "[ ID] Interval           Transfer     Bitrate" in lines
    intervals = [line for line in lines if line.startswith("[  1]")]
    assert len(intervals) == 2 and intervals[0].startswith("[  1]   0.00-"), lines
    assert all(" sec " in line and "bits/sec" in line for line in intervals), lines
    assert not any("\r" in line or "#" in line for line in lines)
