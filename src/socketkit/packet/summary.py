"""One line per packet in the style of ``tcpdump -n -S`` (absolute sequence numbers).

Two paths produce the same text:
  * the fast path formats the common packets (Ethernet/SLL2/raw -> IPv4 without options or
    IPv6 -> TCP/UDP/ICMP echo) straight from one ``unpack_from`` of a struct compiled from the
    header tables (:func:`.fields.stack`), building no objects;
  * everything else (ARP, VLAN, options, fragments, extension headers, truncated or malformed
    packets) goes through :func:`.decode.decode` and :func:`format_packet`.
Tests check the two agree on every packet they both handle.

``summary`` never raises on packet content: a cut header ends the line with ``[|tcp]``, a
malformed one with ``[|ip: reason]``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime

from .addresses import ipv4_text, ipv6_text
from .decode import Packet
from .fields import stack
from .headers import ICMP as ICMP_H
from .headers import ICMPV6 as ICMPV6_H
from .headers import IPV4, IPV6
from .headers import LINUX_SLL2 as SLL2_H
from .headers import TCP as TCP_H
from .headers import UDP as UDP_H
from .layers import (
    ARP,
    ICMP,
    ICMPV6,
    TCP,
    UDP,
    Dot1Q,
    Ethernet,
    IPv4,
    IPv6,
    LinuxSLL,
    LinuxSLL2,
    tcp_flags_text,
)
from .linktype import LinkType
from .tcpoptions import tcp_options_text

__all__ = ["format_packet", "summary", "time_text"]

# --- time ----------------------------------------------------------------------------------

#: seconds whose HH:MM:SS text is cached; a capture walks forward in time, so a small cache
#: hits almost always, and clearing it keeps memory bounded.
_MAX_SECONDS_CACHED = 4096
_HMS: dict[int, str] = {}


def time_text(ts_ns: int) -> str:
    """``HH:MM:SS.uuuuuu`` in local time, as tcpdump prints it (honours ``TZ``)."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    hms = _HMS.get(sec)
    if hms is None:
        if len(_HMS) >= _MAX_SECONDS_CACHED:
            _HMS.clear()
        try:
            hms = datetime.fromtimestamp(sec).strftime("%H:%M:%S")
        except (OverflowError, OSError, ValueError):
            hms = f"[{sec}s]"
        _HMS[sec] = hms
    return f"{hms}.{ns // 1000:06d}"


# --- the object path --------------------------------------------------------------------------

_SLL_DIRECTION = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}
_ICMP_NAMES = {3: "unreachable", 4: "source quench", 5: "redirect",
               11: "time exceeded in-transit", 12: "parameter problem",
               13: "time stamp request", 14: "time stamp reply"}  # fmt: skip
_ICMP6_NAMES = {1: "destination unreachable", 2: "packet too big",
                3: "time exceeded in-transit", 4: "parameter problem",
                133: "router solicitation", 134: "router advertisement",
                135: "neighbor solicitation", 136: "neighbor advertisement",
                143: "multicast listener report v2"}  # fmt: skip


def _tcp_text(tcp: TCP) -> str:
    flags = tcp.flags & 0xFF
    plen = tcp.payload_length
    parts = [f"Flags [{_FLAGS[flags]}]"]
    if plen > 0:
        parts.append(f", seq {tcp.seq}:{(tcp.seq + plen) & 0xFFFFFFFF}")
    elif flags & 0x07:
        parts.append(f", seq {tcp.seq}")
    if flags & 0x10:
        parts.append(f", ack {tcp.ack}")
    parts.append(f", win {tcp.window}")
    if flags & 0x20:
        parts.append(f", urg {tcp.urgent}")
    if tcp.options_raw:
        parts.append(f", options [{tcp_options_text(tcp.options_raw)}]")
    parts.append(f", length {plen}")
    return "".join(parts)


def format_packet(packet: Packet, ts_ns: int | None = None) -> str:
    """The summary line of a decoded packet (the general path of :func:`summary`)."""
    layers, truncated, error = packet.partial()
    data = packet.data
    out: list[str] = [] if ts_ns is None else [time_text(ts_ns), " "]
    net: IPv4 | IPv6 | None = None
    tail = ""
    link_end = 0
    ethertype: int | None = None
    for layer in layers:
        if isinstance(layer, Ethernet | Dot1Q):
            ethertype = layer.type
            link_end = layer.offset + layer.header_length
            if isinstance(layer, Dot1Q):
                out.append(f"vlan {layer.vid}, p {layer.pcp}, ")
        elif isinstance(layer, LinuxSLL | LinuxSLL2):
            ethertype = layer.protocol
            link_end = layer.header_length
            out.append(_SLL_DIRECTION.get(layer.pkttype, f"pkttype {layer.pkttype}") + " ")
        elif isinstance(layer, ARP):
            size = len(data) - layer.offset
            if layer.op == 1:
                tail = f"ARP, Request who-has {layer.tpa} tell {layer.spa}, length {size}"
            elif layer.op == 2:
                tail = f"ARP, Reply {layer.spa} is-at {layer.sha}, length {size}"
            else:
                tail = f"ARP, op {layer.op}, length {size}"
        elif isinstance(layer, IPv4 | IPv6):
            net = layer
        elif isinstance(layer, TCP | UDP) and net is not None:
            word = "IP" if isinstance(net, IPv4) else "IP6"
            out.append(f"{word} {net.src}.{layer.sport} > {net.dst}.{layer.dport}: ")
            if isinstance(layer, TCP):
                tail = _tcp_text(layer)
            else:
                ulen = layer.length
                tail = f"UDP, length {ulen - 8}" if ulen >= 8 else f"UDP, bad length {ulen}"
            net = None
        elif isinstance(layer, ICMP | ICMPV6) and net is not None:
            word = "IP" if isinstance(net, IPv4) else "IP6"
            out.append(f"{word} {net.src} > {net.dst}: ")
            tail = _icmp_text(layer, net)
            net = None
    if net is not None:  # IP without a decoded upper layer
        word = "IP" if isinstance(net, IPv4) else "IP6"
        out.append(f"{word} {net.src} > {net.dst}: ")
        if truncated is None and error is None:
            tail = _ip_other_text(net)
    elif not tail and truncated is None and error is None:
        if ethertype is not None and ethertype < 0x600:
            tail = f"802.3, length {len(data) - link_end}"
        elif ethertype is not None:
            tail = f"ethertype 0x{ethertype:04x}, length {len(data) - link_end}"
        else:
            tail = f"length {len(data)}"
    out.append(tail)
    space = " " if tail else ""
    if truncated is not None:
        out.append(f"{space}[|{truncated}]")
    elif error is not None:
        out.append(f"{space}[|{error.layer}: {error.reason}]")
    return "".join(out)


def _ip_payload_length(net: IPv4 | IPv6) -> int:
    if isinstance(net, IPv4):
        return net.total_length - net.header_length
    return net.payload_length + 40 - net.header_length


def _ip_other_text(net: IPv4 | IPv6) -> str:
    length = _ip_payload_length(net)
    if isinstance(net, IPv4) and net.frag_offset:
        more = "+" if net.mf else ""
        return f"ip-proto-{net.proto}, frag {net.id}:{length}@{net.frag_offset}{more}"
    if isinstance(net, IPv6) and net.is_fragment:
        frag = next(ext for ext in net.extensions if ext.kind == 44)
        more = "+" if frag.more_fragments else ""
        return f"ip-proto-{net.proto}, frag {frag.ident}:{length}@{frag.frag_offset}{more}"
    if isinstance(net, IPv6) and net.proto == 59:
        return f"no next header, length {length}"
    return f"ip-proto-{net.proto}, length {length}"


def _icmp_text(icmp: ICMP | ICMPV6, net: IPv4 | IPv6) -> str:
    length = _ip_payload_length(net)
    if isinstance(icmp, ICMP):
        if icmp.type in (0, 8):
            kind = "request" if icmp.type == 8 else "reply"
            return f"ICMP echo {kind}, id {icmp.id}, seq {icmp.seq}, length {length}"
        name = _ICMP_NAMES.get(icmp.type, f"type {icmp.type}")
        return f"ICMP {name}, code {icmp.code}, length {length}"
    if icmp.type in (128, 129):
        kind = "request" if icmp.type == 128 else "reply"
        return f"ICMP6, echo {kind}, id {icmp.id}, seq {icmp.seq}, length {length}"
    name = _ICMP6_NAMES.get(icmp.type, f"type {icmp.type}")
    return f"ICMP6, {name}, code {icmp.code}, length {length}"


# --- the fast path ------------------------------------------------------------------------------

_FLAGS = tuple(tcp_flags_text(value) for value in range(256))

# One struct per common stack, compiled from the same tables as the object decoder.
_IP4_TCP, _ = stack(
    (IPV4, ("len", "src", "dst")),
    (TCP_H, ("sport", "dport", "seq", "ack", "off", "flags", "win", "urp")),
)
_IP4_UDP, _ = stack((IPV4, ("src", "dst")), (UDP_H, ("sport", "dport", "ulen")))
_IP4_ICMP, _ = stack((IPV4, ("len", "src", "dst")), (ICMP_H, ("type", "code", "id", "seq")))
_IP6_TCP, _ = stack(
    (IPV6, ("plen", "src", "dst")),
    (TCP_H, ("sport", "dport", "seq", "ack", "off", "flags", "win", "urp")),
)
_IP6_UDP, _ = stack((IPV6, ("src", "dst")), (UDP_H, ("sport", "dport", "ulen")))
_IP6_ICMP, _ = stack((IPV6, ("plen", "src", "dst")), (ICMPV6_H, ("type", "code", "id", "seq")))
_TS = b"\x01\x01\x08\x0a"  # nop, nop, TS: Linux puts it on every segment
_TSVALS = struct.Struct("!II").unpack_from

_IP4_TCP_U = _IP4_TCP.unpack_from
_IP4_UDP_U = _IP4_UDP.unpack_from
_IP4_ICMP_U = _IP4_ICMP.unpack_from
_IP6_TCP_U = _IP6_TCP.unpack_from
_IP6_UDP_U = _IP6_UDP.unpack_from
_IP6_ICMP_U = _IP6_ICMP.unpack_from


def _tcp_tail(  # noqa: PLR0917 - hot path: the values come straight from unpack_from
    data: bytes, at: int, seq: int, ack: int, off: int, flags: int, win: int, urp: int, plen: int
) -> str | None:
    """Text after ``Flags``; None when the options are cut (the slow path says so)."""
    if plen > 0:
        text = f"Flags [{_FLAGS[flags]}], seq {seq}:{(seq + plen) & 0xFFFFFFFF}"
    elif flags & 0x07:
        text = f"Flags [{_FLAGS[flags]}], seq {seq}"
    else:
        text = f"Flags [{_FLAGS[flags]}]"
    text = f"{text}, ack {ack}, win {win}" if flags & 0x10 else f"{text}, win {win}"
    if flags & 0x20:
        text = f"{text}, urg {urp}"
    doff = (off >> 4) * 4
    if doff > 20:
        if len(data) < at + doff:
            return None
        if doff == 32 and data[at + 20 : at + 24] == _TS:
            tsval, tsecr = _TSVALS(data, at + 24)
            return f"{text}, options [nop,nop,TS val {tsval} ecr {tsecr}], length {plen}"
        return f"{text}, options [{tcp_options_text(data[at + 20 : at + doff])}], length {plen}"
    return f"{text}, length {plen}"


def _fast_ip4(data: bytes, at: int) -> str | None:
    if data[at] != 0x45 or data[at + 6] & 0x3F or data[at + 7]:  # options or a fragment
        return None
    proto = data[at + 9]
    size = len(data)
    if proto == 6:
        if size < at + 40:
            return None
        total, src, dst, sport, dport, seq, ack, off, flags, win, urp = _IP4_TCP_U(data, at)
        doff = (off >> 4) * 4
        if doff < 20 or total < 20 + doff:
            return None
        tail = _tcp_tail(data, at + 20, seq, ack, off, flags, win, urp, total - 20 - doff)
        if tail is None:
            return None
        return f"IP {ipv4_text(src)}.{sport} > {ipv4_text(dst)}.{dport}: {tail}"
    if proto == 17:
        if size < at + 28:
            return None
        src, dst, sport, dport, ulen = _IP4_UDP_U(data, at)
        if ulen < 8:
            return None
        return f"IP {ipv4_text(src)}.{sport} > {ipv4_text(dst)}.{dport}: UDP, length {ulen - 8}"
    if proto == 1:
        if size < at + 28:
            return None
        total, src, dst, icmp_type, _code, ident, seq = _IP4_ICMP_U(data, at)
        if icmp_type == 8:
            kind = "request"
        elif icmp_type == 0:
            kind = "reply"
        else:
            return None
        return (
            f"IP {ipv4_text(src)} > {ipv4_text(dst)}: ICMP echo {kind}, id {ident}, "
            f"seq {seq}, length {total - 20}"
        )
    return None


def _fast_ip6(data: bytes, at: int) -> str | None:
    if data[at] >> 4 != 6:
        return None
    nxt = data[at + 6]
    size = len(data)
    if nxt == 6:
        if size < at + 60:
            return None
        plen, src, dst, sport, dport, seq, ack, off, flags, win, urp = _IP6_TCP_U(data, at)
        doff = (off >> 4) * 4
        if doff < 20 or plen < doff:
            return None
        tail = _tcp_tail(data, at + 40, seq, ack, off, flags, win, urp, plen - doff)
        if tail is None:
            return None
        return f"IP6 {ipv6_text(src)}.{sport} > {ipv6_text(dst)}.{dport}: {tail}"
    if nxt == 17:
        if size < at + 48:
            return None
        src, dst, sport, dport, ulen = _IP6_UDP_U(data, at)
        if ulen < 8:
            return None
        return f"IP6 {ipv6_text(src)}.{sport} > {ipv6_text(dst)}.{dport}: UDP, length {ulen - 8}"
    if nxt == 58:
        if size < at + 48:
            return None
        plen, src, dst, icmp_type, _code, ident, seq = _IP6_ICMP_U(data, at)
        if icmp_type == 128:
            kind = "request"
        elif icmp_type == 129:
            kind = "reply"
        else:
            return None
        return (
            f"IP6 {ipv6_text(src)} > {ipv6_text(dst)}: ICMP6, echo {kind}, id {ident}, "
            f"seq {seq}, length {plen}"
        )
    return None


def _fast_ethernet(data: bytes) -> str | None:
    if len(data) < 34:
        return None
    hi = data[12]
    if hi == 0x08 and data[13] == 0x00:
        return _fast_ip4(data, 14)
    if hi == 0x86 and data[13] == 0xDD and len(data) >= 54:
        return _fast_ip6(data, 14)
    return None


_SLL2_PROTO = SLL2_H.offsets["pkttype"]


def _fast_sll2(data: bytes) -> str | None:
    if len(data) < 40:
        return None
    direction = _SLL_DIRECTION.get(data[_SLL2_PROTO])
    if direction is None:
        return None
    proto = (data[0] << 8) | data[1]
    if proto == 0x0800:
        line = _fast_ip4(data, 20)
    elif proto == 0x86DD and len(data) >= 60:
        line = _fast_ip6(data, 20)
    else:
        return None
    return None if line is None else f"{direction} {line}"


def _fast_raw(data: bytes) -> str | None:
    if len(data) < 20:
        return None
    version = data[0] >> 4
    if version == 4:
        return _fast_ip4(data, 0)
    if version == 6 and len(data) >= 40:
        return _fast_ip6(data, 0)
    return None


def _fast_none(data: bytes) -> str | None:
    return None


_FAST: dict[int, Callable[[bytes], str | None]] = {
    LinkType.ETHERNET: _fast_ethernet,
    LinkType.LINUX_SLL2: _fast_sll2,
    LinkType.RAW: _fast_raw,
    LinkType.IPV4: _fast_raw,
    LinkType.IPV6: _fast_raw,
}


def summary(data: bytes | bytearray | memoryview, linktype: int, ts_ns: int | None = None) -> str:
    """One ``tcpdump -n -S`` style line for a captured packet.

    Args:
        data: the captured bytes (``Record.data``).
        linktype: their LINKTYPE.
        ts_ns: capture time (ns since the epoch); when given the line starts with local
            ``HH:MM:SS.uuuuuu`` as tcpdump's does.

    Returns:
        The line, without a newline. Never raises for packet content: cut headers end in
        ``[|layer]``, malformed ones in ``[|layer: reason]``; an unknown link type gives
        ``unknown link type N, length L``.
    """
    if type(data) is not bytes:
        data = bytes(data)
    line = _FAST.get(linktype, _fast_none)(data)
    if line is None:
        if linktype not in _DECODABLE:
            line = f"unknown link type {linktype}, length {len(data)}"
        else:
            line = format_packet(Packet(data, linktype))
    if ts_ns is None:
        return line
    return f"{time_text(ts_ns)} {line}"


_DECODABLE = frozenset(int(value) for value in LinkType)
