"""ByteBuffer (sans-I/O): a model-checked byte queue with a writable tail and resumable
delimiter search."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from socketkit import ByteBuffer


def test_basics() -> None:
    buf = ByteBuffer()
    assert len(buf) == 0 and buf.peek() == b"" and buf.take(5) == b""
    buf.append(b"hello ")
    buf.append(memoryview(b"world"))
    buf.append(bytearray(b"!"))
    buf.append(b"")
    assert len(buf) == 12
    assert buf.peek() == b"hello world!"
    assert buf.take(6) == b"hello "
    assert buf.find(b"!") == 5
    assert buf.find(b"x") == -1
    target = bytearray(3)
    assert buf.take_into(memoryview(target)) == 3 and target == b"wor"
    assert buf.take_all() == b"ld!"
    assert len(buf) == 0


def test_writable_commit() -> None:
    buf = ByteBuffer()
    view = buf.writable(10)
    assert len(view) >= 10
    view[:4] = b"abcd"
    buf.commit(4)
    assert buf.peek() == b"abcd"
    view = buf.writable(1)
    view[:2] = b"ef"
    buf.commit(2)
    assert buf.take_all() == b"abcdef"


def test_a_view_handed_out_never_blocks_growth() -> None:
    """The asyncio protocol lends the tail to the loop; growing must not raise BufferError."""
    buf = ByteBuffer()
    lent = buf.writable(16)
    buf.append(b"x" * 100_000)  # forces a new bytearray while ``lent`` is alive
    buf.take(50_000)
    buf.writable(200_000)
    assert len(buf) == 50_000
    lent.release()


def test_find_across_appends_resumes() -> None:
    buf = ByteBuffer()
    buf.append(b"abc\r")
    assert buf.find(b"\r\n") == -1
    buf.append(b"\nrest")
    assert buf.find(b"\r\n") == 3
    assert buf.take(5) == b"abc\r\n"
    assert buf.find(b"\r\n") == -1
    buf.append(b"\r\n")
    assert buf.find(b"\r\n") == 4


def test_release_frees_only_when_empty() -> None:
    buf = ByteBuffer()
    buf.append(b"x" * 500_000)
    buf.release(keep=1024)
    assert buf.capacity >= 500_000  # not empty: kept
    buf.take_all()
    buf.release(keep=1024)
    assert buf.capacity == 0
    buf.append(b"again")
    assert buf.take_all() == b"again"


@given(
    chunks=st.lists(st.binary(max_size=300), max_size=30),
    delimiter=st.sampled_from([b"\n", b"\r\n", b"\x00\xff", b"END"]),
)
def test_find_equals_bytes_find_for_any_chunking(chunks: list[bytes], delimiter: bytes) -> None:
    buf = ByteBuffer()
    model = b""
    for chunk in chunks:
        buf.append(chunk)
        model += chunk
        assert buf.find(delimiter) == model.find(delimiter)


class BufferModel(RuleBasedStateMachine):
    """Random appends, writes through the tail, takes, finds: always equal to a bytes model."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = ByteBuffer()
        self.model = bytearray()

    @rule(data=st.binary(max_size=5000))
    def append(self, data: bytes) -> None:
        self.buf.append(data)
        self.model += data

    @rule(data=st.binary(min_size=1, max_size=5000), extra=st.integers(0, 70_000))
    def write_tail(self, data: bytes, extra: int) -> None:
        view = self.buf.writable(len(data) + extra)
        assert len(view) >= len(data) + extra
        view[: len(data)] = data
        view.release()
        self.buf.commit(len(data))
        self.model += data

    @rule(count=st.integers(0, 8000))
    def take(self, count: int) -> None:
        assert self.buf.take(count) == bytes(self.model[:count])
        del self.model[:count]

    @rule(size=st.integers(0, 8000))
    def take_into(self, size: int) -> None:
        target = bytearray(size)
        n = self.buf.take_into(memoryview(target))
        assert n == min(size, len(self.model))
        assert target[:n] == self.model[:n]
        del self.model[:n]

    @rule(delimiter=st.sampled_from([b"\n", b"ab", b"\x00\x00\x00"]))
    def find(self, delimiter: bytes) -> None:
        assert self.buf.find(delimiter) == bytes(self.model).find(delimiter)

    @precondition(lambda self: len(self.model) == 0)
    @rule()
    def release(self) -> None:
        self.buf.release(keep=0)

    @invariant()
    def same_bytes(self) -> None:
        assert len(self.buf) == len(self.model)
        assert self.buf.peek() == bytes(self.model)


TestBufferModel = BufferModel.TestCase
TestBufferModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("chunk", [1, 1000, 65536])
def test_capacity_stays_near_what_is_held(chunk: int) -> None:
    """Appending and taking at the same rate does not grow the storage."""
    buf = ByteBuffer()
    for _ in range(2000):
        buf.append(b"x" * chunk)
        buf.take(chunk)
    assert buf.capacity <= 2 * chunk + 65536
