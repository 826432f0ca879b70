"""``sniff -X`` dumps from the network header and ``-XX`` the whole frame, as tcpdump: every
link type socketkit decodes, every length a packet can be cut to, compared with tcpdump
reading the same file."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from socketkit.packet import PcapWriter, hexdump
from socketkit.packet.hexdump import network_offset
from support.privilege import require_tool

from . import build

_ARP = build.arp(1, build.MAC_A, "198.18.0.1", b"\0" * 6, "198.18.0.2")
PACKETS: dict[int, list[bytes]] = {
    1: [
        build.eth(build.ip4(build.udp(1, 2, b"hello"), 17)),
        build.eth(build.ip6(build.udp(1, 2, b"hi6"), 17), 0x86DD),
        build.eth(_ARP, 0x0806),
        build.eth(build.ip4(build.udp(1, 2, b"vl"), 17), vlans=(5,)),
        build.eth(build.ip4(build.udp(1, 2, b"vl2"), 17), vlans=(5, 7)),
        build.eth(b"abcdefgh", 0x1234),
    ],
    276: [
        build.sll2(build.ip4(build.udp(1, 2, b"s2"), 17)),
        build.sll2(build.ip6(build.udp(1, 2, b"s6"), 17), 0x86DD),
        build.sll2(_ARP, 0x0806),
    ],
    113: [
        build.sll(build.ip4(build.udp(1, 2, b"s1"), 17)),
        build.sll(build.ip6(build.udp(1, 2, b"s1"), 17), 0x86DD),
    ],
    101: [build.ip4(build.udp(1, 2, b"raw"), 17), build.ip6(build.udp(1, 2, b"raw6"), 17)],
    0: [
        struct.pack("<I", 2) + build.ip4(build.udp(1, 2, b"null"), 17),
        struct.pack("<I", 30) + build.ip6(build.udp(1, 2, b"null6"), 17),
    ],
    108: [struct.pack(">I", 2) + build.ip4(build.udp(1, 2, b"loop"), 17)],
}


def _dumps(text: str) -> list[list[str]]:
    """The hex lines of each packet of ``tcpdump -X`` output, in order."""
    packets: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("\t"):
            packets[-1].append(line)
        else:
            packets.append([])
    return packets


@pytest.mark.parametrize("linktype", sorted(PACKETS))
def test_network_offset_and_dumps_match_tcpdump(tmp_path: Path, linktype: int) -> None:
    # every packet at every length from 1 byte to whole (tcpdump skips 0-byte records)
    records = [p[:cut] for p in PACKETS[linktype] for cut in range(1, len(p) + 1)]
    path = tmp_path / f"cut{linktype}.pcap"
    with PcapWriter(path, linktype) as writer:
        for index, data in enumerate(records):
            writer.write((index + 1) * 1_000_000_000, data)
    for flag in ("-X", "-XX"):
        res = subprocess.run(
            [require_tool("tcpdump"), "-nn", flag, "-r", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        theirs = _dumps(res.stdout)
        assert len(theirs) == len(records)
        for data, lines in zip(records, theirs, strict=True):
            start = network_offset(data, linktype) if flag == "-X" else 0
            ours = hexdump(data[start:]).splitlines()
            assert ours == lines, (flag, data.hex())
        ours_cli = subprocess.run(
            [sys.executable, "-m", "socketkit", "sniff", flag, "-r", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ours_cli.returncode == 0, ours_cli.stderr
        assert [p for p in _dumps(ours_cli.stdout)] == theirs, flag
