"""Decode a packet into typed layers: ``decode(data, linktype) -> Packet``.

The walk is table-driven with explicit dispatch maps (link type -> link decoder, EtherType
-> network decoder, IP protocol -> transport decoder): no import-time registry, nothing
global to mutate.

Error model (the contract the fuzz tests hold us to):
  * a header cut short by the capture (snap length) ends the walk: the packet keeps every
    layer decoded so far and ``packet.truncated`` names the layer that was cut;
  * a header whose fields are impossible (IPv4 IHL < 5, TCP data offset < 5, a wrong IP
    version, an IPv6 extension chain longer than :data:`MAX_IPV6_EXTENSIONS`) raises
    :class:`~socketkit.DecodeError` ``(layer, offset, reason)``;
  * nothing else escapes, and the work is bounded by the packet length.

Upper layers are decoded lazily: :func:`decode` checks the link layer at once and walks the
rest on first access to :attr:`Packet.layers` (or any accessor built on it), unless
``lazy=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .._errors import DecodeError
from .addresses import ipv4_text, ipv6_text, mac_text
from .headers import ARP as ARP_H
from .headers import DNS as DNS_H
from .headers import DOT1Q, ETHERNET, IPV4, IPV6, IPV6_EXT, IPV6_FRAG
from .headers import ICMP as ICMP_H
from .headers import ICMPV6 as ICMPV6_H
from .headers import LINUX_SLL as SLL_H
from .headers import LINUX_SLL2 as SLL2_H
from .headers import TCP as TCP_H
from .headers import UDP as UDP_H
from .layers import (
    ARP,
    DNS,
    ICMP,
    ICMPV6,
    TCP,
    UDP,
    Dot1Q,
    Ethernet,
    IPv4,
    IPv6,
    IPv6Extension,
    Layer,
    LinuxSLL,
    LinuxSLL2,
    Loopback,
)
from .linktype import LinkType

__all__ = ["MAX_IPV6_EXTENSIONS", "MAX_VLAN_TAGS", "Packet", "decode"]

#: IPv6 extension headers walked before giving up. RFC 8200 4.1 recommends at most one of
#: each kind (plus a second Destination Options): 8 covers every legal chain.
MAX_IPV6_EXTENSIONS = 8
#: Stacked 802.1Q tags accepted (QinQ is 2; 4 leaves room for odd provider setups).
MAX_VLAN_TAGS = 4

_T = TypeVar("_T")

_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXT_KINDS = frozenset({0, 43, 44, 60, 51, 135, 139, 140})

# A step returns (layer, next protocol key, next offset, end) or raises; the key selects the
# next decoder from the maps below. ``end`` is where this layer's payload ends (IP length).
_Walk = list[Layer]


class _Truncated(Exception):  # an internal signal; never escapes this module
    def __init__(self, layer: str) -> None:
        self.layer = layer


class Packet:
    """A decoded packet. ``data`` is the captured bytes, ``linktype`` its LINKTYPE.

    Accessors: :attr:`layers` (outermost first), ``packet[TCP]`` (KeyError when absent),
    :meth:`get`, :attr:`ip`, :attr:`transport`, :attr:`payload`, :attr:`truncated`.
    Decoding the layers may raise :class:`~socketkit.DecodeError` on first access.
    """

    __slots__ = ("_error", "_layers", "_payload", "_truncated", "data", "linktype")

    def __init__(self, data: bytes, linktype: int) -> None:
        self.data = data
        self.linktype = linktype
        self._layers: tuple[Layer, ...] | None = None
        self._truncated: str | None = None
        self._error: DecodeError | None = None
        self._payload = (0, 0)

    def partial(self) -> tuple[tuple[Layer, ...], str | None, DecodeError | None]:
        """``(layers, truncated, error)`` without raising: the layers decoded before a
        truncation or a DecodeError, and that error (None when the packet is sound)."""
        if self._layers is None:
            found: _Walk = []
            try:
                self._payload = _LINKS[self.linktype](self.data, found)
            except _Truncated as cut:
                self._truncated = cut.layer
                self._payload = (len(self.data), len(self.data))
            except DecodeError as exc:
                self._error = exc
                self._payload = (len(self.data), len(self.data))
            self._layers = tuple(found)
        return self._layers, self._truncated, self._error

    def _walk(self) -> tuple[Layer, ...]:
        layers, _truncated, error = self.partial()
        if error is not None:
            raise error
        return layers

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Every decoded header, outermost first."""
        return self._walk()

    @property
    def truncated(self) -> str | None:
        """Name of the layer the capture cut short (``"tcp"``, ``"ip"``...), else None."""
        self._walk()
        return self._truncated

    @property
    def payload(self) -> bytes:
        """The bytes after the last decoded header, up to the IP/UDP length (captured part
        only)."""
        self._walk()
        start, end = self._payload
        return bytes(self.data[start:end])

    def get(self, kind: type[_T]) -> _T | None:
        """The first layer of class ``kind``, or None."""
        for layer in self._walk():
            if isinstance(layer, kind):
                return layer
        return None

    def __getitem__(self, kind: type[_T]) -> _T:
        layer = self.get(kind)
        if layer is None:
            raise KeyError(kind.__name__)
        return layer

    def __contains__(self, kind: object) -> bool:
        return any(isinstance(layer, kind) for layer in self._walk())  # type: ignore[arg-type]

    @property
    def ip(self) -> IPv4 | IPv6 | None:
        """The first IPv4 or IPv6 header."""
        for layer in self._walk():
            if isinstance(layer, IPv4 | IPv6):
                return layer
        return None

    @property
    def transport(self) -> TCP | UDP | ICMP | ICMPV6 | None:
        """The TCP, UDP, ICMP or ICMPv6 header, if decoded."""
        for layer in self._walk():
            if isinstance(layer, TCP | UDP | ICMP | ICMPV6):
                return layer
        return None

    def __repr__(self) -> str:
        names = "/".join(type(layer).__name__ for layer in self._walk())
        cut = f" truncated at {self._truncated}" if self._truncated else ""
        return f"<Packet {len(self.data)} bytes {names}{cut}>"


def decode(data: bytes | bytearray | memoryview, linktype: int, *, lazy: bool = True) -> Packet:
    """Decode captured bytes of the given LINKTYPE.

    Args:
        data: the captured packet (``Record.data``).
        linktype: a LINKTYPE value (:class:`~socketkit.packet.LinkType`).
        lazy: when False, walk every layer now so any DecodeError is raised here.

    Returns:
        A :class:`Packet`; its upper layers are decoded on first access when ``lazy``.

    Raises:
        DecodeError: unknown link type (layer ``"link"``), or (``lazy=False``) a malformed
            header.
    """
    if linktype not in _LINKS:
        raise DecodeError("link", 0, f"unsupported link type {linktype}")
    if not isinstance(data, bytes):
        data = bytes(data)
    packet = Packet(data, linktype)
    if not lazy:
        packet._walk()
    return packet


# --- link layers ------------------------------------------------------------------------------

_ETH = ETHERNET.struct.unpack_from
_VLAN = DOT1Q.struct.unpack_from


def _ethernet(data: bytes, out: _Walk) -> tuple[int, int]:
    if len(data) < 14:
        raise _Truncated("eth")
    dst, src, etype = _ETH(data, 0)
    out.append(Ethernet(0, mac_text(dst), mac_text(src), etype))
    offset = 14
    tags = 0
    while etype in _VLAN_TPIDS:
        tags += 1
        if tags > MAX_VLAN_TAGS:
            raise DecodeError("vlan", offset, f"more than {MAX_VLAN_TAGS} VLAN tags")
        if len(data) < offset + 4:
            raise _Truncated("vlan")
        tci, inner = _VLAN(data, offset)
        out.append(Dot1Q(offset, etype, tci >> 13, (tci >> 12) & 1, tci & 0xFFF, inner))
        etype = inner
        offset += 4
    return _network(etype, data, offset, len(data), out)


_SLL = SLL_H.struct.unpack_from
_SLL2 = SLL2_H.struct.unpack_from


def _sll(data: bytes, out: _Walk) -> tuple[int, int]:
    if len(data) < 16:
        raise _Truncated("sll")
    pkttype, hatype, halen, addr, protocol = _SLL(data, 0)
    out.append(LinuxSLL(0, pkttype, hatype, mac_text(addr[: min(halen, 8)]), protocol))
    return _network(protocol, data, 16, len(data), out)


def _sll2(data: bytes, out: _Walk) -> tuple[int, int]:
    if len(data) < 20:
        raise _Truncated("sll2")
    protocol, _res, ifindex, hatype, pkttype, halen, addr = _SLL2(data, 0)
    out.append(LinuxSLL2(0, protocol, ifindex, hatype, pkttype, mac_text(addr[: min(halen, 8)])))
    return _network(protocol, data, 20, len(data), out)


# BSD address families for IPv6 differ by OS (Linux 10, FreeBSD 28, macOS 30, NetBSD 24).
_AF_IPV4 = frozenset({2})
_AF_IPV6 = frozenset({10, 24, 28, 30})


def _loop_family(data: bytes, out: _Walk, byteorder: str) -> tuple[int, int]:
    if len(data) < 4:
        raise _Truncated("loop")
    family = int.from_bytes(data[:4], byteorder)  # type: ignore[arg-type]
    if byteorder == "little" and family > 0xFFFF:  # NULL: the writer's order, try both
        family = int.from_bytes(data[:4], "big")
    out.append(Loopback(0, family))
    if family in _AF_IPV4:
        return _ipv4(data, 4, len(data), out)
    if family in _AF_IPV6:
        return _ipv6(data, 4, len(data), out)
    return (4, len(data))


def _null(data: bytes, out: _Walk) -> tuple[int, int]:
    return _loop_family(data, out, "little")


def _loop(data: bytes, out: _Walk) -> tuple[int, int]:
    return _loop_family(data, out, "big")


def _raw(data: bytes, out: _Walk) -> tuple[int, int]:
    if not data:
        raise _Truncated("ip")
    version = data[0] >> 4
    if version == 4:
        return _ipv4(data, 0, len(data), out)
    if version == 6:
        return _ipv6(data, 0, len(data), out)
    raise DecodeError("ip", 0, f"IP version {version}")


def _raw4(data: bytes, out: _Walk) -> tuple[int, int]:
    return _ipv4(data, 0, len(data), out)


def _raw6(data: bytes, out: _Walk) -> tuple[int, int]:
    return _ipv6(data, 0, len(data), out)


_LINKS: dict[int, Callable[[bytes, _Walk], tuple[int, int]]] = {
    LinkType.ETHERNET: _ethernet,
    LinkType.LINUX_SLL: _sll,
    LinkType.LINUX_SLL2: _sll2,
    LinkType.NULL: _null,
    LinkType.LOOP: _loop,
    LinkType.RAW: _raw,
    LinkType.IPV4: _raw4,
    LinkType.IPV6: _raw6,
}


# --- network layers ---------------------------------------------------------------------------


def _network(etype: int, data: bytes, offset: int, end: int, out: _Walk) -> tuple[int, int]:
    step = _ETHERTYPES.get(etype)
    if step is None:
        return (offset, end)
    return step(data, offset, end, out)


_ARP_FIXED = ARP_H.struct.unpack_from


def _arp(data: bytes, offset: int, end: int, out: _Walk) -> tuple[int, int]:
    if end < offset + 8:
        raise _Truncated("arp")
    htype, ptype, hlen, plen, op = _ARP_FIXED(data, offset)
    size = 8 + 2 * (hlen + plen)
    if end < offset + size:
        raise _Truncated("arp")
    pos = offset + 8
    fields = []
    for length in (hlen, plen, hlen, plen):
        fields.append(bytes(data[pos : pos + length]))
        pos += length
    sha, spa, tha, tpa = fields

    def hw(raw: bytes) -> str:
        return mac_text(raw)

    def proto(raw: bytes) -> str:
        return ipv4_text(raw) if ptype == 0x0800 and plen == 4 else raw.hex()

    out.append(ARP(offset, htype, ptype, op, hw(sha), proto(spa), hw(tha), proto(tpa), size))
    return (offset + size, offset + size)


_IPV4 = IPV4.struct.unpack_from


def _ipv4(data: bytes, offset: int, end: int, out: _Walk) -> tuple[int, int]:
    if end < offset + 20:
        raise _Truncated("ip")
    ver_ihl, tos, total, ident, frag, ttl, proto, csum, src, dst = _IPV4(data, offset)
    if ver_ihl >> 4 != 4:
        raise DecodeError("ip", offset, f"IP version {ver_ihl >> 4} in an IPv4 header")
    ihl = (ver_ihl & 15) * 4
    if ihl < 20:
        raise DecodeError("ip", offset, f"header length {ihl} < 20")
    if total < ihl:
        raise DecodeError("ip", offset + 2, f"total length {total} < header length {ihl}")
    if end < offset + ihl:
        raise _Truncated("ip")
    frag_offset = (frag & 0x1FFF) * 8
    mf = bool(frag & 0x2000)
    layer = IPv4(
        offset,
        ihl,
        tos,
        total,
        ident,
        bool(frag & 0x4000),
        mf,
        frag_offset,
        ttl,
        proto,
        csum,
        ipv4_text(src),
        ipv4_text(dst),
        bytes(data[offset + 20 : offset + ihl]),
        ihl,
    )
    out.append(layer)
    stop = min(end, offset + total)
    start = offset + ihl
    if frag_offset:  # a later fragment: no upper header here
        return (start, stop)
    return _transport(proto, data, start, stop, offset + total, layer, out)


_IPV6 = IPV6.struct.unpack_from
_EXT = IPV6_EXT.struct.unpack_from
_FRAG = IPV6_FRAG.struct.unpack_from


def _ipv6(data: bytes, offset: int, end: int, out: _Walk) -> tuple[int, int]:
    if end < offset + 40:
        raise _Truncated("ip6")
    vtcfl, plen, nxt, hlim, src, dst = _IPV6(data, offset)
    if vtcfl >> 28 != 6:
        raise DecodeError("ip6", offset, f"IP version {vtcfl >> 28} in an IPv6 header")
    claimed_end = offset + 40 + plen
    stop = min(end, claimed_end)
    pos = offset + 40
    extensions: list[IPv6Extension] = []
    proto = nxt
    fragment_later = False
    while proto in _IPV6_EXT_KINDS:
        if len(extensions) >= MAX_IPV6_EXTENSIONS:
            raise DecodeError("ip6", pos, f"more than {MAX_IPV6_EXTENSIONS} extension headers")
        if stop < pos + 8:
            if claimed_end < pos + 8:
                raise DecodeError("ip6", pos, "extension header beyond the payload length")
            _emit_ipv6(out, offset, vtcfl, plen, nxt, hlim, src, dst, extensions, proto, pos)
            raise _Truncated("ip6")
        if proto == 44:
            nxt2, _res, offlg, ident = _FRAG(data, pos)
            ext = IPv6Extension(pos, 44, nxt2, 8, offlg & 0xFFF8, bool(offlg & 1), ident)
            size = 8
            fragment_later = ext.frag_offset != 0
        else:
            nxt2, length = _EXT(data, pos)
            # AH (RFC 4302) counts 4-byte words minus 2; the others 8-byte words minus 1
            size = (length + 2) * 4 if proto == 51 else (length + 1) * 8
            ext = IPv6Extension(pos, proto, nxt2, size)
        extensions.append(ext)
        pos += size
        proto = nxt2
        if fragment_later:
            break
    if pos > claimed_end:
        raise DecodeError("ip6", pos, "extension headers run past the payload length")
    layer = _emit_ipv6(out, offset, vtcfl, plen, nxt, hlim, src, dst, extensions, proto, pos)
    if pos > stop:
        raise _Truncated("ip6")
    if fragment_later or proto == 59:
        return (pos, stop)
    return _transport(proto, data, pos, stop, claimed_end, layer, out)


def _emit_ipv6(  # noqa: PLR0917 - internal, called twice
    out: _Walk,
    offset: int,
    vtcfl: int,
    plen: int,
    nxt: int,
    hlim: int,
    src: bytes,
    dst: bytes,
    extensions: list[IPv6Extension],
    proto: int,
    pos: int,
) -> IPv6:
    layer = IPv6(
        offset,
        (vtcfl >> 20) & 0xFF,
        vtcfl & 0xFFFFF,
        plen,
        nxt,
        hlim,
        ipv6_text(src),
        ipv6_text(dst),
        tuple(extensions),
        proto,
        pos - offset,
    )
    out.append(layer)
    return layer


_ETHERTYPES: dict[int, Callable[[bytes, int, int, _Walk], tuple[int, int]]] = {
    0x0800: _ipv4,
    0x86DD: _ipv6,
    0x0806: _arp,
}


# --- transport layers -------------------------------------------------------------------------

_TCP = TCP_H.struct.unpack_from
_UDP = UDP_H.struct.unpack_from
_ICMP = ICMP_H.struct.unpack_from
_ICMP6 = ICMPV6_H.struct.unpack_from
_DNS = DNS_H.struct.unpack_from


def _transport(  # noqa: PLR0917 - internal hot path
    proto: int,
    data: bytes,
    start: int,
    stop: int,
    claimed_end: int,
    ip: IPv4 | IPv6,
    out: _Walk,
) -> tuple[int, int]:
    """Decode the header after IP. ``stop`` = end of captured IP payload, ``claimed_end`` =
    end according to the IP length (tcpdump's ``length`` is computed from it)."""
    if proto == 6:
        if stop < start + 20:
            raise _Truncated("tcp")
        sport, dport, seq, ack, off, flags, win, csum, urp = _TCP(data, start)
        doff = (off >> 4) * 4
        if doff < 20:
            raise DecodeError("tcp", start + 12, f"data offset {doff} < 20")
        if claimed_end < start + doff:
            raise DecodeError("tcp", start + 12, f"data offset {doff} beyond the IP payload")
        if stop < start + doff:
            raise _Truncated("tcp")
        out.append(
            TCP(
                start,
                sport,
                dport,
                seq,
                ack,
                doff,
                flags | ((off & 1) << 8),
                win,
                csum,
                urp,
                bytes(data[start + 20 : start + doff]),
                claimed_end - start - doff,
                doff,
            )
        )
        return (start + doff, stop)
    if proto == 17:
        if stop < start + 8:
            raise _Truncated("udp")
        sport, dport, ulen, csum = _UDP(data, start)
        out.append(UDP(start, sport, dport, ulen, csum))
        body = start + 8
        end = stop if ulen < 8 else min(stop, start + ulen)
        if (sport == 53 or dport == 53) and end >= body + 12:
            _dns(data, body, out)
        return (body, end)
    if proto == 1 and isinstance(ip, IPv4):
        if stop < start + 8:
            raise _Truncated("icmp")
        out.append(ICMP(start, *_ICMP(data, start)))
        return (start + 8, stop)
    if proto == 58 and isinstance(ip, IPv6):
        if stop < start + 4:
            raise _Truncated("icmp6")
        if stop < start + 8:  # some ICMPv6 messages are shorter than 8 bytes: keep the 4
            icmp_type, code, csum = data[start], data[start + 1], data[start + 2] << 8
            out.append(ICMPV6(start, icmp_type, code, csum | data[start + 3], 0, 0))
            return (stop, stop)
        out.append(ICMPV6(start, *_ICMP6(data, start)))
        return (start + 8, stop)
    return (start, stop)


def _dns(data: bytes, offset: int, out: _Walk) -> None:
    ident, flags, qd, an, ns, ar = _DNS(data, offset)
    out.append(
        DNS(
            offset,
            ident,
            bool(flags & 0x8000),
            (flags >> 11) & 15,
            bool(flags & 0x0400),
            bool(flags & 0x0200),
            bool(flags & 0x0100),
            bool(flags & 0x0080),
            flags & 15,
            qd,
            an,
            ns,
            ar,
        )
    )
