"""Address strings: every accepted form, every error, resolution order (RFC 8305 §4)."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit import Address, AddressError, ResolutionError, parse_address
from socketkit._addr import format_sockaddr, interleave_families, resolve


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com:80", Address("example.com", 80)),
        ("127.0.0.1:8080", Address("127.0.0.1", 8080)),
        ("[::1]:443", Address("::1", 443)),
        ("[fe80::1%eth0]:22", Address("fe80::1%eth0", 22)),
        ("localhost:0", Address("localhost", 0)),
        (":9000", Address(None, 9000)),
        ("9000", Address(None, 9000)),
        ("[]:9000", Address(None, 9000)),
        ("  host:1  ", Address("host", 1)),
        ("host:65535", Address("host", 65535)),
        ("unix:/run/app.sock", Address(path="/run/app.sock")),
        ("unix:relative.sock", Address(path="relative.sock")),
        ("unix:@abstract-name", Address(path="\0abstract-name")),
        (8080, Address(None, 8080)),
        (0, Address(None, 0)),
        (("example.com", 25), Address("example.com", 25)),
        (("::1", 25), Address("::1", 25)),
        (("", 25), Address(None, 25)),
    ],
)
def test_forms(text: object, expected: Address) -> None:
    assert parse_address(text) == expected  # type: ignore[arg-type]


def test_default_host_fills_port_only_forms() -> None:
    assert parse_address(":80", default_host="127.0.0.1") == Address("127.0.0.1", 80)
    assert parse_address("80", default_host="::1") == Address("::1", 80)
    assert parse_address(80, default_host="h") == Address("h", 80)
    assert parse_address(("", 80), default_host="h") == Address("h", 80)
    assert parse_address("other:80", default_host="h") == Address("other", 80)


def test_address_passes_through() -> None:
    address = Address("h", 1)
    assert parse_address(address) is address


@pytest.mark.parametrize(
    "bad",
    [
        "host:65536",
        "host:99999999999999999999",
        "host:-1",
        "host:abc",
        "host:",
        "host: 80",
        "host:²",  # str.isdigit() is true, int() refuses it
        "host:٣",  # int() takes Arabic-Indic digits; a port is ASCII
        "host:\uff18\uff10",  # full-width "80"
        "²",
        "host",
        "",
        "::1:80",
        "fe80::1",
        "[::1]",
        "[::1]80",
        "[::1",
        "[::1]:",
        "unix:",
        65536,
        -1,
        True,
        1.5,
        None,
        ("host",),
        ("host", "80"),
        (80, "host"),
        ("host", 80, 0),
        ["host", 80],
    ],
)
def test_errors(bad: object) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)  # also catchable as ValueError
    assert str(info.value)


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(AddressError, match=r"65536 out of range"):
        parse_address("h:65536")
    with pytest.raises(AddressError, match=r"\[v6addr\]:port"):
        parse_address("::1:80")
    with pytest.raises(AddressError, match=r"bad port 'x'"):
        parse_address("h:x")


@pytest.mark.parametrize(
    "text", ["example.com:80", "[::1]:443", ":9000", "unix:/a/b.sock", "unix:@name"]
)
def test_str_round_trips(text: str) -> None:
    assert parse_address(str(parse_address(text))) == parse_address(text)


hostnames = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}\Z")
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(host=hosts, port=st.integers(0, 65535))
def test_any_host_and_port_round_trip(host: str, port: int) -> None:
    address = Address(host, port)
    assert parse_address(str(address)) == address
    assert parse_address((host, port)) == address


def _is_port_text(text: str) -> bool:
    stripped = text.rstrip()  # trailing blanks: the whole address is stripped first
    return stripped.isascii() and stripped.isdigit()


@given(port=st.text(min_size=1, max_size=6).filter(lambda t: not _is_port_text(t)))
def test_any_non_ascii_digit_port_is_an_address_error(port: str) -> None:
    with pytest.raises(AddressError):
        parse_address(f"h:{port}")


@given(port=st.integers(65536, 10**12))
def test_any_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(AddressError):
        parse_address(f"h:{port}")


def test_is_unix() -> None:
    assert parse_address("unix:/x").is_unix
    assert not parse_address("h:1").is_unix


V6 = socket.AF_INET6
V4 = socket.AF_INET


def info(family: int, n: int) -> tuple[int, tuple[object, ...]]:
    host = f"2001:db8::{n}" if family == V6 else f"192.0.2.{n}"
    return (family, (host, 80))


def test_interleave_alternates_starting_with_the_preferred_family() -> None:
    infos = [info(V6, 1), info(V6, 2), info(V6, 3), info(V4, 1), info(V4, 2)]
    assert interleave_families(infos) == [
        info(V6, 1), info(V4, 1), info(V6, 2), info(V4, 2), info(V6, 3),
    ]  # fmt: skip
    infos = [info(V4, 1), info(V6, 1), info(V6, 2), info(V4, 2)]
    assert interleave_families(infos) == [info(V4, 1), info(V6, 1), info(V4, 2), info(V6, 2)]


def test_interleave_edge_cases() -> None:
    assert interleave_families([]) == []
    one_family = [info(V4, 1), info(V4, 2), info(V4, 3)]
    assert interleave_families(one_family) == one_family
    assert interleave_families(iter([info(V6, 1)])) == [info(V6, 1)]


@given(st.lists(st.tuples(st.sampled_from([V4, V6]), st.integers(1, 250)), max_size=20))
def test_interleave_is_a_permutation_keeping_order_within_a_family(
    items: list[tuple[int, int]],
) -> None:
    infos = [info(f, n) for f, n in items]
    out = interleave_families(infos)
    assert sorted(out) == sorted(infos)
    for family in (V4, V6):
        assert [i for i in out if i[0] == family] == [i for i in infos if i[0] == family]
    for k in range(len(out) - 1):
        # Two of a family in a row only once the other family has run out.
        if out[k][0] == out[k + 1][0]:
            assert all(i[0] == out[k][0] for i in out[k:])


def test_resolve_numeric() -> None:
    assert resolve(Address("127.0.0.1", 80), numeric=True) == [(V4, ("127.0.0.1", 80))]
    assert resolve(Address("::1", 80), numeric=True) == [(V6, ("::1", 80, 0, 0))]


def test_resolve_deduplicates_and_keeps_the_port() -> None:
    result = resolve(Address("localhost", 4242))
    assert result
    assert len(result) == len(set(result))
    assert all(sockaddr[1] == 4242 for _family, sockaddr in result)


def test_resolve_errors() -> None:
    with pytest.raises(ResolutionError, match="not-an-ip"):
        resolve(Address("not-an-ip", 80), numeric=True)
    with pytest.raises(ResolutionError, match=r"x\.invalid"):
        resolve(Address("x.invalid", 80))
    with pytest.raises(ResolutionError):
        resolve(Address("a" * 300 + ".com", 80))  # a label over 63 bytes
    with pytest.raises(ResolutionError):
        resolve(Address("127.0.0.1", 80), family=V6, numeric=True)


def test_resolve_passive_wildcard() -> None:
    families = {family for family, _ in resolve(Address(None, 0), passive=True)}
    assert V4 in families


@pytest.mark.parametrize(
    ("sockaddr", "text"),
    [
        (("127.0.0.1", 80), "127.0.0.1:80"),
        (("::1", 80, 0, 0), "[::1]:80"),
        ("/run/x.sock", "unix:/run/x.sock"),
        ("\0name", "unix:@name"),
        (b"\0name", "unix:@name"),
        ("", "unix:"),
        (None, "None"),
    ],
)
def test_format_sockaddr(sockaddr: object, text: str) -> None:
    assert format_sockaddr(sockaddr) == text
