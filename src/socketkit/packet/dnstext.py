"""DNS messages (RFC 1035) as ``tcpdump -nn`` prints them (print-domain.c), for UDP port 53.

    12345+ [1au] A? example.com. (40)              a query: id, opcode, RD "+", counts
    12345* 1/0/1 A 192.0.2.1 (56)                  a response: id, rcode, AA "*", RA "-" if
                                                   not, TC "|", AD "$", an/ns/ar, answers

The header fields come from the table in :mod:`.headers` (``DNS``); names are followed through
compression pointers with a bound on the jumps, so the work is bounded by the message size.
A message cut short (or malformed) ends in `` [|domain]`` as tcpdump's does.
"""

from __future__ import annotations

from .addresses import ipv4_text, ipv6_text
from .headers import DNS as DNS_H

__all__ = ["dns_text"]

_HEAD = DNS_H.struct.unpack_from
_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
          33: "SRV", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 64: "SVCB",
          65: "HTTPS", 255: "ANY", 257: "CAA"}  # fmt: skip
_OPCODES = ("", " inv_q", " stat", " op3", " notify", " update")
_RCODES = ("", " FormErr", " ServFail", " NXDomain", " NotImp", " Refused", " YXDomain",
           " YXRRSet", " NXRRSet", " NotAuth", " NotZone")  # fmt: skip
#: compression pointers followed in one name before it is called malformed
_MAX_JUMPS = 64


class _Cut(Exception):
    """The message ends (or is malformed) here: tcpdump's ``[|domain]``."""


def _name(msg: bytes, pos: int) -> tuple[str, int]:
    """The name at ``pos`` (``example.com.``, ``.`` for the root) and where it ends."""
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if pos >= len(msg):
            raise _Cut
        size = msg[pos]
        if size & 0xC0 == 0xC0:
            if pos + 1 >= len(msg) or jumps >= _MAX_JUMPS:
                raise _Cut
            if end < 0:
                end = pos + 2
            pos = ((size & 0x3F) << 8) | msg[pos + 1]
            jumps += 1
            continue
        if size & 0xC0:
            raise _Cut
        if size == 0:
            break
        if pos + 1 + size > len(msg):
            raise _Cut
        labels.append(msg[pos + 1 : pos + 1 + size].decode("latin-1"))
        pos += 1 + size
    return (".".join(labels) + "." if labels else "."), (pos + 1 if end < 0 else end)


def _type(code: int) -> str:
    return _TYPES.get(code) or f"Type{code}"


def _question(msg: bytes, pos: int) -> tuple[str, int]:
    name, pos = _name(msg, pos)
    if pos + 4 > len(msg):
        raise _Cut
    qtype = (msg[pos] << 8) | msg[pos + 1]
    return f" {_type(qtype)}? {name}", pos + 4


def _record(msg: bytes, pos: int, verbose: int) -> tuple[str, int]:
    name, pos = _name(msg, pos)
    if pos + 10 > len(msg):
        raise _Cut
    rtype = (msg[pos] << 8) | msg[pos + 1]
    size = (msg[pos + 8] << 8) | msg[pos + 9]
    start, end = pos + 10, pos + 10 + size
    if end > len(msg):
        raise _Cut
    text = f" {name} {_type(rtype)}" if verbose else f" {_type(rtype)}"
    if rtype == 1 and size == 4:
        text += f" {ipv4_text(msg[start:end])}"
    elif rtype == 28 and size == 16:
        text += f" {ipv6_text(msg[start:end])}"
    elif rtype in (2, 5, 12):
        text += f" {_name(msg, start)[0]}"
    elif rtype == 15 and size >= 3:
        text += f" {_name(msg, start + 2)[0]} {(msg[start] << 8) | msg[start + 1]}"
    elif rtype == 16:
        strings = []
        at = start
        while at < end:
            length = msg[at]
            if at + 1 + length > end:
                raise _Cut
            strings.append('"' + msg[at + 1 : at + 1 + length].decode("latin-1") + '"')
            at += 1 + length
        text += " " + " ".join(strings)
    return text, end


def dns_text(msg: bytes, length: int, verbose: int = 0) -> str:
    """The text tcpdump prints after ``a.53 > b.port: `` for a DNS message.

    Args:
        msg: the captured message (the UDP payload).
        length: the message length by the UDP header (printed as ``(N)``).
        verbose: the number of ``-v`` (answers then carry their owner name).
    """
    if len(msg) < 12:
        return "[|domain]"
    ident, flags, qd, an, ns, ar = _HEAD(msg, 0)
    opcode = _OPCODES[(flags >> 11) & 15] if (flags >> 11) & 15 < len(_OPCODES) else ""
    if not opcode and (flags >> 11) & 15:
        opcode = f" op{(flags >> 11) & 15}"
    out: list[str] = []
    try:
        if flags & 0x8000:
            rcode = flags & 15
            out.append(
                f"{ident}{opcode}{_RCODES[rcode] if rcode < len(_RCODES) else f' Resp{rcode}'}"
                f"{'*' if flags & 0x0400 else ''}{'' if flags & 0x0080 else '-'}"
                f"{'|' if flags & 0x0200 else ''}{'$' if flags & 0x0020 else ''}"
            )
            if qd != 1:
                out.append(f" [{qd}q]")
            pos = 12
            for _ in range(qd):
                pos = _name(msg, pos)[1] + 4
            out.append(f" {an}/{ns}/{ar}")
            for index in range(an):
                text, pos = _record(msg, pos, verbose)
                out.append(("," if index else "") + text)
        else:
            out.append(
                f"{ident}{opcode}{'+' if flags & 0x0100 else ''}{'%' if flags & 0x0010 else ''}"
            )
            if flags & 0x6CF:
                out.append(f" [b2&3=0x{flags:x}]")
            if qd != 1:
                out.append(f" [{qd}q]")
            for count, tag in ((an, "a"), (ns, "n"), (ar, "au")):
                if count:
                    out.append(f" [{count}{tag}]")
            if qd:
                text, _pos = _question(msg, 12)
                out.append(text)
    except _Cut:
        out.append(" [|domain]")
        return "".join(out)
    out.append(f" ({length})")
    return "".join(out)
