"""Decoding each layer from hand-built packets: fields, truncation, malformed input."""

from __future__ import annotations

import struct

import pytest

from socketkit import DecodeError
from socketkit.packet import (
    ARP,
    DNS,
    ICMP,
    ICMPV6,
    MAX_IPV6_EXTENSIONS,
    TCP,
    UDP,
    Dot1Q,
    Ethernet,
    IPv4,
    IPv6,
    LinkType,
    LinuxSLL,
    LinuxSLL2,
    Loopback,
    decode,
    verify_checksums,
)

from . import build


def test_ethernet_ipv4_tcp_fields_and_options() -> None:
    frame = build.eth(
        build.tcp4(seq=4000000000, ack=7, flags=0x12, win=512, options=build.SYN_OPTIONS)
    )
    packet = decode(frame, LinkType.ETHERNET)
    eth, ip, tcp = packet.layers
    assert isinstance(eth, Ethernet) and eth.src == "02:00:00:00:00:01" and eth.type == 0x0800
    assert isinstance(ip, IPv4)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.df, ip.mf) == (
        "198.18.0.1", "198.18.0.2", 6, 64, True, False,
    )  # fmt: skip
    assert isinstance(tcp, TCP)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.window) == (
        40000,
        45000,
        4000000000,
        7,
        512,
    )
    assert tcp.flags_text == "S." and tcp.syn and tcp.ack_flag and not tcp.fin
    assert tcp.mss == 1460 and tcp.window_scale == 7 and tcp.sack_permitted
    assert tcp.timestamps == (7, 0)
    assert [opt.name for opt in tcp.options] == ["mss", "sackOK", "TS", "nop", "wscale"]
    assert packet.truncated is None and packet.payload == b""
    assert packet[TCP] is tcp and packet.get(UDP) is None and packet.ip is ip
    assert verify_checksums(packet) == {"ip": True, "tcp": True}


def test_sack_blocks_and_payload() -> None:
    sack = struct.pack("!BB4I", 5, 18, 100, 200, 300, 400)
    frame = build.eth(build.tcp4(flags=0x10, options=b"\x01\x01" + sack, payload=b"hello"))
    tcp = decode(frame, LinkType.ETHERNET)[TCP]
    assert tcp.sack == ((100, 200), (300, 400))
    assert tcp.payload_length == 5
    assert decode(frame, LinkType.ETHERNET).payload == b"hello"


def test_checksum_detects_corruption() -> None:
    frame = bytearray(build.eth(build.tcp4(flags=0x18, payload=b"data")))
    frame[-1] ^= 0xFF
    assert verify_checksums(decode(bytes(frame), 1)) == {"ip": True, "tcp": False}
    frame = bytearray(build.eth(build.udp4(5000, 6000, b"abc")))
    frame[22] ^= 1  # TTL: breaks the IP header checksum only
    assert verify_checksums(decode(bytes(frame), 1)) == {"ip": False, "udp": True}


def test_vlan_and_qinq() -> None:
    frame = build.eth(build.udp4(1, 2, b"x"), vlans=(100, 200))
    layers = decode(frame, 1).layers
    outer, inner = layers[1], layers[2]
    assert isinstance(outer, Dot1Q) and outer.tpid == 0x88A8 and outer.vid == 100
    assert isinstance(inner, Dot1Q) and inner.tpid == 0x8100 and inner.vid == 200
    assert inner.pcp == 3 and inner.type == 0x0800
    assert isinstance(layers[3], IPv4) and isinstance(layers[4], UDP)


def test_too_many_vlan_tags() -> None:
    frame = build.eth(b"", 0x8100) + struct.pack("!HH", 1, 0x8100) * 10
    with pytest.raises(DecodeError) as info:
        decode(frame, 1, lazy=False)
    assert info.value.layer == "vlan"


def test_arp() -> None:
    frame = build.eth(build.arp(1, build.MAC_A, "198.18.0.1", bytes(6), "198.18.0.2"), 0x0806)
    arp = decode(frame, 1)[ARP]
    assert (arp.op, arp.sha, arp.spa, arp.tha, arp.tpa) == (
        1, "02:00:00:00:00:01", "198.18.0.1", "00:00:00:00:00:00", "198.18.0.2",
    )  # fmt: skip


def test_sll_and_sll2_and_loopback_and_raw() -> None:
    inner = build.udp4(53, 4000, bytes(12))
    packet = decode(build.sll(inner, pkttype=4), LinkType.LINUX_SLL)
    assert isinstance(packet.layers[0], LinuxSLL) and packet.layers[0].pkttype == 4
    assert isinstance(packet.layers[-1], DNS)
    packet = decode(build.sll2(build.ip6(b"", 59), 0x86DD), LinkType.LINUX_SLL2)
    assert isinstance(packet.layers[0], LinuxSLL2) and packet.layers[0].ifindex == 3
    assert isinstance(packet.layers[1], IPv6) and packet.layers[1].proto == 59
    for linktype, head in ((LinkType.NULL, struct.pack("<I", 2)), (LinkType.NULL, b"\0\0\0\x02"),
                           (LinkType.LOOP, struct.pack("!I", 2))):  # fmt: skip
        layers = decode(head + inner, linktype).layers
        assert isinstance(layers[0], Loopback) and layers[0].family == 2
        assert isinstance(layers[1], IPv4)
    assert isinstance(decode(inner, LinkType.RAW).layers[0], IPv4)
    assert isinstance(decode(inner, LinkType.IPV4).layers[1], UDP)
    v6 = build.udp6(1, 2, b"z")
    assert isinstance(decode(v6, LinkType.RAW).layers[1], UDP)
    assert isinstance(decode(v6, LinkType.IPV6).layers[0], IPv6)


def test_dns_header() -> None:
    query = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00\0\1\0\1"
    dns = decode(build.eth(build.udp4(5353, 53, query)), 1)[DNS]
    assert (dns.id, dns.qr, dns.rd, dns.qdcount, dns.opcode) == (0xBEEF, False, True, 1, 0)


def test_icmp_and_icmpv6_echo() -> None:
    icmp = decode(build.eth(build.ip4(build.icmp_echo(77, 3), 1)), 1)[ICMP]
    assert (icmp.type, icmp.id, icmp.seq) == (8, 77, 3)
    frame = build.eth(build.icmp6_echo(5, 9, reply=True), 0x86DD)
    packet = decode(frame, 1)
    assert (packet[ICMPV6].type, packet[ICMPV6].id, packet[ICMPV6].seq) == (129, 5, 9)
    assert verify_checksums(packet) == {"icmp6": True}


def test_ipv4_options_and_fragments() -> None:
    options = b"\x94\x04\x00\x00"  # router alert (RFC 2113)
    ip = decode(build.ip4(build.udp(1, 2, b"x"), 17, options=options), LinkType.RAW)[IPv4]
    assert ip.header_length == 24 and [(o.kind, o.data) for o in ip.options] == [(0x94, b"\0\0")]
    later = build.ip4(b"\x00" * 16, 17, frag=0x2000 | 185)  # MF, offset 1480
    packet = decode(later, LinkType.RAW)
    assert packet.ip is not None and packet.ip.is_fragment
    assert isinstance(packet.ip, IPv4) and packet.ip.frag_offset == 1480
    assert packet.transport is None  # no UDP header in a later fragment


def test_ipv6_extension_headers() -> None:
    hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"  # hop-by-hop -> destination options
    dest = bytes([44, 0]) + b"\x01\x04\x00\x00\x00\x00"  # -> fragment
    frag = struct.pack("!BBHI", 17, 0, 1, 0xABCD)  # offset 0, M flag -> UDP
    packet = decode(build.ip6(hop + dest + frag + build.udp(7, 8, b"hi"), 0), LinkType.RAW)
    ip = packet[IPv6]
    assert [ext.kind for ext in ip.extensions] == [0, 60, 44]
    assert ip.proto == 17 and ip.extensions[2].more_fragments and ip.extensions[2].ident == 0xABCD
    assert packet[UDP].dport == 8


def test_ipv6_extension_chain_is_bounded() -> None:
    chain = (bytes([60, 0]) + bytes(6)) * (MAX_IPV6_EXTENSIONS + 4)
    with pytest.raises(DecodeError) as info:
        decode(build.ip6(chain, 60), LinkType.RAW, lazy=False)
    assert info.value.layer == "ip6" and "extension" in info.value.reason


@pytest.mark.parametrize(
    ("data", "linktype", "layer"),
    [
        (build.eth(b"\x46" + bytes(19)), 1, "ip"),  # IHL 6 but total length 0
        (b"\x44" + bytes(19), LinkType.RAW, "ip"),  # IHL 4 < 5
        (b"\x75" + bytes(19), LinkType.RAW, "ip"),  # version 7
        (build.ip4(struct.pack("!HHIIBB", 1, 2, 3, 4, 0x40, 2) + bytes(6), 6), 101, "tcp"),
    ],
    ids=["ihl-beyond-total", "ihl-4", "version-7", "tcp-doff-4"],
)
def test_malformed_headers_raise_decode_error(data: bytes, linktype: int, layer: str) -> None:
    packet = decode(data, linktype)  # lazy: the link layer is fine
    with pytest.raises(DecodeError) as info:
        _ = packet.layers
    assert info.value.layer == layer
    _layers, _truncated, error = packet.partial()
    assert error is info.value


def test_truncated_headers_mark_the_packet() -> None:
    frame = build.eth(build.tcp4(flags=0x10, options=build.TS_OPTION))
    for cut, layer in ((10, "eth"), (20, "ip"), (40, "tcp"), (60, "tcp")):
        packet = decode(frame[:cut], 1, lazy=False)
        assert packet.truncated == layer, cut
    packet = decode(frame[:40], 1)
    assert isinstance(packet.layers[-1], IPv4)


def test_unknown_linktype() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b"abc", 9999)
    assert info.value.layer == "link"


def test_layers_are_frozen() -> None:
    tcp = decode(build.eth(build.tcp4()), 1)[TCP]
    with pytest.raises(AttributeError):
        tcp.seq = 5  # type: ignore[misc]
