"""A UDP ``socketkit bench`` run over an impaired path (tests/support/impair.py) reports
loss, duplication and reordering equal to the impairment's own counters.

Datagrams go from host a to host b: nftables drops 10 % in the router (its drop counter is
the number of datagrams lost), then the bridge duplicates 5 %, holds 25 % back 3 ms behind
the others and delays all by 1 ms (its counters say how many copies a receiver gets twice
and how many arrive after a later-sent one). The 4-byte connect handshake is spared (the
impairments act on UDP payloads of 16 bytes or more) and the TCP control channel passes.

What bench reports, and the counter it must equal:
- lost_packets: the nftables drop counter (datagrams lost after the last one that arrived
  are counted from the sender's total, so the tail is not missed);
- socketkit.duplicates: the bridge's ``dup_out``;
- out_of_order (iperf3's count: every arrival at or below the highest sequence number seen,
  so a duplicate is out of order too): the bridge's ``late`` plus ``dup_out``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from support.impair import BridgeConfig, ImpairedPath, PathCounts, impaired_path
from support.privilege import require_root, require_tool
from support.procs import running

pytestmark = [pytest.mark.root, pytest.mark.slow]

SK = [sys.executable, "-m", "socketkit"]
PORT = "5201"
CONFIG = BridgeConfig(seed=7, dup=0.05, reorder=0.25, reorder_ms=3, delay_ms=1, min_payload=16)
BENCH = ["-u", "-b", "8M", "-l", "1000", "-t", "3", "--no-gso", "-J"]


def _wait_listening(path: ImpairedPath, host_name: str) -> None:
    host = path.a if host_name == "a" else path.b
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if host.run(["ss", "-ltnH", f"sport = :{PORT}"], check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError("bench server did not start")


def _run(*, reverse: bool) -> tuple[dict[str, Any], PathCounts, float]:
    """The sender is on a, the receiver on b: a server on a with a client on b and -R, or
    a client on a sending to a server on b."""
    with impaired_path(bridge=CONFIG, nft_loss=0.10) as path:
        server, client = (path.a, path.b) if reverse else (path.b, path.a)
        target = path.a_addr if reverse else path.b_addr
        with running(
            server.cmd([*SK, "bench", "server", "-p", PORT, "-1"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ):
            _wait_listening(path, "a" if reverse else "b")
            t0 = time.monotonic()
            argv = [*SK, "bench", "client", target, "-p", PORT, *BENCH]
            proc = client.run([*argv, "-R"] if reverse else argv, check=False, timeout=120)
            elapsed = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr
        counts = path.finish()
    return json.loads(proc.stdout), counts, elapsed


def _check(doc: dict[str, Any], counts: PathCounts) -> None:
    expected = counts.expected_receiver()
    nft = counts.nft["a_to_b"]
    (stream,) = doc["end"]["streams"]
    udp = stream["udp"]
    reported = {
        "lost": udp["lost_packets"],
        "duplicates": doc["socketkit"]["duplicates"],
        "out_of_order": udp["out_of_order"],
        "packets": udp["packets"],
    }
    print("bench", reported, "lab", expected, nft, counts.a_to_b)
    assert set(counts.drops.values()) == {0}, counts.drops  # nothing lost outside the lab
    assert doc["socketkit"]["kernel_drops"] == [0]
    assert nft["dropped"] > 100 and counts.a_to_b["dup_out"] > 50 and counts.a_to_b["late"] > 300
    assert reported == {
        "lost": nft["dropped"],
        "duplicates": expected["duplicates"],
        "out_of_order": expected["late"] + expected["duplicates"],
        "packets": expected["unique"] + nft["dropped"],
    }
    assert doc["end"]["sum"]["lost_packets"] == nft["dropped"]


def test_bench_receiving_client_reports_the_impairment() -> None:
    """-R: the client on b counts what arrives."""
    require_root()
    require_tool("nft")
    doc, counts, elapsed = _run(reverse=True)
    print(f"bench -u -R over the impaired path: {elapsed:.1f} s")
    _check(doc, counts)


def test_bench_server_reports_the_impairment_to_the_client() -> None:
    """The server on b counts; the client on a reports what the server counted."""
    require_root()
    require_tool("nft")
    doc, counts, elapsed = _run(reverse=False)
    print(f"bench -u over the impaired path: {elapsed:.1f} s")
    _check(doc, counts)


@pytest.mark.parametrize("reverse", [False, True], ids=["server-receives", "client-receives"])
def test_datagrams_lost_after_the_last_arrival_are_counted(reverse: bool) -> None:
    """The router drops every datagram after the 50th (sequence numbers read from the iperf3
    header: 32 bits at bit 128 of the UDP header). No later datagram shows their gap, yet
    the sender's count does: bench reports all of them lost."""
    require_root()
    require_tool("nft")
    with impaired_path(bridge=BridgeConfig(min_payload=16)) as path:
        assert path.nft is not None
        path.r.run(
            [
                "nft",
                f"insert rule ip {path.nft.table} pass ip daddr {path.b_addr} udp length >= 24 "
                '@th,128,32 > 50 counter drop comment "tail a_to_b"',
            ]
        )
        server, client = (path.a, path.b) if reverse else (path.b, path.a)
        target = path.a_addr if reverse else path.b_addr
        with running(
            server.cmd([*SK, "bench", "server", "-p", PORT, "-1"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ):
            _wait_listening(path, "a" if reverse else "b")
            argv = [*SK, "bench", "client", target, "-p", PORT, "-u", "-l", "100", "-t", "1"]
            argv += ["-b", "400K", "--no-gso", "-J", *(["-R"] if reverse else [])]
            proc = client.run(argv, check=False, timeout=120)
        assert proc.returncode == 0, proc.stderr
        rules = json.loads(path.r.run(["nft", "-j", "list", "table", "ip", path.nft.table]).stdout)
        path.finish()
    doc = json.loads(proc.stdout)
    (dropped,) = [
        e["counter"]["packets"]
        for item in rules["nftables"]
        if item.get("rule", {}).get("comment") == "tail a_to_b"
        for e in item["rule"]["expr"]
        if "counter" in e
    ]
    udp = doc["end"]["streams"][0]["udp"]
    assert dropped > 200  # 500 datagrams a second for 1 s, all but 50 dropped
    assert (udp["lost_packets"], udp["packets"]) == (dropped, dropped + 50)
