"""ICMP/ICMPv6 echo messages: build requests, check replies (sans-I/O: bytes in, bytes out).

RFC 792 (ICMP echo, type 8 request / 0 reply), RFC 4443 (ICMPv6 echo, 128 / 129), the
Internet checksum of RFC 1071.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "EchoReply",
    "IcmpError",
    "build_request",
    "checksum",
    "error_text",
    "parse_icmp",
    "parse_ipv4",
]

ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_ECHO, ICMP6_ECHO_REPLY = 1, 3, 128, 129

_UNREACH4 = {
    0: "Destination Net Unreachable",
    1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable",
    3: "Destination Port Unreachable",
    4: "Frag needed and DF set",
    9: "Destination Net Prohibited",
    10: "Destination Host Prohibited",
    13: "Packet filtered",
}
_UNREACH6 = {
    0: "No route",
    1: "Administratively prohibited",
    3: "Address unreachable",
    4: "Port unreachable",
}


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit one's complement Internet checksum (RFC 1071)."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\0"
    total = sum(struct.unpack(f"!{len(raw) // 2}H", raw))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def build_request(ident: int, seq: int, payload: bytes, *, ipv6: bool = False) -> bytes:
    """An echo request. For ICMPv6 the checksum is left 0: the kernel fills it (it needs the
    IPv6 pseudo-header, RFC 4443 2.3)."""
    kind = ICMP6_ECHO if ipv6 else ICMP_ECHO
    head = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if ipv6:
        return head + payload
    csum = checksum(head + payload)
    return struct.pack("!BBHHH", kind, 0, csum, ident & 0xFFFF, seq & 0xFFFF) + payload


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An echo reply: ``ident``/``seq`` as sent, ``size`` the ICMP bytes (header + data)."""

    ident: int
    seq: int
    size: int
    checksum_ok: bool


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP error about one of our probes: ``inner`` is the quoted original ICMP header
    (for echo probes) or ``None``; ``text`` the message iputils would print."""

    type: int
    code: int
    text: str
    ident: int | None
    seq: int | None


def error_text(kind: int, code: int, *, ipv6: bool) -> str:
    """What iputils ping prints for an ICMP(v6) error type/code."""
    if ipv6:
        if kind == ICMP6_TIME_EXCEEDED:
            return "Time exceeded: Hop limit"
        if kind == ICMP6_DEST_UNREACH:
            return f"Destination unreachable: {_UNREACH6.get(code, f'code {code}')}"
        return f"ICMPv6 type {kind} code {code}"
    if kind == ICMP_TIME_EXCEEDED:
        return "Time to live exceeded"
    if kind == ICMP_DEST_UNREACH:
        return _UNREACH4.get(code, f"Dest Unreachable, Bad Code: {code}")
    return f"ICMP type {kind} code {code}"


def parse_ipv4(packet: bytes) -> tuple[int, str, bytes] | None:
    """(ttl, source address, payload) of an IPv4 packet, or None if malformed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        return None
    src = ".".join(str(b) for b in packet[12:16])
    return packet[8], src, packet[ihl:]


def parse_icmp(message: bytes, *, ipv6: bool, verify: bool = True) -> EchoReply | IcmpError | None:
    """Classify an ICMP(v6) message received on an ICMP socket (no IP header).

    Returns an :class:`EchoReply`, an :class:`IcmpError` quoting an echo request, or ``None``
    for anything else (other types, truncated data).
    """
    if len(message) < 8:
        return None
    kind, code, _csum, ident, seq = struct.unpack_from("!BBHHH", message)
    reply = ICMP6_ECHO_REPLY if ipv6 else ICMP_ECHO_REPLY
    if kind == reply:
        ok = True if ipv6 or not verify else checksum(message) == 0
        return EchoReply(ident, seq, len(message), ok)
    if ipv6 and kind in (ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED):
        text = error_text(kind, code, ipv6=True)
        inner = message[8 + 40 : 8 + 40 + 8]  # the quoted IPv6 header, then our ICMPv6 header
        if len(inner) == 8 and inner[0] == ICMP6_ECHO:
            _k, _c, _s, iid, iseq = struct.unpack("!BBHHH", inner)
            return IcmpError(kind, code, text, iid, iseq)
        return IcmpError(kind, code, text, None, None)
    if not ipv6 and kind in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        text = error_text(kind, code, ipv6=False)
        quoted = message[8:]
        if len(quoted) >= 20 and quoted[0] >> 4 == 4:
            ihl = (quoted[0] & 0x0F) * 4
            inner = quoted[ihl : ihl + 8]
            if len(inner) == 8 and inner[0] == ICMP_ECHO:
                _k, _c, _s, iid, iseq = struct.unpack("!BBHHH", inner)
                return IcmpError(kind, code, text, iid, iseq)
        return IcmpError(kind, code, text, None, None)
    return None
