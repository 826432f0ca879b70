"""TCP options (RFC 9293 3.2, RFC 7323, RFC 2018): parsed objects and tcpdump-style text."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .._errors import DecodeError

__all__ = [
    "TCP_FLAG_LETTERS",
    "TCPOption",
    "parse_tcp_options",
    "tcp_flags_text",
    "tcp_options_text",
]

#: TCP flag bits in the order tcpdump prints them (print-tcp.c ``tcp_flag_values``).
TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."),
                    (0x20, "U"), (0x40, "E"), (0x80, "W"))  # fmt: skip


def tcp_flags_text(flags: int) -> str:
    """tcpdump's ``Flags [...]`` letters: ``S``, ``S.``, ``P.``, ``F.``; ``none`` for 0."""
    return "".join(letter for bit, letter in TCP_FLAG_LETTERS if flags & bit) or "none"


_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackOK", 5: "sack", 8: "TS"}
# (kind -> exact total length) for the options whose length RFC 9293/7323 fixes
_FIXED_LENGTH = {2: 4, 3: 3, 4: 2, 8: 10}
_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class TCPOption:
    """One option: ``kind``, its ``name`` (tcpdump's word, or ``opt-N``), the raw ``data``
    and ``value``: the decoded integers (mss, wscale, TSval/TSecr, SACK edges)."""

    kind: int
    name: str
    data: bytes
    value: tuple[int, ...]


def parse_tcp_options(raw: bytes, base: int = 0) -> tuple[TCPOption, ...]:
    """Parse a TCP option list. ``base`` is the packet offset of ``raw`` (for errors).

    Raises:
        DecodeError: an option's length is < 2, runs past the header, is wrong for its kind,
            or a SACK option is not 2 + 8*n bytes long.
    """
    options: list[TCPOption] = []
    index = 0
    end = len(raw)
    while index < end:  # bounded: every step advances at least one byte
        kind = raw[index]
        if kind == 0:
            options.append(TCPOption(0, "eol", b"", ()))
            break
        if kind == 1:
            options.append(TCPOption(1, "nop", b"", ()))
            index += 1
            continue
        if index + 1 >= end:
            raise DecodeError("tcp", base + index, "option length missing")
        length = raw[index + 1]
        if length < 2 or index + length > end:
            raise DecodeError("tcp", base + index, f"bad option length {length}")
        want = _FIXED_LENGTH.get(kind)
        if want is not None and length != want:
            raise DecodeError("tcp", base + index, f"option {kind} has length {length}")
        data = bytes(raw[index + 2 : index + length])
        value: tuple[int, ...] = ()
        if kind == 2:
            value = _U16.unpack(data)
        elif kind == 3:
            value = (data[0],)
        elif kind == 8:
            value = _U32X2.unpack(data)
        elif kind == 5:
            if len(data) % 8:
                raise DecodeError("tcp", base + index, f"SACK option has length {length}")
            value = struct.unpack(f"!{len(data) // 4}I", data)
        options.append(TCPOption(kind, _NAMES.get(kind, f"opt-{kind}"), data, value))
        index += length
    return tuple(options)


def tcp_options_text(raw: bytes, sack_base: int = 0) -> str:
    """tcpdump's ``options [...]`` contents: ``mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7``.
    ``sack_base`` is subtracted from SACK edges (tcpdump's relative sequence numbers).

    Never raises: a malformed list ends with ``bad opt`` as tcpdump prints it.
    """
    parts: list[str] = []
    index = 0
    end = len(raw)
    while index < end:
        kind = raw[index]
        if kind == 0:
            parts.append("eol")
            break
        if kind == 1:
            parts.append("nop")
            index += 1
            continue
        if index + 1 >= end:
            parts.append("bad opt")
            break
        length = raw[index + 1]
        want = _FIXED_LENGTH.get(kind)
        if length < 2 or index + length > end or (want is not None and length != want):
            parts.append("bad opt")
            break
        if kind == 8:
            tsval, tsecr = _U32X2.unpack_from(raw, index + 2)
            parts.append(f"TS val {tsval} ecr {tsecr}")
        elif kind == 2:
            parts.append(f"mss {_U16.unpack_from(raw, index + 2)[0]}")
        elif kind == 3:
            parts.append(f"wscale {raw[index + 2]}")
        elif kind == 4:
            parts.append("sackOK")
        elif kind == 5:
            if (length - 2) % 8:
                parts.append("bad opt")
                break
            edges = struct.unpack_from(f"!{(length - 2) // 4}I", raw, index + 2)
            if sack_base:
                edges = tuple((edge - sack_base) & 0xFFFFFFFF for edge in edges)
            blocks = "".join(f"{{{edges[i]}:{edges[i + 1]}}}" for i in range(0, len(edges), 2))
            parts.append(f"sack {len(edges) // 2} {blocks}")
        else:
            parts.append(f"opt-{kind}:{bytes(raw[index + 2 : index + length]).hex()}")
        index += length
    return ",".join(parts)
