"""-R and --bidir: the receiving side's time ends with the test, not ~0.1 s later (the client's
pause before TEST_END is not receiver time), against a real iperf3 -s and a socketkit server.

iperf3 -> iperf3 reports 1.00 s on both sides for -t 1; so must we. A tick is the reporter's
resolution: the test stops at the first poll after -t (50 ms) at most."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening

TICK = 0.05


#: Figures socketkit measures itself. The forward direction's receiver is the server: an
#: iperf3 server stamps it when it handles TEST_END, on its own schedule (late when it gets
#: the CPU late), so it is asserted only against a socketkit server.
OURS = ["sum_sent", "sum_sent_bidir_reverse", "sum_received_bidir_reverse"]
ALL = [*OURS, "sum_received"]


def _measured(port_kind: str) -> list[str]:
    return ALL if port_kind == "socketkit" else OURS


@pytest.fixture(params=["iperf3", "socketkit"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    port = free_port()
    if request.param == "iperf3":
        argv = [require_tool("iperf3"), "-s", "-p", str(port)]
    else:
        argv = [*SK, "bench", "server", "-p", str(port), "-B", "127.0.0.1"]
    with running(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_listening(port)
        yield request.param, port


def _client(port: int, *args: str) -> dict[str, Any]:
    rc, doc, err = run_json([*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-J", *args])
    assert rc == 0, err
    return doc


def _assert_ends_at(doc: dict[str, Any], seconds: float, *keys: str) -> None:
    end = doc["end"]
    for key in keys:
        got = end[key]["seconds"]
        assert seconds - TICK <= got <= seconds + TICK, (key, got)
    last = doc["intervals"][-1]["sum"]
    assert last["end"] <= seconds + TICK, last
    for iv in doc["intervals"]:
        for s in iv["streams"]:
            assert s["end"] <= seconds + TICK, s


@pytest.mark.parametrize("secs", ["1", "3"])
def test_reverse_receiver_time_is_the_test_time(server: tuple[str, int], secs: str) -> None:
    # -R: the client is the receiver (sum_received) and measures it; the server sends.
    doc = _client(server[1], "-t", secs, "-R")
    _assert_ends_at(doc, float(secs), "sum_received")


def test_bidir_tcp_receiver_time_is_the_test_time(server: tuple[str, int]) -> None:
    kind, port = server
    doc = _client(port, "-t", "1", "--bidir")
    keys = _measured(kind)
    _assert_ends_at(doc, 1.0, *keys)
    # Nothing lost to the fix: what the server sent, the client received.
    rev = doc["end"]
    assert rev["sum_sent_bidir_reverse"]["bytes"] == rev["sum_received_bidir_reverse"]["bytes"]


def test_bidir_udp_intervals_and_rates_match_the_test_time(server: tuple[str, int]) -> None:
    kind, port = server
    doc = _client(port, "-t", "1", "-u", "-b", "10M", "--bidir")
    keys = _measured(kind)
    _assert_ends_at(doc, 1.0, *keys)
    end = doc["end"]
    # Each direction moved 1 s at 10 Mbit/s: no pause at the peer's rate is counted as
    # test time (rate too low) or as test bytes (rate too high).
    for key in keys:
        rate = end[key]["bits_per_second"]
        assert 9.5e6 <= rate <= 10.5e6, (key, rate)
    for iv in doc["intervals"]:
        for s in iv["streams"]:
            assert 9.5e6 <= s["bits_per_second"] <= 10.5e6, s
