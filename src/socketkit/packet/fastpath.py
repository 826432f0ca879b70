"""The summary fast path: common packets formatted straight from ``unpack_from``.

Handles Ethernet / Linux SLL2 / raw IP -> IPv4 (no options, not a fragment) or IPv6 (no
extension headers) -> TCP, UDP, ICMP/ICMPv6 echo. Returns None for anything else, and for
anything odd (cut headers, impossible lengths), so the object path (:mod:`.summary`) prints
it. The structs are compiled from the header tables (:func:`.fields.stack`); per-flow text
("IP a.p > b.q: ") is cached in bounded dictionaries, since a capture repeats its flows.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .addresses import ipv4_text, ipv6_text
from .fields import stack
from .headers import ETHERNET, ICMP, ICMPV6, IPV4, IPV6, LINUX_SLL2, TCP, UDP
from .linktype import LinkType
from .tcpoptions import tcp_flags_text, tcp_options_text

__all__ = ["FAST_PATHS", "SLL_DIRECTION", "TCP_FLAGS", "is_dns6", "no_fast_path"]

#: cached texts per table before it is cleared (bounded memory on captures of many flows).
MAX_CACHED_FLOWS = 65536

TCP_FLAGS = tuple(tcp_flags_text(value) for value in range(256))
SLL_DIRECTION = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}

_TCP_FIELDS = ("seq", "ack", "off", "flags", "win", "urp")
# IPv4 total length + the TCP fields after the ports (addresses/ports come from the cache)
_T4 = stack((IPV4, ("len",)), (TCP, _TCP_FIELDS))[0]
# ... followed by 12 option bytes: nop,nop,TS (what Linux puts on every segment)
_T4TS = struct.Struct(_T4.format + "III")
_T6 = stack((IPV6, ("plen",)), (TCP, _TCP_FIELDS))[0]
_T6TS = struct.Struct(_T6.format + "III")
_U4 = stack((IPV4, ("src", "dst")), (UDP, ("sport", "dport", "ulen")))[0].unpack_from
U6_UNPACK = stack((IPV6, ("plen",)), (UDP, ("ulen",)))[0].unpack_from
I4_UNPACK = stack((IPV4, ("len",)), (ICMP, ("type", "id", "seq")))[0].unpack_from
I6_UNPACK = stack((IPV6, ("plen",)), (ICMPV6, ("type", "id", "seq")))[0].unpack_from
_P4 = struct.Struct("!4s4sHH").unpack
_P6 = struct.Struct("!16s16sHH").unpack
_T4U, T4TS_UNPACK = _T4.unpack_from, _T4TS.unpack_from
_T6U, T6TS_UNPACK = _T6.unpack_from, _T6TS.unpack_from
# Ethernet type + the IPv4 fields that decide the fast path (version/IHL, length, fragment, proto)
ETH_IP4_HEAD = stack((ETHERNET, ("type",)), (IPV4, ("ver_ihl", "len", "frag", "proto")))[
    0
].unpack_from
TS = 0x0101080A  # nop, nop, kind 8 length 10, as one big-endian word
_SLL2_PKTTYPE = LINUX_SLL2.offsets["pkttype"]

FLOWS4: dict[bytes, str] = {}
FLOWS6: dict[bytes, str] = {}
UDP4: dict[bytes, str] = {}
PAIRS4: dict[bytes, str] = {}
PAIRS6: dict[bytes, str] = {}


def flow4(key: bytes) -> str:
    src, dst, sport, dport = _P4(key)
    if len(FLOWS4) >= MAX_CACHED_FLOWS:
        FLOWS4.clear()
    text = FLOWS4[key] = f"IP {ipv4_text(src)}.{sport} > {ipv4_text(dst)}.{dport}: "
    return text


def flow6(key: bytes) -> str:
    src, dst, sport, dport = _P6(key)
    if len(FLOWS6) >= MAX_CACHED_FLOWS:
        FLOWS6.clear()
    text = FLOWS6[key] = f"IP6 {ipv6_text(src)}.{sport} > {ipv6_text(dst)}.{dport}: "
    return text


def pair4(key: bytes) -> str:
    if len(PAIRS4) >= MAX_CACHED_FLOWS:
        PAIRS4.clear()
    text = PAIRS4[key] = f"IP {ipv4_text(key[:4])} > {ipv4_text(key[4:])}: "
    return text


def pair6(key: bytes) -> str:
    if len(PAIRS6) >= MAX_CACHED_FLOWS:
        PAIRS6.clear()
    text = PAIRS6[key] = f"IP6 {ipv6_text(key[:16])} > {ipv6_text(key[16:])}: "
    return text


def _tcp_text(  # noqa: PLR0917 - hot path: the values come straight from unpack_from
    data: bytes, at: int, doff: int, seq: int, ack: int, flags: int, win: int, urp: int,
    plen: int, opt: int, tsval: int, tsecr: int,
) -> str | None:  # fmt: skip
    """Everything after the flow text; None when the options are cut by the capture."""
    if plen > 0:
        head = f"Flags [{TCP_FLAGS[flags]}], seq {seq}:{(seq + plen) & 0xFFFFFFFF}"
    elif flags & 0x07:
        head = f"Flags [{TCP_FLAGS[flags]}], seq {seq}"
    else:
        head = f"Flags [{TCP_FLAGS[flags]}]"
    if flags & 0x10:
        head = f"{head}, ack {ack}"
    head = f"{head}, win {win}, urg {urp}" if flags & 0x20 else f"{head}, win {win}"
    if doff == 20:
        return f"{head}, length {plen}"
    if doff == 32 and opt == TS:
        return f"{head}, options [nop,nop,TS val {tsval} ecr {tsecr}], length {plen}"
    if len(data) < at + doff:
        return None
    return f"{head}, options [{tcp_options_text(data[at + 20 : at + doff])}], length {plen}"


def _acked_ts(  # noqa: PLR0917 - hot path
    head: str,
    flow: str,
    flags: int,
    seq: int,
    ack: int,
    win: int,
    plen: int,
    tsval: int,
    tsecr: int,
) -> str:
    """The commonest TCP segment (ACK or PSH-ACK with a timestamp option) in one format."""
    if plen > 0:
        return (
            f"{head}{flow}Flags [{TCP_FLAGS[flags]}], seq {seq}:{(seq + plen) & 0xFFFFFFFF}, "
            f"ack {ack}"
            f", win {win}, options [nop,nop,TS val {tsval} ecr {tsecr}], length {plen}"
        )
    return (
        f"{head}{flow}Flags [{TCP_FLAGS[flags]}], ack {ack}, win {win}, "
        f"options [nop,nop,TS val {tsval} ecr {tsecr}], length 0"
    )


def _ip4(data: bytes, ip: int, head: str) -> str | None:
    """IPv4 at ``ip`` (caller checked len(data) >= ip + 28)."""
    if data[ip] != 0x45 or data[ip + 6] & 0x3F or data[ip + 7]:  # options or a fragment
        return None
    proto = data[ip + 9]
    if proto == 6:
        size = len(data)
        if size >= ip + 52:
            total, seq, ack, off, flags, win, urp, opt, tsval, tsecr = T4TS_UNPACK(data, ip)
        elif size >= ip + 40:
            total, seq, ack, off, flags, win, urp = _T4U(data, ip)
            opt, tsval, tsecr = 0, 0, 0
        else:
            return None
        doff = (off >> 4) << 2
        plen = total - 20 - doff
        if doff < 20 or plen < 0:
            return None
        key = data[ip + 12 : ip + 24]
        flow = FLOWS4.get(key) or flow4(key)
        if (flags & 0x37) == 0x10 and doff == 32 and opt == TS:  # ACK / PSH-ACK, timestamps
            return _acked_ts(head, flow, flags, seq, ack, win, plen, tsval, tsecr)
        rest = _tcp_text(data, ip + 20, doff, seq, ack, flags, win, urp, plen, opt, tsval, tsecr)
        return None if rest is None else f"{head}{flow}{rest}"
    if (data[ip + 2] << 8 | data[ip + 3]) < 28:  # too short for any of the three
        return None
    if proto == 17:
        key = data[ip + 12 : ip + 26]
        line = UDP4.get(key)
        if line is None:
            src, dst, sport, dport, ulen = _U4(data, ip)
            if ulen < 8 or sport == 53 or dport == 53:  # DNS: printed by the object path
                return None
            if len(UDP4) >= MAX_CACHED_FLOWS:
                UDP4.clear()
            line = UDP4[key] = (
                f"IP {ipv4_text(src)}.{sport} > {ipv4_text(dst)}.{dport}: UDP, length {ulen - 8}"
            )
        return head + line
    if proto == 1:
        total, icmp_type, ident, seq = I4_UNPACK(data, ip)
        if icmp_type == 8:
            kind = "request"
        elif icmp_type == 0:
            kind = "reply"
        else:
            return None
        key = data[ip + 12 : ip + 20]
        pair = PAIRS4.get(key) or pair4(key)
        return f"{head}{pair}ICMP echo {kind}, id {ident}, seq {seq}, length {total - 20}"
    return None


def _ip6(data: bytes, ip: int, head: str) -> str | None:
    """IPv6 at ``ip`` (caller checked len(data) >= ip + 48)."""
    if data[ip] >> 4 != 6:
        return None
    nxt = data[ip + 6]
    if nxt == 6:
        size = len(data)
        if size >= ip + 72:
            plen, seq, ack, off, flags, win, urp, opt, tsval, tsecr = T6TS_UNPACK(data, ip)
        elif size >= ip + 60:
            plen, seq, ack, off, flags, win, urp = _T6U(data, ip)
            opt, tsval, tsecr = 0, 0, 0
        else:
            return None
        doff = (off >> 4) << 2
        plen -= doff
        if doff < 20 or plen < 0:
            return None
        key = data[ip + 8 : ip + 44]
        flow = FLOWS6.get(key) or flow6(key)
        if (flags & 0x37) == 0x10 and doff == 32 and opt == TS:  # ACK / PSH-ACK, timestamps
            return _acked_ts(head, flow, flags, seq, ack, win, plen, tsval, tsecr)
        rest = _tcp_text(data, ip + 40, doff, seq, ack, flags, win, urp, plen, opt, tsval, tsecr)
        return None if rest is None else f"{head}{flow}{rest}"
    if nxt == 17:
        plen, ulen = U6_UNPACK(data, ip)
        if ulen < 8 or plen < 8 or is_dns6(data, ip + 40):
            return None
        key = data[ip + 8 : ip + 44]
        flow = FLOWS6.get(key) or flow6(key)
        return f"{head}{flow}UDP, length {ulen - 8}"
    if nxt == 58:
        plen, icmp_type, ident, seq = I6_UNPACK(data, ip)
        if plen < 8:
            return None
        if icmp_type == 128:
            kind = "request"
        elif icmp_type == 129:
            kind = "reply"
        else:
            return None
        key = data[ip + 8 : ip + 40]
        pair = PAIRS6.get(key) or pair6(key)
        return f"{head}{pair}ICMP6, echo {kind}, id {ident}, seq {seq}, length {plen}"
    return None


def is_dns6(data: bytes, udp: int) -> bool:
    """Whether the UDP header at ``udp`` has port 53 on either side (DNS, printed by the
    object path)."""
    return (not data[udp] and data[udp + 1] == 53) or (not data[udp + 2] and data[udp + 3] == 53)


def fast_ethernet(data: bytes, head: str) -> str | None:
    """Ethernet: the IPv4 branch is :func:`_ip4` inlined with the offsets as constants (the
    commonest packets of all; tests check it agrees with the object path)."""
    size = len(data)
    if size < 42:
        return None
    if data[12] != 0x08:
        if data[12] == 0x86 and data[13] == 0xDD and size >= 62:
            return _ip6(data, 14, head)
        return None
    if (
        data[13]
        or data[14] != 0x45
        or data[20] & 0x3F
        or data[21]
        or (data[16] << 8 | data[17]) < 28
    ):
        return None
    proto = data[23]
    if proto == 6:
        if size >= 66:
            total, seq, ack, off, flags, win, urp, opt, tsval, tsecr = T4TS_UNPACK(data, 14)
        elif size >= 54:
            total, seq, ack, off, flags, win, urp = _T4U(data, 14)
            opt, tsval, tsecr = 0, 0, 0
        else:
            return None
        doff = (off >> 4) << 2
        plen = total - 20 - doff
        if doff < 20 or plen < 0:
            return None
        key = data[26:38]
        flow = FLOWS4.get(key) or flow4(key)
        if (flags & 0x37) == 0x10 and doff == 32 and opt == TS:
            if plen > 0:
                return (
                    f"{head}{flow}Flags [{TCP_FLAGS[flags]}], "
                    f"seq {seq}:{(seq + plen) & 0xFFFFFFFF}, ack {ack}, win {win}, "
                    f"options [nop,nop,TS val {tsval} ecr {tsecr}], "
                    f"length {plen}"
                )
            return (
                f"{head}{flow}Flags [{TCP_FLAGS[flags]}], ack {ack}, win {win}, "
                f"options [nop,nop,TS val {tsval} ecr {tsecr}], length 0"
            )
        rest = _tcp_text(data, 34, doff, seq, ack, flags, win, urp, plen, opt, tsval, tsecr)
        return None if rest is None else f"{head}{flow}{rest}"
    if proto == 17:
        key = data[26:40]
        line = UDP4.get(key)
        if line is None:
            return _ip4(data, 14, head)
        return head + line
    if proto == 1:
        total, icmp_type, ident, seq = I4_UNPACK(data, 14)
        if icmp_type == 8:
            key = data[26:34]
            pair = PAIRS4.get(key) or pair4(key)
            return f"{head}{pair}ICMP echo request, id {ident}, seq {seq}, length {total - 20}"
        if icmp_type == 0:
            key = data[26:34]
            pair = PAIRS4.get(key) or pair4(key)
            return f"{head}{pair}ICMP echo reply, id {ident}, seq {seq}, length {total - 20}"
    return None


def fast_sll2(data: bytes, head: str) -> str | None:
    size = len(data)
    if size < 48:
        return None
    direction = SLL_DIRECTION.get(data[_SLL2_PKTTYPE])
    if direction is None:
        return None
    if data[0] == 0x08 and data[1] == 0x00:
        line = _ip4(data, 20, f"{head}{direction} ")
    elif data[0] == 0x86 and data[1] == 0xDD and size >= 68:
        line = _ip6(data, 20, f"{head}{direction} ")
    else:
        return None
    return line


def fast_raw(data: bytes, head: str) -> str | None:
    size = len(data)
    if size < 28:
        return None
    version = data[0] >> 4
    if version == 4:
        return _ip4(data, 0, head)
    if version == 6 and size >= 48:
        return _ip6(data, 0, head)
    return None


def fast_ipv4(data: bytes, head: str) -> str | None:
    return _ip4(data, 0, head) if len(data) >= 28 and data[0] >> 4 == 4 else None


def fast_ipv6(data: bytes, head: str) -> str | None:
    return _ip6(data, 0, head) if len(data) >= 48 else None


def no_fast_path(data: bytes, head: str) -> str | None:
    return None


FAST_PATHS: dict[int, Callable[[bytes, str], str | None]] = {
    LinkType.ETHERNET: fast_ethernet,
    LinkType.LINUX_SLL2: fast_sll2,
    LinkType.RAW: fast_raw,
    LinkType.IPV4: fast_ipv4,
    LinkType.IPV6: fast_ipv6,
}
