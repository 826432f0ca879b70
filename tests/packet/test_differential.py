"""Differential: pcaps written by ``tcpdump -w`` during the test, decoded by socketkit and
by ``tshark -T fields``: addresses, ports, flags, sequence numbers and lengths agree for
every packet. Loopback traffic, then (as root) two namespaces joined by a veth with a VLAN
sub-interface (ARP, VLAN, IPv4/IPv6 TCP/UDP/ICMP)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.netlab import Host, Lab
from support.privilege import require_root, require_tool
from support.procs import stop

from .differential import compare_with_tshark


@contextmanager
def tcpdump_writing(argv_prefix: list[str], iface: str, path: Path, bpf: str,
                    probe: list[str]) -> Iterator[None]:  # fmt: skip
    """``tcpdump -i IFACE -w PATH BPF`` running for the block. tcpdump says "listening"
    a moment before its filter passes packets, so ``probe`` (a command making matching
    traffic) runs until the file holds a packet; bounded to 10 s."""
    proc = subprocess.Popen(
        [*argv_prefix, "tcpdump", "-i", iface, "--immediate-mode", "-U", "-s", "0",
         "-w", str(path), bpf],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if b"data link type" in line:  # -i any first names LINUX_SLL2
            line = proc.stderr.readline()
        assert b"listening on" in line, line
        deadline = time.monotonic() + 10
        while not (path.exists() and path.stat().st_size > 24):
            assert time.monotonic() < deadline, "tcpdump captured nothing"
            subprocess.run(probe, capture_output=True, timeout=10)
            time.sleep(0.1)
        yield
        time.sleep(1.2)  # past libpcap's 1 s ring-block timeout: the last packets are written
    finally:
        stop(proc)


def _loopback_traffic(v4: str, port4: int, port6: int) -> None:
    for family, host, port in ((socket.AF_INET, v4, port4), (socket.AF_INET6, "::1", port6)):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, port))
        listener.listen(1)
        client = socket.create_connection((host, port), timeout=5)
        conn, _ = listener.accept()
        client.sendall(b"hello" * 100)
        conn.recv(65536)
        conn.sendall(b"world")
        client.recv(100)
        client.close()
        conn.close()
        listener.close()
        udp = socket.socket(family, socket.SOCK_DGRAM)
        sink = socket.socket(family, socket.SOCK_DGRAM)
        sink.bind((host, port))
        for size in (0, 1, 100, 1400):
            udp.sendto(b"u" * size, (host, port))
        udp.close()
        sink.close()
    subprocess.run(["ping", "-c", "2", "-i", "0.2", v4], capture_output=True, timeout=20)
    subprocess.run(["ping", "-6", "-c", "2", "-i", "0.2", "::1"], capture_output=True, timeout=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_loopback_capture_matches_tshark(tmp_path: Path) -> None:
    require_root()  # tcpdump -i lo
    require_tool("tcpdump")
    tshark = require_tool("tshark")
    v4, port4, port6 = "127.0.0.77", _free_port(), _free_port()
    path = tmp_path / "lo.pcap"
    bpf = (f"host {v4} or (ip6 and (port {port6} or (icmp6 and "
           f"(ip6[40] == 128 or ip6[40] == 129))))")  # fmt: skip
    probe = ["ping", "-c", "1", "-W", "1", v4]
    with tcpdump_writing([], "lo", path, bpf, probe):
        _loopback_traffic(v4, port4, port6)
    seen = compare_with_tshark(tshark, path)
    for kind in ("ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6"):
        assert seen[kind] > 0, (kind, seen)
    assert seen["tcp"] >= 12


_PEER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 7000)); srv.listen(4)
udp = socket.socket(family, socket.SOCK_DGRAM); udp.bind((sys.argv[1], 7001))
print("ready", flush=True)
for _ in range(2):
    conn, _ = srv.accept()
    data = conn.recv(65536)
    conn.sendall(data[:10])
    conn.close()
udp.settimeout(5)
for _ in range(2):  # stay until both datagrams arrived (no ICMP port unreachable)
    udp.recv(2048)
"""

_CLIENT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
for _ in range(2):
    c = socket.create_connection((sys.argv[1], 7000), timeout=5)
    c.sendall(b"z" * 3000); c.recv(100); c.close()
u = socket.socket(family, socket.SOCK_DGRAM)
for size in (3, 300):
    u.sendto(b"q" * size, (sys.argv[1], 7001))
"""


def _exchange(a: Host, b: Host, address: str) -> None:
    peer = b.popen([sys.executable, "-c", _PEER, address], stdout=subprocess.PIPE)
    try:
        assert peer.stdout is not None and peer.stdout.readline().strip() == b"ready"
        a.run([sys.executable, "-c", _CLIENT, address], timeout=30)
        peer.wait(15)
    finally:
        stop(peer)


# The test kernel has no 802.1Q module (CONFIG_VLAN_8021Q unset: no vlan sub-interfaces),
# so VLAN frames are real frames sent from an AF_PACKET socket across the veth.
_RAW_FRAMES = """
import socket, sys
sys.path.insert(0, sys.argv[2])
from packet import build
iface = sys.argv[1]
bcast = b"\\xff" * 6
frames = [
    build.eth(build.arp(1, build.MAC_A, "198.19.10.1", bytes(6), "198.19.10.2"), 0x0806,
              vlans=(10,)),
    build.eth(build.udp4(5000, 5001, b"vlan", "198.19.10.1", "198.19.10.2"), vlans=(10,)),
    build.eth(build.ip4(build.icmp_echo(9, 1), 1, "198.19.10.1", "198.19.10.2"),
              vlans=(100, 10)),
    build.eth(build.ip6(build.tcp(flags=0x02, options=build.SYN_OPTIONS), 6), 0x86DD,
              vlans=(20,)),
    build.eth(build.udp6(53, 5353, bytes(12)), 0x86DD, vlans=(30,)),
]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for frame in frames:
    s.send(bcast + frame[6:])
print(len(frames))
"""


def test_namespace_vlan_arp_capture_matches_tshark(tmp_path: Path) -> None:
    require_root()
    require_tool("tcpdump")
    tshark = require_tool("tshark")
    tests_dir = str(Path(__file__).resolve().parent.parent)
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        ia, _ib = lab.link(a, b, "198.18.7.1/24", "198.18.7.2/24")
        a.run(["ip", "addr", "add", "fd00:7::1/64", "dev", ia, "nodad"])
        b.run(["ip", "addr", "add", "fd00:7::2/64", "dev", _ib, "nodad"])
        plain = tmp_path / "veth.pcap"
        cooked = tmp_path / "any.pcap"
        probe = a.cmd(["ping", "-c", "1", "-W", "1", "198.18.7.2"])
        with (
            tcpdump_writing(a.cmd([]), ia, plain, "", probe),
            tcpdump_writing(a.cmd([]), "any", cooked, "not arp", probe),
        ):
            a.run(["ip", "neigh", "flush", "all"])
            a.run(["ping", "-c", "2", "-i", "0.2", "198.18.7.2"])  # ARP + ICMP
            a.run(["ping", "-6", "-c", "2", "-i", "0.2", "fd00:7::2"])  # NDP + ICMPv6
            _exchange(a, b, "198.18.7.2")
            _exchange(a, b, "fd00:7::2")
            sent = a.run([sys.executable, "-c", _RAW_FRAMES, ia, tests_dir])
            assert sent.stdout.strip() == "5"
        seen = compare_with_tshark(tshark, plain)
        for kind in ("arp", "vlan", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6"):
            assert seen[kind] > 0, (kind, seen)
        assert seen["vlan"] == 5
        seen_any = compare_with_tshark(tshark, cooked)  # LINUX_SLL2 (tcpdump -i any)
        assert seen_any["tcp"] > 0 and seen_any["icmp"] > 0 and seen_any["ipv6"] > 0
