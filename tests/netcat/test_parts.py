"""Sans-I/O parts: CRLF, hex dump, access lists, port ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from socketkit import AddressError
from socketkit.netcat.access import AccessList
from socketkit.netcat.scan import parse_ports
from socketkit.netcat.text import CrlfEncoder, HexDumper


def test_crlf_converts_bare_lf_only_across_chunks() -> None:
    enc = CrlfEncoder()
    assert enc.encode(b"a\nb\r\n") == b"a\r\nb\r\n"
    assert enc.encode(b"c\r") == b"c\r"
    assert enc.encode(b"\nd") == b"\nd"  # the \r went out with the previous chunk
    assert enc.encode(b"") == b""


def test_hex_dump_marks_directions_with_running_offsets() -> None:
    dump = HexDumper()
    first = dump.dump(">", b"hello world, 16b+extra")
    assert first.splitlines()[0].startswith("> 00000000  68 65 6c 6c 6f")
    assert first.splitlines()[1].startswith("> 00000010  ")
    assert "|hello world, 16b|" in first
    assert dump.dump("<", b"\x00\xff").startswith("< 00000000  00 ff")
    assert dump.dump(">", b"z").startswith("> 00000016  7a")


def test_access_lists(tmp_path: Path) -> None:
    listed = tmp_path / "allow.txt"
    listed.write_text("10.0.0.0/8  # lab\n\n::1\n")
    acl = AccessList(allow=[f"@{listed}", "192.0.2.1,192.0.2.2"], deny=["10.9.0.0/16"])
    assert acl.admits("10.1.2.3")
    assert not acl.admits("10.9.1.1")
    assert acl.admits("::1")
    assert acl.admits("::ffff:10.0.0.1")  # IPv4-mapped is checked as IPv4
    assert acl.admits("192.0.2.2")
    assert not acl.admits("192.0.2.3")
    assert AccessList().admits("203.0.113.9")
    with pytest.raises(AddressError):
        AccessList(allow=["not-an-address"])


def test_parse_ports() -> None:
    assert parse_ports("22,80,8000-8002,80") == [22, 80, 8000, 8001, 8002]
    assert parse_ports("http,ssh,80") == [22, 80]  # service names, from /etc/services
    assert parse_ports("domain", "udp") == [53]
    for bad in ("70000", "1-70000", "5-1", "no-such-svc", "1-", "http-80", ""):
        with pytest.raises(AddressError):
            parse_ports(bad)
