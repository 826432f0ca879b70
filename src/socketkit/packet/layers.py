"""The decoded layers: small typed frozen objects, one per header.

Every layer records ``offset`` (where its header starts in the packet bytes) and
``header_length``. Options are kept as raw bytes and parsed only when asked for
(:attr:`TCP.options`, :attr:`IPv4.options`), since most callers never look at them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import DecodeError
from .tcpoptions import TCPOption, parse_tcp_options, tcp_flags_text

__all__ = [
    "ARP",
    "DNS",
    "ICMP",
    "ICMPV6",
    "TCP",
    "UDP",
    "Dot1Q",
    "Ethernet",
    "IPOption",
    "IPv4",
    "IPv6",
    "IPv6Extension",
    "Layer",
    "LinuxSLL",
    "LinuxSLL2",
    "Loopback",
]


@dataclass(frozen=True, slots=True)
class Ethernet:
    """Ethernet II header. ``type`` is the EtherType (or 802.3 length when < 0x600)."""

    offset: int
    dst: str
    src: str
    type: int
    header_length: int = 14


@dataclass(frozen=True, slots=True)
class Dot1Q:
    """One IEEE 802.1Q VLAN tag (repeated for QinQ, outer first). ``tpid`` is the tag's
    EtherType (0x8100, 0x88a8 or 0x9100), ``type`` the EtherType that follows it."""

    offset: int
    tpid: int
    pcp: int
    dei: int
    vid: int
    type: int
    header_length: int = 4


@dataclass(frozen=True, slots=True)
class LinuxSLL:
    """Linux cooked capture v1 header (``LINKTYPE_LINUX_SLL``)."""

    offset: int
    pkttype: int
    hatype: int
    addr: str
    protocol: int
    header_length: int = 16


@dataclass(frozen=True, slots=True)
class LinuxSLL2:
    """Linux cooked capture v2 header (``LINKTYPE_LINUX_SLL2``, what ``tcpdump -i any``
    writes)."""

    offset: int
    protocol: int
    ifindex: int
    hatype: int
    pkttype: int
    addr: str
    header_length: int = 20


@dataclass(frozen=True, slots=True)
class Loopback:
    """BSD loopback (``NULL``/``LOOP``) header: the 4-byte address family."""

    offset: int
    family: int
    header_length: int = 4


@dataclass(frozen=True, slots=True)
class ARP:
    """ARP (RFC 826). Addresses are text: MAC for Ethernet hardware, dotted quad for IPv4
    protocol addresses, hex otherwise."""

    offset: int
    htype: int
    ptype: int
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str
    header_length: int


@dataclass(frozen=True, slots=True)
class IPOption:
    """One IPv4 option: ``kind`` (type octet) and its data bytes."""

    kind: int
    data: bytes


@dataclass(frozen=True, slots=True)
class IPv4:
    """IPv4 header (RFC 791). ``frag_offset`` is in bytes; ``options_raw`` unparsed."""

    offset: int
    ihl: int
    tos: int
    total_length: int
    id: int
    df: bool
    mf: bool
    frag_offset: int
    ttl: int
    proto: int
    checksum: int
    src: str
    dst: str
    options_raw: bytes
    header_length: int

    @property
    def is_fragment(self) -> bool:
        """True for any fragment (more fragments follow, or not the first)."""
        return self.mf or self.frag_offset != 0

    @property
    def options(self) -> tuple[IPOption, ...]:
        """The options, parsed now. Raises DecodeError for a malformed option list."""
        return parse_ipv4_options(self.options_raw, self.offset + 20)


@dataclass(frozen=True, slots=True)
class IPv6Extension:
    """One IPv6 extension header: ``kind`` is its protocol number (0 hop-by-hop, 43 routing,
    44 fragment, 60 destination options, 51 AH). Fragment fields are set only for 44."""

    offset: int
    kind: int
    next_header: int
    header_length: int
    frag_offset: int = 0
    more_fragments: bool = False
    ident: int = 0


@dataclass(frozen=True, slots=True)
class IPv6:
    """IPv6 header (RFC 8200) with its extension headers. ``proto`` is the upper-layer
    protocol after the extension chain (59 = no next header)."""

    offset: int
    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    src: str
    dst: str
    extensions: tuple[IPv6Extension, ...]
    proto: int
    header_length: int

    @property
    def is_fragment(self) -> bool:
        return any(ext.kind == 44 for ext in self.extensions)


@dataclass(frozen=True, slots=True)
class TCP:
    """TCP header (RFC 9293). ``payload_length`` is what the IP length says, even when the
    capture kept fewer bytes (as tcpdump's ``length``)."""

    offset: int
    sport: int
    dport: int
    seq: int
    ack: int
    data_offset: int
    flags: int
    window: int
    checksum: int
    urgent: int
    options_raw: bytes
    payload_length: int
    header_length: int

    @property
    def flags_text(self) -> str:
        return tcp_flags_text(self.flags)

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def ack_flag(self) -> bool:
        return bool(self.flags & 0x10)

    @property
    def options(self) -> tuple[TCPOption, ...]:
        """The options, parsed now. Raises DecodeError for a malformed option list."""
        return parse_tcp_options(self.options_raw, self.offset + 20)

    def _option(self, kind: int) -> TCPOption | None:
        for option in self.options:
            if option.kind == kind:
                return option
        return None

    @property
    def mss(self) -> int | None:
        option = self._option(2)
        return None if option is None else option.value[0]

    @property
    def window_scale(self) -> int | None:
        option = self._option(3)
        return None if option is None else option.value[0]

    @property
    def sack_permitted(self) -> bool:
        return self._option(4) is not None

    @property
    def sack(self) -> tuple[tuple[int, int], ...]:
        """SACK blocks as (left edge, right edge) pairs; empty without the option."""
        option = self._option(5)
        if option is None:
            return ()
        values = option.value
        return tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))

    @property
    def timestamps(self) -> tuple[int, int] | None:
        """(TSval, TSecr) or None."""
        option = self._option(8)
        return None if option is None else (option.value[0], option.value[1])


@dataclass(frozen=True, slots=True)
class UDP:
    """UDP header (RFC 768)."""

    offset: int
    sport: int
    dport: int
    length: int
    checksum: int
    header_length: int = 8


@dataclass(frozen=True, slots=True)
class ICMP:
    """ICMP header (RFC 792). ``id``/``seq`` are the echo fields (the raw "rest of header"
    for other types)."""

    offset: int
    type: int
    code: int
    checksum: int
    id: int
    seq: int
    header_length: int = 8


@dataclass(frozen=True, slots=True)
class ICMPV6:
    """ICMPv6 header (RFC 4443); ``id``/``seq`` as for :class:`ICMP`."""

    offset: int
    type: int
    code: int
    checksum: int
    id: int
    seq: int
    header_length: int = 8


@dataclass(frozen=True, slots=True)
class DNS:
    """DNS message header (RFC 1035 4.1.1), decoded for UDP port 53 payloads."""

    offset: int
    id: int
    qr: bool
    opcode: int
    aa: bool
    tc: bool
    rd: bool
    ra: bool
    rcode: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    header_length: int = 12


Layer = (
    Ethernet
    | Dot1Q
    | LinuxSLL
    | LinuxSLL2
    | Loopback
    | ARP
    | IPv4
    | IPv6
    | TCP
    | UDP
    | ICMP
    | ICMPV6
    | DNS
)


def parse_ipv4_options(raw: bytes, base: int) -> tuple[IPOption, ...]:
    """Parse IPv4 options (RFC 791 3.1): EOL (0) ends the list, NOP (1) is one byte, others
    are type-length-value. ``base`` is the packet offset of ``raw`` for error reports."""
    options: list[IPOption] = []
    index = 0
    end = len(raw)
    while index < end:  # bounded: every step advances at least one byte
        kind = raw[index]
        if kind == 0:
            options.append(IPOption(0, b""))
            break
        if kind == 1:
            options.append(IPOption(1, b""))
            index += 1
            continue
        if index + 1 >= end:
            raise DecodeError("ip", base + index, "option length missing")
        length = raw[index + 1]
        if length < 2 or index + length > end:
            raise DecodeError("ip", base + index, f"bad option length {length}")
        options.append(IPOption(kind, bytes(raw[index + 2 : index + length])))
        index += length
    return tuple(options)
