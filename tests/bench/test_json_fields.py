"""``bench client -J`` carries every field iperf3 3.12 writes, with the same JSON types: for
each kind of test, iperf3's own document (iperf3 -c against iperf3 -s) and socketkit's
(against iperf3 -s, and against socketkit's server) are compared key by key. A number is a
number either way (iperf3's JSON writer prints whole doubles without a fraction)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening

MODES = {
    "tcp": [],
    "tcp -R": ["-R"],
    "tcp --bidir": ["--bidir"],
    "tcp -P 2": ["-P", "2"],
    "tcp -M": ["-M", "1200"],
    "tcp -w": ["-w", "1M"],
    "udp": ["-u", "-b", "10M"],
    "udp -R": ["-u", "-R", "-b", "10M"],
}


def _shape(obj: Any, path: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    """Every leaf's path (lists: their first item) and JSON type."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for key, value in obj.items():
            _shape(value, f"{path}.{key}", out)
    elif isinstance(obj, list):
        for value in obj[:1]:
            _shape(value, f"{path}[]", out)
    elif isinstance(obj, bool):
        out[path] = "bool"
    elif isinstance(obj, (int, float)):
        out[path] = "number"
    else:
        out[path] = type(obj).__name__
    return out


def _document(client: list[str], server: list[str], args: list[str]) -> dict[str, Any]:
    port = free_port()
    with running([*server, "-p", str(port)], stdout=subprocess.DEVNULL):
        wait_listening(port)
        status, doc, err = run_json([*client, "-p", str(port), "-t", "1", "-J", *args])
    assert status == 0, err
    return doc


@pytest.mark.parametrize("mode", list(MODES))
def test_every_iperf3_field_with_its_type(mode: str) -> None:
    iperf3 = require_tool("iperf3")
    args = MODES[mode]
    theirs = _shape(_document([iperf3, "-c", "127.0.0.1"], [iperf3, "-s", "-1"], args))
    client = [*SK, "bench", "client", "127.0.0.1"]
    for server in ([iperf3, "-s", "-1"], [*SK, "bench", "server", "-1"]):
        ours = _shape(_document(client, server, args))
        missing = sorted(key for key in theirs if key not in ours)
        assert not missing, (server[0], missing)
        differ = {k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours[k]}
        assert not differ, (server[0], differ)


def test_tcp_info_fields_hold_the_kernels_figures() -> None:
    """The sender's intervals carry TCP_INFO (cwnd, the peer's window, RTTs, the path MTU),
    the end its extremes, and both sides' congestion control is this host's default."""
    iperf3 = require_tool("iperf3")
    doc = _document([*SK, "bench", "client", "127.0.0.1"], [iperf3, "-s", "-1"], [])
    default = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    assert doc["end"]["sender_tcp_congestion"] == default
    assert doc["end"]["receiver_tcp_congestion"] == default
    samples = [s for report in doc["intervals"] for s in report["streams"]]
    assert samples
    for s in samples:
        assert s["snd_cwnd"] > 0 and s["snd_wnd"] > 0 and s["rtt"] > 0 and s["pmtu"] > 0
        assert s["retransmits"] >= 0 and s["rttvar"] >= 0
    end = doc["end"]["streams"][0]["sender"]
    rtts = [s["rtt"] for s in samples]
    assert (end["min_rtt"], end["max_rtt"]) == (min(rtts), max(rtts))
    assert end["min_rtt"] <= end["mean_rtt"] <= end["max_rtt"]
    assert end["max_snd_cwnd"] == max(s["snd_cwnd"] for s in samples)
    assert sum(s["retransmits"] for s in samples) <= end["retransmits"]
    start = doc["start"]
    assert start["tcp_mss_default"] > 0 and start["sock_bufsize"] == 0
    assert start["sndbuf_actual"] > 0 and start["rcvbuf_actual"] > 0
