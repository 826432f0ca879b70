"""``socketkit sniff`` with tcpdump's flags prints what ``tcpdump -nn`` prints with the same
flags, line for line, for captures tcpdump itself made of real traffic (TCP over IPv4 and IPv6
with data both ways and a FIN close, UDP, ICMP and ICMPv6 echo) on the loopback of a test
namespace, as Ethernet (``-i lo``) and as Linux cooked v2 (``-i any``); plus crafted packets
for what loopback traffic never has (SACK blocks, which tcpdump makes relative too)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rawkit import sk

from packet import build
from socketkit.packet import PcapWriter
from support.netlab import Lab
from support.privilege import require_root, require_tool
from support.procs import stop

pytestmark = pytest.mark.root

# Port 34567: no tcpdump dissector claims it (8080 would add "HTTP: GET ..." to the lines).
TRAFFIC = r"""
import socket, subprocess
def tcp(family, host):
    ls = socket.socket(family, socket.SOCK_STREAM); ls.bind((host, 34567)); ls.listen(1)
    c = socket.create_connection((host, 34567), timeout=5); s, _ = ls.accept()
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); s.recv(1000)
    s.sendall(b"HTTP/1.1 200 OK\r\n\r\nhello\x00\x01\r world\r\n"); c.recv(1000)
    c.shutdown(socket.SHUT_WR); s.recv(10); s.close(); c.close(); ls.close()
tcp(socket.AF_INET, "127.0.0.1"); tcp(socket.AF_INET6, "::1")
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    r = socket.socket(fam, socket.SOCK_DGRAM); r.bind((host, 9999))
    u = socket.socket(fam, socket.SOCK_DGRAM); u.sendto(b"abc", (host, 9999)); r.recv(10)
subprocess.run(["ping", "-c1", "-q", "127.0.0.1"], capture_output=True, timeout=10)
subprocess.run(["ping", "-6", "-c1", "-q", "::1"], capture_output=True, timeout=10)
"""
#: --immediate-mode gives libpcap one snaplen-sized ring frame per packet: 8 in its default
#: 2 MiB at the default snaplen, so a burst of TRAFFIC under load is dropped by the kernel.
#: 512 bytes holds every packet of TRAFFIC whole; 16 MiB of ring holds them all.
BIG_RING = ["-s", "512", "-B", "16384"]
#: what TRAFFIC puts on the wire: 2 x 10 TCP segments, 2 UDP datagrams, 4 echo messages
PACKETS = 26


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tcpdump's own -w files of TRAFFIC, run in a fresh namespace: ``lo`` and ``any``."""
    require_root()
    tcpdump = require_tool("tcpdump")
    base = tmp_path_factory.mktemp("tcpdump")
    files = {iface: base / f"{iface}.pcap" for iface in ("lo", "any")}
    with Lab() as lab:
        host = lab.host("d")
        procs = []
        try:
            for iface, path in files.items():
                proc = host.popen(
                    [tcpdump, "-i", iface, "-U", "--immediate-mode", *BIG_RING, "-w", str(path)],
                    stderr=subprocess.PIPE,
                )
                procs.append(proc)
                assert proc.stderr is not None
                line = proc.stderr.readline()
                if b"data link type" in line:
                    line = proc.stderr.readline()
                assert b"listening on" in line, line
            # tcpdump says "listening" a moment before its filter passes packets: ping until
            # both files hold one (bounded), then the traffic
            deadline = time.monotonic() + 10
            while not all(_count(path) for path in files.values()):
                assert time.monotonic() < deadline, "tcpdump captured nothing"
                host.run(["ping", "-c1", "-W1", "127.0.0.1"], timeout=10)
            before = {path: _count(path) for path in files.values()}
            host.run([sys.executable, "-c", TRAFFIC], timeout=60)
            for path in files.values():
                while _count(path) < before[path] + PACKETS:
                    assert time.monotonic() < deadline + 10, f"{path.name}: {_count(path)}"
                    time.sleep(0.1)
        finally:
            for proc in procs:
                stop(proc)
    return files


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    res = subprocess.run(["tcpdump", "-r", str(path)], capture_output=True, timeout=30)
    return res.stdout.count(b"\n")


def _tcpdump(path: Path, *flags: str) -> str:
    res = subprocess.run(
        [require_tool("tcpdump"), "-nn", *flags, "-r", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def _sniff(path: Path, *flags: str) -> str:
    res = subprocess.run(
        sk("sniff", *flags, "-r", str(path)), capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return res.stdout


FLAGS = [
    (),  # relative sequence numbers: tcpdump's default
    ("-S",),
    ("-n",),
    ("-t",),
    ("-tt",),
    ("-ttt",),
    ("-tttt",),
    ("-ttttt",),
    ("-q",),
    ("-e",),
    ("-A",),
    ("-S", "-q", "-tt"),
    ("-e", "-ttt"),
    ("-v",),
    ("-vv",),
    ("-v", "-e"),
    ("-vv", "-S", "-q"),
    ("-x",),
    ("-xx",),
    ("-x", "-X"),
]


@pytest.mark.parametrize("iface", ["lo", "any"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "".join(f) or "default")
def test_lines_are_tcpdumps(captures: dict[str, Path], iface: str, flags: tuple[str, ...]) -> None:
    theirs = _tcpdump(captures[iface], *flags)
    assert theirs.count("\n") >= PACKETS
    ours = _sniff(captures[iface], *flags)
    assert ours.splitlines() == theirs.splitlines()


def test_relative_sequence_numbers_start_at_one(captures: dict[str, Path]) -> None:
    """The point of the default: after the handshake, seq/ack count from 1 per direction."""
    lines = _sniff(captures["lo"]).splitlines()
    absolute = _sniff(captures["lo"], "-S").splitlines()
    first = next(i for i, line in enumerate(lines) if "34567: Flags [P.]" in line)
    assert ", seq 1:28, ack 1, win " in lines[first]
    assert ", seq 1:28," not in absolute[first]
    assert ": Flags [S], seq " in lines[first - 3] and lines[first - 3] == absolute[first - 3]


def test_nn_is_accepted(captures: dict[str, Path]) -> None:
    assert _sniff(captures["lo"], "-nn") == _sniff(captures["lo"]) == _tcpdump(captures["lo"])


def test_relative_sack_blocks_as_tcpdump(tmp_path: Path) -> None:
    """SACK edges are relative to the other side's first sequence number, as tcpdump prints
    them; with -S they stay absolute."""
    sack = (
        bytes([1, 1, 5, 18])
        + (3000 + 1001).to_bytes(4, "big")
        + (3000 + 2001).to_bytes(4, "big")
        + (3000 + 3001).to_bytes(4, "big")
        + (3000 + 4001).to_bytes(4, "big")
    )
    a, b = "198.18.0.1", "198.18.0.2"
    packets = [
        build.tcp4(a, b, sport=1000, dport=2000, seq=100, ack=0, flags=0x02),
        build.tcp4(b, a, sport=2000, dport=1000, seq=3000, ack=101, flags=0x12),
        build.tcp4(a, b, sport=1000, dport=2000, seq=101, ack=3001, flags=0x10),
        build.tcp4(b, a, sport=2000, dport=1000, seq=3001, ack=101, flags=0x18, payload=b"x" * 10),
        build.tcp4(a, b, sport=1000, dport=2000, seq=101, ack=3001, flags=0x10, options=sack),
        build.tcp4(a, b, sport=1000, dport=2000, seq=0xFFFFFFF0, ack=5, flags=0x10),  # new flow?
    ]
    path = tmp_path / "sack.pcap"
    with path.open("wb") as fh:
        writer = PcapWriter(fh, 1)
        for index, packet in enumerate(packets):
            writer.write(1_700_000_000_000_000_000 + index * 1000, build.eth(packet))
    for flags in ((), ("-S",)):
        theirs = _tcpdump(path, *flags)
        assert ("{1001:2001}" in theirs) == (not flags), theirs
        assert _sniff(path, *flags).splitlines() == theirs.splitlines()


def test_pcapng_and_filtered_reads_are_relative_too(
    captures: dict[str, Path], tmp_path: Path
) -> None:
    """The pcapng reader, the per-record path (a filter) and the fused pcap reader print the
    same relative numbers as tcpdump."""
    copy = tmp_path / "copy.pcapng"
    res = subprocess.run(
        sk("sniff", "-r", str(captures["lo"]), "--pcapng", "-w", str(copy)),
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert _sniff(copy).splitlines() == _tcpdump(captures["lo"]).splitlines()
    theirs = _tcpdump(captures["lo"], "tcp").splitlines()
    assert len(theirs) == 20
    ours = subprocess.run(
        sk("sniff", "-r", str(captures["lo"]), "tcp"), capture_output=True, text=True, timeout=60
    )
    assert ours.stdout.splitlines() == theirs


def test_verbose_on_crafted_packets(tmp_path: Path) -> None:
    """-v/-vv on what loopback never shows: correct checksums, a damaged one, TOS with ECN,
    an IPv6 traffic class, IPv4 and IPv6 fragments, an unknown protocol, UDP over IPv4
    (checked at -vv only); and the same file without -v."""
    tcp_ok = build.tcp4(sport=1000, dport=2000, seq=5, ack=7, flags=0x18, payload=b"hi")
    tcp_bad = tcp_ok[:36] + bytes([tcp_ok[36] ^ 0xFF]) + tcp_ok[37:]
    tos = tcp_ok[:1] + b"\x2e" + tcp_ok[2:10] + b"\0\0" + tcp_ok[12:]  # DSCP 11, ECT(0)
    udp4 = build.udp4(1000, 2000, b"abc")
    udp4_bad = udp4[:26] + b"\x12\x34" + udp4[28:]
    udp6 = build.udp6(1000, 2000, b"abc")
    classed = bytes([0x60 | 0x0B, 0x81, 0x23, 0x45]) + udp6[4:]  # class 0xb8, flowlabel
    fragment = build.ip4(b"x" * 16, 17, frag=0x2000 | 3)
    ping6 = build.icmp6_echo(7, 1)
    frag6 = build.ip6(struct.pack("!BBHI", 17, 0, (3 << 3) | 1, 0xABCD) + b"y" * 16, 44)
    unknown = build.ip4(b"x" * 16, 99, frag=0)
    path = tmp_path / "verbose.pcap"
    with path.open("wb") as fh:
        writer = PcapWriter(fh, 1)
        packets = [tcp_ok, tcp_bad, tos, udp4, udp4_bad, fragment, unknown]
        for index, packet in enumerate(packets):
            writer.write(1_700_000_000_000_000_000 + index * 1000, build.eth(packet))
        for index, packet in enumerate([udp6, classed, ping6, frag6]):
            writer.write(1_700_000_001_000_000_000 + index, build.eth(packet, 0x86DD))
    for flags in ((), ("-v",), ("-vv",), ("-v", "-S")):
        theirs = _tcpdump(path, *flags)
        assert ("(correct)" in theirs and "class 0xb8" in theirs) == bool(flags)
        assert _sniff(path, *flags).splitlines() == theirs.splitlines()


def test_link_header_of_arp_and_vlan_frames(tmp_path: Path) -> None:
    """-e names ARP and each 802.1Q tag (vlan, priority, DEI) as tcpdump; without -e a tag
    is not printed at all (tcpdump 4.99)."""
    arp = build.arp(1, b"\x02" * 6, "198.18.0.1", b"\0" * 6, "198.18.0.2")
    frames = [
        build.eth(arp, 0x0806),
        build.eth(build.udp4(1, 2, b"abc"), vlans=(5,)),
        build.eth(build.udp4(1, 2, b"abc"), vlans=(7, 5)),
        build.eth(build.udp6(1, 2, b"abc"), 0x86DD, vlans=(4094,)),
    ]
    dei = bytearray(frames[1])
    dei[14] |= 0x10  # the DEI bit of the tag
    frames.append(bytes(dei))
    path = tmp_path / "link.pcap"
    with path.open("wb") as fh:
        writer = PcapWriter(fh, 1)
        for index, frame in enumerate(frames):
            writer.write(1_700_000_000_000_000_000 + index * 1000, frame)
    for flags in ((), ("-e",)):
        theirs = _tcpdump(path, *flags)
        assert ("vlan 5, p 3, DEI," in theirs) == bool(flags)
        assert _sniff(path, *flags).splitlines() == theirs.splitlines()


def test_json_records_stay_one_line(captures: dict[str, Path]) -> None:
    """--json with -A: one JSON object per line, the summary without the text dump; the
    summaries are the tcpdump lines (relative numbers included)."""
    res = subprocess.run(
        sk("sniff", "--json", "-A", "-r", str(captures["lo"])),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    theirs = _tcpdump(captures["lo"]).splitlines()
    assert [r["summary"] for r in records] == theirs
