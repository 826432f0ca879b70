"""ICMP echo building and reply classification, without sockets."""

from __future__ import annotations

import struct

from socketkit.raw import echo


def test_checksum_of_a_request_verifies_to_zero() -> None:
    req = echo.build_request(0x1234, 7, b"abcdefg")
    assert echo.checksum(req) == 0
    assert req[:1] == b"\x08" and struct.unpack("!HH", req[4:8]) == (0x1234, 7)


def test_icmpv6_request_leaves_the_checksum_to_the_kernel() -> None:
    req = echo.build_request(1, 2, b"x", ipv6=True)
    assert req[0] == 128 and req[2:4] == b"\0\0"


def _reply(ident: int, seq: int, payload: bytes = b"data") -> bytes:
    head = struct.pack("!BBHHH", 0, 0, 0, ident, seq)
    csum = echo.checksum(head + payload)
    return struct.pack("!BBHHH", 0, 0, csum, ident, seq) + payload


def test_reply_parsed_and_checksum_checked() -> None:
    parsed = echo.parse_icmp(_reply(5, 9), ipv6=False)
    assert parsed == echo.EchoReply(5, 9, 12, True)
    corrupt = bytearray(_reply(5, 9))
    corrupt[-1] ^= 0xFF
    bad = echo.parse_icmp(bytes(corrupt), ipv6=False)
    assert isinstance(bad, echo.EchoReply) and not bad.checksum_ok


def test_time_exceeded_quotes_our_probe() -> None:
    inner_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 84, 0, 0, 1, 1, 0, bytes(4), bytes(4))
    quoted = inner_ip + echo.build_request(77, 3, b"")
    msg = struct.pack("!BBHI", 11, 0, 0, 0) + quoted
    parsed = echo.parse_icmp(msg, ipv6=False)
    assert parsed == echo.IcmpError(11, 0, "Time to live exceeded", 77, 3)


def test_other_messages_and_garbage_are_ignored() -> None:
    assert echo.parse_icmp(b"", ipv6=False) is None
    assert echo.parse_icmp(echo.build_request(1, 1, b""), ipv6=False) is None  # our own request
    assert echo.parse_icmp(bytes([11, 0]) + bytes(6), ipv6=False) == echo.IcmpError(
        11, 0, "Time to live exceeded", None, None
    )
    assert echo.parse_ipv4(b"\x45" + bytes(5)) is None
