"""The impairment lab itself (tests/support/impair.py): its counters against what a plain
socket pair observes, its fixed seed, its bound in time, and its teardown."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from support.impair import (
    BridgeConfig,
    impaired_path,
    observed,
    probe_receiver,
    probe_send,
    wait_ended,
)
from support.impair_bridge import udp_payload_length
from support.privilege import require_root, require_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]

COUNT = 3000
PORT = 9000


def _require() -> None:
    require_root()
    require_tool("nft")
    require_tool("ethtool")


def test_counters_match_a_plain_socket_pair() -> None:
    """Every impairment at once (nftables loss and duplication, then the bridge's loss,
    duplication, reordering and delay): what a receiver counts by sequence number equals
    what the lab computes from its own counters, exactly."""
    _require()
    config = BridgeConfig(
        seed=11, loss=0.05, dup=0.05, reorder=0.25, reorder_ms=3, delay_ms=1, min_payload=16
    )
    with impaired_path(bridge=config, nft_loss=0.10, nft_dup=0.05) as path:
        receiver = probe_receiver(path.b, PORT)
        probe_send(path.a, path.b_addr, PORT, count=COUNT, size=100, rate=3000)
        seqs = wait_ended(receiver, 60)
        counts = path.finish()
    seen = observed(seqs, COUNT)
    print("receiver", seen, "lab", counts.expected_receiver(), counts.nft, counts.a_to_b)
    assert seen == counts.expected_receiver()
    assert set(counts.drops.values()) == {0}, counts.drops
    nft = counts.nft["a_to_b"]
    # Each stage did what it was asked, at about the rate asked (bounds at > 4 sigma).
    assert 0.07 * COUNT < nft["dropped"] < 0.13 * COUNT, nft
    survivors = COUNT - nft["dropped"]
    assert 0.025 * survivors < nft["duplicated"] < 0.075 * survivors, nft
    br = counts.a_to_b
    assert br["unique_in"] == survivors
    assert br["matched"] == survivors + nft["duplicated"]
    assert 0.025 * br["matched"] < br["dropped"] < 0.075 * br["matched"], br
    assert 0.2 * br["matched"] < br["held"] < 0.3 * br["matched"], br
    assert br["late"] > 0.15 * br["matched"], br  # held 3 ms at 3000/s: overtaken
    assert counts.bridge["passed"] >= 3  # the end markers (3 bytes: not impaired)


def test_the_seed_fixes_the_bridge_decisions() -> None:
    """The same seed and the same frames give the same datagrams lost and duplicated; a
    different seed does not."""
    _require()
    runs = []
    for seed in (5, 5, 6):
        config = BridgeConfig(seed=seed, loss=0.1, dup=0.1, min_payload=16)
        with impaired_path(bridge=config) as path:
            receiver = probe_receiver(path.b, PORT)
            probe_send(path.a, path.b_addr, PORT, count=500, size=64, rate=2000)
            seqs = wait_ended(receiver, 60)
            counts = path.finish()
        lost = sorted(set(range(500)) - set(seqs))
        doubled = sorted({s for s in seqs if seqs.count(s) > 1})
        assert observed(seqs, 500) == counts.expected_receiver()
        runs.append((lost, doubled))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert runs[0][0] and runs[0][1]


def test_bridge_is_bounded_in_time_and_everything_is_torn_down() -> None:
    """The bridge ends by itself after max_seconds; the namespaces and the bridge process
    are gone after the block, even when the block fails."""
    _require()
    names: list[str] = []
    pids: list[int] = []
    with (
        pytest.raises(RuntimeError, match="inside"),
        impaired_path(bridge=BridgeConfig(max_seconds=1.0)) as path,
    ):
        assert path.bridge is not None
        pids.append(path.bridge.proc.pid)
        names.extend(h.name for h in path.lab.hosts)
        deadline = time.monotonic() + 30
        while path.bridge.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        result = path.bridge.stop()
        assert result["timed_out"] is True
        raise RuntimeError("a failure inside the block")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in names if n in listed], listed
    assert len(names) == 4
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def _frame(ethertype: int, l3: bytes) -> bytes:
    return bytes(12) + ethertype.to_bytes(2, "big") + l3


def test_bridge_classifies_udp_frames() -> None:
    udp = (8 + 20).to_bytes(2, "big")
    ipv4 = bytes([0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17]) + bytes(10)
    assert udp_payload_length(_frame(0x0800, ipv4 + bytes(4) + udp + bytes(22))) == 20
    frag = bytes([0x45, 0, 0, 48, 0, 0, 0x20, 0, 64, 17]) + bytes(10)  # MF set
    assert udp_payload_length(_frame(0x0800, frag + bytes(4) + udp + bytes(22))) == -1
    tcp = bytes([0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 6]) + bytes(10)
    assert udp_payload_length(_frame(0x0800, tcp + bytes(28))) == -1
    ipv6 = bytes([0x60, 0, 0, 0, 0, 28, 17, 64]) + bytes(32)
    assert udp_payload_length(_frame(0x86DD, ipv6 + bytes(4) + udp + bytes(22))) == 20
    assert udp_payload_length(_frame(0x0806, bytes(28))) == -1  # ARP
