"""LineFramer and LengthPrefixFramer (sans-I/O): any chunking of any messages round-trips;
an oversize frame is a RemoteProtocolError; the memory held stays bounded."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketkit import LengthPrefixFramer, LineFramer, LocalProtocolError, RemoteProtocolError
from socketkit.proto.framing import DEFAULT_MAX_MESSAGE, Framer


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any chunking)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def drain(framer: Framer) -> list[bytes]:
    out = []
    while (message := framer.next_message()) is not None:
        out.append(message)
    return out


def feed_all(framer: LineFramer | LengthPrefixFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        framer.feed(chunk)
        out += drain(framer)
    return out


DELIMITERS = [b"\n", b"\r\n", b"\x00", b"\x00\x00", b"--boundary--"]


@given(
    delimiter=st.sampled_from(DELIMITERS),
    messages=st.lists(st.binary(max_size=200), max_size=20),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_line_round_trip_any_chunking(
    delimiter: bytes, messages: list[bytes], cuts: list[int]
) -> None:
    encoder = LineFramer(delimiter, max_size=200)
    accepted, frames = [], []
    for m in messages:  # whatever encode accepts must decode back as itself
        try:
            frames.append(encoder.encode(m))
        except LocalProtocolError:
            assert (m + delimiter).find(delimiter) != len(m)
            continue
        accepted.append(m)
    messages, wire = accepted, b"".join(frames)
    framer = LineFramer(delimiter, max_size=200)
    assert feed_all(framer, split(wire, cuts)) == messages
    assert framer.check_eof() is None


@given(
    width=st.sampled_from([1, 2, 4, 8]),
    messages=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_length_prefix_round_trip_any_chunking(
    width: int, messages: list[bytes], cuts: list[int]
) -> None:
    framer = LengthPrefixFramer(width)
    messages = [m[: framer.max_size] for m in messages]
    wire = b"".join(framer.encode(m) for m in messages)
    assert feed_all(LengthPrefixFramer(width), split(wire, cuts)) == messages


@pytest.mark.parametrize(("width", "prefix"), [(1, b"\x03"), (2, b"\x00\x03"),
                                               (4, b"\x00\x00\x00\x03"),
                                               (8, b"\x00" * 7 + b"\x03")])  # fmt: skip
def test_length_prefix_is_big_endian(width: int, prefix: bytes) -> None:
    assert LengthPrefixFramer(width).encode(b"abc") == prefix + b"abc"


def test_length_prefix_limits() -> None:
    assert LengthPrefixFramer(1).max_size == 255
    assert LengthPrefixFramer(2, max_size=10**9).max_size == 65535
    assert LengthPrefixFramer(8).max_size == DEFAULT_MAX_MESSAGE
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        LengthPrefixFramer(3)
    with pytest.raises(LocalProtocolError):
        LengthPrefixFramer(4, max_size=10).encode(b"x" * 11)
    with pytest.raises(LocalProtocolError):
        LengthPrefixFramer(1).encode(b"x" * 256)


def test_length_prefix_oversize_is_refused_before_the_payload() -> None:
    framer = LengthPrefixFramer(4, max_size=1000)
    framer.feed(b"\x00\x00\x03\xe9")  # 1001 announced
    with pytest.raises(RemoteProtocolError, match="1001"):
        framer.next_message()
    framer = LengthPrefixFramer(8, max_size=1000)
    framer.feed(b"\xff" * 8)  # 2**64 - 1 announced: nothing is allocated for it
    with pytest.raises(RemoteProtocolError):
        framer.next_message()
    assert framer.buffer.capacity < 1000


def test_length_prefix_eof() -> None:
    framer = LengthPrefixFramer(2)
    assert framer.check_eof() is None
    framer.feed(b"\x00\x05ab")
    assert framer.next_message() is None
    with pytest.raises(RemoteProtocolError) as info:
        framer.check_eof()
    assert info.value.partial == b"ab"
    framer = LengthPrefixFramer(2)
    framer.feed(b"\x00")  # half a prefix
    assert framer.next_message() is None
    with pytest.raises(RemoteProtocolError):
        framer.check_eof()
    framer = LengthPrefixFramer(2)
    framer.feed(b"\x00\x00")
    assert framer.next_message() == b""
    assert framer.check_eof() is None


def test_line_max_size_boundaries() -> None:
    framer = LineFramer(max_size=5)
    framer.feed(b"12345\n123456\n")
    assert framer.next_message() == b"12345"
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_message()
    assert info.value.partial == b"123456\n"
    # Exactly max_size, with a two-byte delimiter split across feeds: accepted.
    framer = LineFramer(b"\r\n", max_size=5)
    framer.feed(b"abcde\r")
    assert framer.next_message() is None
    framer.feed(b"\n")
    assert framer.next_message() == b"abcde"
    # One byte more and no delimiter can fit: refused without waiting.
    framer.feed(b"abcdef\r")
    with pytest.raises(RemoteProtocolError):
        framer.next_message()


def test_line_options() -> None:
    framer = LineFramer(strip_cr=True)
    framer.feed(b"a\r\nb\n\r\nc\r")
    assert drain(framer) == [b"a", b"b", b""]
    assert framer.check_eof() == b"c"
    strict = LineFramer(allow_partial_last=False)
    strict.feed(b"tail")
    assert strict.next_message() is None
    with pytest.raises(RemoteProtocolError) as info:
        strict.check_eof()
    assert info.value.partial == b"tail"
    with pytest.raises(ValueError, match="empty"):
        LineFramer(b"")
    with pytest.raises(LocalProtocolError):
        LineFramer().encode(b"two\nlines")
    with pytest.raises(LocalProtocolError):
        LineFramer(max_size=3).encode(b"four")
    with pytest.raises(LocalProtocolError):  # would be read back as b"x"
        LineFramer(b"--").encode(b"x-")
    with pytest.raises(LocalProtocolError):
        LineFramer(b"--boundary--").encode(b"--boundary")
    assert LineFramer(b"\r\n").encode(b"x\r") == b"x\r\r\n"  # unambiguous: allowed
    assert LineFramer(b"\x00").encode(bytearray(b"z")) == b"z\x00"


@given(
    max_size=st.sampled_from([1, 100, 4096, 65536]),
    chunk=st.sampled_from([1, 7, 1000, 65536]),
    delimiter=st.sampled_from(DELIMITERS),
)
def test_line_flood_is_bounded(max_size: int, chunk: int, delimiter: bytes) -> None:
    """A peer that never sends the delimiter: a protocol error once max_size is passed, and
    the buffer never holds more than max_size + one chunk (+ the delimiter's length)."""
    framer = LineFramer(delimiter, max_size=max_size)
    fill = bytes([delimiter[0] ^ 0xFF]) * chunk
    with pytest.raises(RemoteProtocolError):
        for _ in range((max_size + len(delimiter)) // chunk + 3):
            framer.feed(fill)
            held = len(framer.buffer)
            assert held <= max_size + chunk + len(delimiter)
            assert framer.buffer.capacity <= 2 * (max_size + chunk + len(delimiter)) + 64
            framer.next_message()


@settings(deadline=None)
@given(
    max_size=st.sampled_from([10, 1000, 5000]),
    chunk=st.sampled_from([3, 100, 65536]),
    width=st.sampled_from([1, 2, 4, 8]),
)
def test_length_prefix_memory_is_bounded(max_size: int, chunk: int, width: int) -> None:
    """Maximal frames fed in any chunk size: what is held stays within max_size + a chunk."""
    framer = LengthPrefixFramer(width, max_size=max_size)
    max_size = framer.max_size  # a 1-byte prefix caps it at 255
    wire = framer.encode(b"m" * max_size) * 3
    got = []
    for i in range(0, len(wire), chunk):
        framer.feed(wire[i : i + chunk])
        got += drain(framer)
        assert len(framer.buffer) <= max_size + chunk + width
    assert got == [b"m" * max_size] * 3
