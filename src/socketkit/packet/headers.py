"""Every fixed header socketkit decodes, declared once as a table (see :mod:`.fields`).

Bit fields that share a byte (IPv4 version/IHL, TCP data offset/flags, IPv6 version/class/
flow label) are kept as the whole byte or word here and split by the decoder.
"""

from __future__ import annotations

from .fields import Header

__all__ = [
    "ARP",
    "DNS",
    "DOT1Q",
    "ETHERNET",
    "ICMP",
    "ICMPV6",
    "IPV4",
    "IPV6",
    "IPV6_EXT",
    "IPV6_FRAG",
    "LINUX_SLL",
    "LINUX_SLL2",
    "TCP",
    "UDP",
]

# IEEE 802.3 / Ethernet II
ETHERNET = Header("eth", [("dst", "6s"), ("src", "6s"), ("type", "H")])
# IEEE 802.1Q tag after the outer type 0x8100 (0x88a8 / 0x9100 for QinQ): TCI + inner type
DOT1Q = Header("vlan", [("tci", "H"), ("type", "H")])
# Linux cooked capture v1 (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html)
LINUX_SLL = Header(
    "sll",
    [("pkttype", "H"), ("hatype", "H"), ("halen", "H"), ("addr", "8s"), ("protocol", "H")],
)
# Linux cooked capture v2 (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html)
LINUX_SLL2 = Header(
    "sll2",
    [
        ("protocol", "H"),
        ("reserved", "H"),
        ("ifindex", "I"),
        ("hatype", "H"),
        ("pkttype", "B"),
        ("halen", "B"),
        ("addr", "8s"),
    ],
)
# RFC 826, fixed part; the addresses follow with lengths hlen/plen
ARP = Header("arp", [("htype", "H"), ("ptype", "H"), ("hlen", "B"), ("plen", "B"), ("op", "H")])
# RFC 791
IPV4 = Header(
    "ip",
    [
        ("ver_ihl", "B"),
        ("tos", "B"),
        ("len", "H"),
        ("id", "H"),
        ("frag", "H"),
        ("ttl", "B"),
        ("proto", "B"),
        ("sum", "H"),
        ("src", "4s"),
        ("dst", "4s"),
    ],
)
# RFC 8200
IPV6 = Header(
    "ip6",
    [("vtcfl", "I"), ("plen", "H"), ("nxt", "B"), ("hlim", "B"), ("src", "16s"), ("dst", "16s")],
)
# RFC 8200 4.3-4.6 generic extension header prefix (hop-by-hop, routing, destination options)
IPV6_EXT = Header("ip6ext", [("nxt", "B"), ("len", "B")])
# RFC 8200 4.5
IPV6_FRAG = Header("ip6frag", [("nxt", "B"), ("res", "B"), ("offlg", "H"), ("ident", "I")])
# RFC 793 / 9293
TCP = Header(
    "tcp",
    [
        ("sport", "H"),
        ("dport", "H"),
        ("seq", "I"),
        ("ack", "I"),
        ("off", "B"),
        ("flags", "B"),
        ("win", "H"),
        ("sum", "H"),
        ("urp", "H"),
    ],
)
# RFC 768
UDP = Header("udp", [("sport", "H"), ("dport", "H"), ("ulen", "H"), ("sum", "H")])
# RFC 792 (the 4 "rest of header" bytes are id/seq for echo)
ICMP = Header("icmp", [("type", "B"), ("code", "B"), ("sum", "H"), ("id", "H"), ("seq", "H")])
# RFC 4443 (same layout; id/seq meaningful for echo 128/129)
ICMPV6 = Header("icmp6", [("type", "B"), ("code", "B"), ("sum", "H"), ("id", "H"), ("seq", "H")])
# RFC 1035 4.1.1
DNS = Header(
    "dns",
    [
        ("id", "H"),
        ("flags", "H"),
        ("qdcount", "H"),
        ("ancount", "H"),
        ("nscount", "H"),
        ("arcount", "H"),
    ],
)
