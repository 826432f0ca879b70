"""What ``socketkit bench client`` says against a plain ``iperf3 -s``: no "n/a" figures, and
socketkit-only features refused up front, not after a whole test of meaningless numbers."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, wait_listening


@pytest.fixture
def iperf3_port() -> Iterator[int]:
    iperf3 = require_tool("iperf3")
    port = free_port()
    with running([iperf3, "-s", "-p", str(port)], stdout=subprocess.DEVNULL):
        wait_listening(port)
        yield port


def test_latency_against_iperf3_fails_up_front(iperf3_port: int) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-p", str(iperf3_port), "--latency", "-t", "8"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 6, elapsed  # not after the 8 s test
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--latency needs a socketkit server" in lines[0]
    assert "p50" not in proc.stdout and " 0.0 us" not in proc.stdout
    # The iperf3 server was told the test is over and serves the next client.
    ok = subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-p", str(iperf3_port), "-t", "0.5", "-i", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr


def test_rtt_line_against_iperf3_has_no_placeholder(iperf3_port: int) -> None:
    proc = subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-p", str(iperf3_port), "-t", "0.5", "-i", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rtt = [ln for ln in proc.stdout.splitlines() if ln.startswith("TCP RTT")]
    assert len(rtt) == 1, proc.stdout
    assert "n/a" not in rtt[0]
    assert re.fullmatch(
        r"TCP RTT \(TCP_INFO\): client \d+ us, the server did not report its own "
        r"\(an iperf3 server does not\)",
        rtt[0],
    ), rtt[0]
