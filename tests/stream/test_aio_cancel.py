"""A cancelled or timed-out asyncio receive consumes nothing (README: "reads that never lose
data"; socketkit/_async/stream.py's module docstring; docs/design.md, "Cancellation").

Every receive method, at each of its await points, on asyncio and uvloop, with the C fast
paths and with their pure-Python twins: bytes that arrive in the same loop iteration as the
cancellation (or the timeout) are not lost, duplicated or reordered; the reads that follow
yield every byte sent, in order, exactly once.

The deterministic tests make the race happen every time: the bytes are handed to the
protocol exactly as its transport hands them over after a read, and the reader is cancelled
in the same callback, before its task can resume. The stress test does the same over the wire
with random timing.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import socketkit.aio as skio
from socketkit import IncompleteReadError, ReadTimeout
from socketkit._async.stream import SPIN_MIN_BUFFER
from socketkit._async.stream import Stream as AioStream
from socketkit.proto.framing import LineFramer

from .aio_helpers import LOOPS, accel, feed, raw_peer_pair, run, until, waiting

__all__ = ["accel"]  # the fixture, used by name

#: The per-call timeout of the "timeout" races (seconds).
T = 0.05


@dataclass(frozen=True)
class Reader:
    """One receive method at one await point."""

    name: str
    #: Start the read (``timeout`` None: the stream's default, no timeout).
    call: Callable[[AioStream, float | None], Awaitable[bytes]]
    #: The loop has parked the reader at the await point under test.
    parked: Callable[[AioStream], bool]


def _kw(timeout: float | None) -> dict[str, Any]:
    return {} if timeout is None else {"timeout": timeout}


async def _some(s: AioStream, timeout: float | None) -> bytes:
    return await s.receive_some(**_kw(timeout))


async def _some_slow(s: AioStream, timeout: float | None) -> bytes:
    # A timeout (even a long one) takes receive_some's waiting path, not the hot future.
    return await s.receive_some(timeout=60 if timeout is None else timeout)


async def _into(s: AioStream, timeout: float | None) -> bytes:
    buf = bytearray(4096)
    n = await s.receive_into(buf, **_kw(timeout))
    return bytes(buf[:n])


async def _into_bulk(s: AioStream, timeout: float | None) -> bytes:
    buf = bytearray(4 * SPIN_MIN_BUFFER)
    n = await s.receive_into(buf, **_kw(timeout))
    return bytes(buf[:n])


async def _exactly(s: AioStream, timeout: float | None) -> bytes:
    return await s.receive_exactly(1 << 20, **_kw(timeout))


async def _until(s: AioStream, timeout: float | None) -> bytes:
    return await s.receive_until(b"\n", include_delimiter=True, **_kw(timeout))


async def _line(s: AioStream, timeout: float | None) -> bytes:
    return await s.receive_line(**_kw(timeout)) + b"\n"


async def _messages(s: AioStream, timeout: float | None) -> bytes:
    async for message in s.iter_messages(LineFramer(), **_kw(timeout)):
        return message + b"\n"
    return b""


def _waits(s: AioStream) -> bool:
    return waiting(s._p)


def _spins(s: AioStream) -> bool:
    """receive_into's bulk tries: the buffer is lent, no read future yet."""
    p = s._p
    return p._user_view is not None and not waiting(p)


READERS = [
    Reader("receive_some", _some, _waits),
    Reader("receive_some-waiting", _some_slow, _waits),
    Reader("receive_into", _into, _waits),
    Reader("receive_into-bulk-tries", _into_bulk, _spins),
    Reader("receive_into-bulk-wait", _into_bulk, _waits),
    Reader("receive_exactly", _exactly, _waits),
    Reader("receive_until", _until, _waits),
    Reader("receive_line", _line, _waits),
    Reader("iter_messages", _messages, _waits),
]
#: cancel: bytes arrive, then the reader is cancelled (same callback); cancel-first: the
#: other way round; timeout: the call's own timer fires, then bytes arrive, before the reader
#: resumes; wait_for: asyncio.wait_for's timer instead of the call's own.
RACES = ["cancel", "cancel-first", "timeout", "wait_for"]


async def _drain(s: AioStream) -> bytes:
    out = bytearray()
    while chunk := await s.receive_some(timeout=10):
        out += chunk
    return bytes(out)


async def _race(reader: Reader, race: str) -> None:
    head, landed, tail = b"head-", b"landed-in-the-race-", b"tail\n"
    async with raw_peer_pair() as (stream, peer):
        loop = asyncio.get_running_loop()
        p = stream._p
        peer.sendall(head)
        # Bytes already buffered before the read starts (they must come first afterwards).
        await until(lambda: len(p.buffer) == len(head), "head buffered")
        timeout = T if race == "timeout" else None
        read = reader.call(stream, timeout)
        if race == "wait_for":
            read = asyncio.wait_for(read, T)
        task = asyncio.ensure_future(read)
        first = b""
        if reader.name.startswith("receive_some") or reader.name.startswith("receive_into"):
            # These return at once what is buffered: take the head, then park.
            first = await task
            assert first == head
            read = reader.call(stream, timeout)
            task = asyncio.ensure_future(asyncio.wait_for(read, T) if race == "wait_for" else read)
        await until(lambda: reader.parked(stream), f"{reader.name} parked")
        if race == "cancel":
            feed(p, landed)
            task.cancel()
        elif race == "cancel-first":
            task.cancel()
            feed(p, landed)
        else:
            # Both timers are due when the loop next looks (it is blocked meanwhile): the
            # read's own (or wait_for's) first, then the one that delivers the bytes.
            loop.call_later(T + 0.02, feed, p, landed)
            time.sleep(2 * T + 0.05)
        expected = {
            "cancel": asyncio.CancelledError,
            "cancel-first": asyncio.CancelledError,
            "timeout": ReadTimeout,
            "wait_for": TimeoutError,
        }[race]
        with pytest.raises(expected):
            await task
        peer.sendall(tail)
        peer.shutdown(socket.SHUT_WR)
        rest = await _drain(stream)
        assert first + rest == head + landed + tail, (first, rest)


@pytest.mark.parametrize("race", RACES)
@pytest.mark.parametrize("reader", READERS, ids=[r.name for r in READERS])
@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_that_land_as_the_reader_is_cancelled_are_kept(
    loop: str, reader: Reader, race: str, accel: str
) -> None:
    if reader.parked is _spins and race not in ("cancel", "cancel-first"):
        # The bulk tries have no timer of their own; a timer that fires meanwhile finds the
        # reader about to take the bytes (the waiting part's races are the -wait cases).
        reader = READERS[[r.name for r in READERS].index("receive_into-bulk-wait")]
    run(loop, _race(reader, race))


# -- the same over the wire, with random timing -------------------------------------------------

#: Each outcome (a read returned, was cancelled, timed out) happens at least this often in a
#: stress run: the peer sends until then. Bounds of one run (beyond them it fails).
STRESS_EACH = 50
STRESS_MAX_BYTES = 4_000_000
STRESS_SECONDS = 40.0
STRESS_READS = 500_000
ALPHABET = bytes(range(32, 127))


class _Peer:
    """Sends random lines in random pieces with random pauses until ``enough`` is set (or
    the byte bound is reached), then EOF; keeps what it sent."""

    def __init__(self, sock: socket.socket, seed: int) -> None:
        self.sock = sock
        self.rng = random.Random(seed)
        self.sent = bytearray()
        self.enough = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = self.rng
        pending = b""
        while not self.enough.is_set() and len(self.sent) < STRESS_MAX_BYTES:
            if not pending:
                length = rng.choice([0, 1, 7, 30, 100, 1000])
                pending = bytes(rng.choices(ALPHABET, k=length)) + b"\n"
            size = 20000 if rng.random() < 0.002 else rng.choice([1, 3, 10, 30, 60])
            if size > len(pending):  # whole lines, so that the stream ends with one
                pending += b"".join(
                    bytes(rng.choices(ALPHABET, k=rng.choice([0, 7, 100]))) + b"\n"
                    for _ in range(size // 50)
                )
            piece, pending = pending[:size], pending[size:]
            self.sock.sendall(piece)
            self.sent += piece
            if rng.random() < 0.8:
                time.sleep(rng.choice([0, 0.0001, 0.0003, 0.001]))
        self.sock.sendall(pending)
        self.sent += pending
        self.sock.shutdown(socket.SHUT_WR)


async def _read_randomly(
    stream: AioStream, seed: int, enough: threading.Event
) -> tuple[bytes, dict[str, int]]:
    """Read to EOF with random methods, each cancelled or timed out at random moments."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    readers = [r for r in READERS if r.parked is _waits] + [READERS[3]]
    got = bytearray()
    outcomes = {"read": 0, "cancelled": 0, "timed out": 0}
    deadline = time.monotonic() + STRESS_SECONDS
    for _ in range(STRESS_READS):
        assert time.monotonic() < deadline, f"{len(got)} bytes in {STRESS_SECONDS} s"
        reader = rng.choice(readers)
        how = rng.choice(["plain", "timeout", "wait_for", "cancel", "asyncio.timeout"])
        delay = rng.choice([0, 0.0001, 0.0003, 0.001])
        if reader.name == "receive_exactly":
            want = rng.choice([1, 10, 100, 1000])

            async def exactly(s: AioStream, t: float | None, want: int = want) -> bytes:
                return await s.receive_exactly(want, **_kw(t))

            call: Callable[[AioStream, float | None], Awaitable[bytes]] = exactly
        else:
            call = reader.call
        try:
            if how == "plain":
                data = await call(stream, None)
            elif how == "timeout":
                data = await call(stream, delay)
            elif how == "wait_for":
                data = await asyncio.wait_for(call(stream, None), delay)
            elif how == "asyncio.timeout":
                async with asyncio.timeout(delay):
                    data = await call(stream, None)
            else:
                task = asyncio.ensure_future(call(stream, None))
                loop.call_later(delay, task.cancel)
                data = await task
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
            if (current := asyncio.current_task()) is not None and current.cancelling():
                raise
        except (TimeoutError, ReadTimeout):
            outcomes["timed out"] += 1
        except IncompleteReadError as exc:  # EOF inside receive_exactly / receive_until
            got += exc.partial
            break
        else:
            outcomes["read"] += 1
            if not data:
                break
            got += data
        if min(outcomes.values()) >= STRESS_EACH:
            enough.set()  # the peer ends the stream now
    else:
        raise AssertionError(f"no EOF after {STRESS_READS} reads")
    return bytes(got), outcomes


@pytest.mark.parametrize("side", ["client", "handler"])
@pytest.mark.parametrize("loop", LOOPS)
def test_random_cancellations_lose_nothing(loop: str, side: str, accel: str) -> None:
    """Every receive method, cancelled or timed out at random moments while bytes arrive in
    random pieces: what the reads return is exactly what was sent. The handler side reads
    through the driven handler's own reads (driver.py)."""
    seed = random.randrange(1 << 30)
    peers: list[_Peer] = []

    async def client_side() -> tuple[bytes, dict[str, int]]:
        async with raw_peer_pair() as (stream, sock):
            peer = _Peer(sock, seed)
            peers.append(peer)
            peer.thread.start()
            try:
                return await _read_randomly(stream, seed, peer.enough)
            finally:
                peer.enough.set()
                await asyncio.to_thread(peer.thread.join, 30)

    async def handler_side() -> tuple[bytes, dict[str, int]]:
        result: asyncio.Future[tuple[bytes, dict[str, int]]] = (
            asyncio.get_running_loop().create_future()
        )

        async def handler(stream: skio.Stream) -> None:
            try:
                result.set_result(await _read_randomly(stream, seed, peers[0].enough))
            except BaseException as exc:
                result.set_exception(exc)
                raise

        server = await skio.serve(handler, "127.0.0.1:0")
        try:
            with socket.create_connection(("127.0.0.1", server.address.port), 10) as sock:
                sock.settimeout(30)
                peer = _Peer(sock, seed)
                peers.append(peer)
                peer.thread.start()
                try:
                    return await result
                finally:
                    peer.enough.set()
                    await asyncio.to_thread(peer.thread.join, 30)
        finally:
            await server.aclose(grace=2)

    got, outcomes = run(loop, client_side() if side == "client" else handler_side(), 90)
    (peer,) = peers
    assert not peer.thread.is_alive()
    data = bytes(peer.sent)
    assert got == data, f"seed {seed}: {outcomes}; {len(got)} of {len(data)} bytes"
    # Each outcome happened many times over (the peer sent until then, within its bounds).
    assert min(outcomes.values()) >= STRESS_EACH, outcomes
