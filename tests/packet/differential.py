"""Compare socketkit's decoding of a capture file with ``tshark -T fields``, packet by packet."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from socketkit.packet import (
    ARP,
    ICMP,
    ICMPV6,
    TCP,
    UDP,
    Dot1Q,
    IPv4,
    IPv6,
    decode,
    open_capture_file,
)

FIELDS = [
    "frame.len", "vlan.id", "ieee8021ad.id", "arp.opcode", "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4", "arp.src.hw_mac", "ip.src", "ip.dst", "ip.len", "ip.proto", "ip.ttl",
    "ipv6.src", "ipv6.dst", "ipv6.plen", "ipv6.nxt", "ipv6.hlim", "tcp.srcport", "tcp.dstport",
    "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.window_size_value",
    "udp.srcport", "udp.dstport", "udp.length", "icmp.type", "icmp.code", "icmp.ident",
    "icmp.seq", "icmpv6.type", "icmpv6.code", "icmpv6.echo.identifier",
    "icmpv6.echo.sequence_number",
]  # fmt: skip


def ours(data: bytes, linktype: int, orig_len: int) -> tuple[dict[str, str], set[str]]:
    """The tshark field values socketkit decodes for one record, and the kinds seen."""
    out = {"frame.len": str(orig_len)}
    kinds: set[str] = set()
    vlans: list[str] = []
    service: list[str] = []  # 802.1ad (QinQ outer, TPID 0x88a8): tshark's ieee8021ad.id
    for layer in decode(data, linktype, lazy=False).layers:
        if isinstance(layer, Dot1Q):
            (service if layer.tpid == 0x88A8 else vlans).append(str(layer.vid))
            kinds.add("vlan")
        elif isinstance(layer, ARP):
            kinds.add("arp")
            out |= {"arp.opcode": str(layer.op), "arp.src.proto_ipv4": layer.spa,
                    "arp.dst.proto_ipv4": layer.tpa, "arp.src.hw_mac": layer.sha}  # fmt: skip
        elif isinstance(layer, IPv4):
            kinds.add("ipv4")
            out |= {"ip.src": layer.src, "ip.dst": layer.dst, "ip.len": str(layer.total_length),
                    "ip.proto": str(layer.proto), "ip.ttl": str(layer.ttl)}  # fmt: skip
        elif isinstance(layer, IPv6):
            kinds.add("ipv6")
            out |= {"ipv6.src": layer.src, "ipv6.dst": layer.dst,
                    "ipv6.plen": str(layer.payload_length), "ipv6.nxt": str(layer.next_header),
                    "ipv6.hlim": str(layer.hop_limit)}  # fmt: skip
        elif isinstance(layer, TCP):
            kinds.add("tcp")
            out |= {"tcp.srcport": str(layer.sport), "tcp.dstport": str(layer.dport),
                    "tcp.flags": f"0x{layer.flags:04x}", "tcp.seq_raw": str(layer.seq),
                    "tcp.ack_raw": str(layer.ack), "tcp.len": str(layer.payload_length),
                    "tcp.window_size_value": str(layer.window)}  # fmt: skip
        elif isinstance(layer, UDP):
            kinds.add("udp")
            out |= {"udp.srcport": str(layer.sport), "udp.dstport": str(layer.dport),
                    "udp.length": str(layer.length)}  # fmt: skip
        elif isinstance(layer, ICMP):
            kinds.add("icmp")
            out |= {"icmp.type": str(layer.type), "icmp.code": str(layer.code)}
            if layer.type in (0, 8):
                out |= {"icmp.ident": str(layer.id), "icmp.seq": str(layer.seq)}
        elif isinstance(layer, ICMPV6):
            kinds.add("icmp6")
            out |= {"icmpv6.type": str(layer.type), "icmpv6.code": str(layer.code)}
            if layer.type in (128, 129):
                out |= {"icmpv6.echo.identifier": f"0x{layer.id:04x}",
                        "icmpv6.echo.sequence_number": str(layer.seq)}  # fmt: skip
    if vlans:
        out["vlan.id"] = ",".join(vlans)
    if service:
        out["ieee8021ad.id"] = ",".join(service)
    return out, kinds


def compare_with_tshark(tshark: str, path: Path) -> Counter[str]:
    """Assert every packet's fields equal tshark's; returns how many packets of each kind."""
    argv = [tshark, "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]
    for field in FIELDS:
        argv += ["-e", field]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    with open_capture_file(path) as capture:
        records = list(capture)
    assert len(rows) == len(records), (len(rows), len(records))
    seen: Counter[str] = Counter()
    for number, (row, record) in enumerate(zip(rows, records, strict=True), 1):
        theirs = {k: v for k, v in zip(FIELDS, row.split("|"), strict=True) if v}
        mine, kinds = ours(record.data, record.linktype, record.orig_len)
        if mine != theirs:
            diff = {k: (mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys()
                    if mine.get(k) != theirs.get(k)}  # fmt: skip
            raise AssertionError(f"packet {number} of {path.name}: (ours, tshark) {diff}")
        seen.update(kinds)
    return seen
