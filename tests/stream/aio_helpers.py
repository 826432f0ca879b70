"""Helpers of the asyncio cancellation and awaitable tests: a client stream with a raw socket
as its peer, the C fast paths switched on or off in-process, and input fed to a protocol the
way its transport feeds it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvloop

import socketkit
import socketkit.aio as skio
from socketkit import _accel
from socketkit._async.driver import HandlerDriver
from socketkit._async.protocol import BufferedStreamProtocol, StreamProtocol
from socketkit._async.stream import DrivenStream
from socketkit._async.stream import Stream as AioStream

#: The methods the C extension takes over (tests/stream/test_speedups.py lists the same).
ACCELERATED = [
    (socketkit.Stream, "receive_some"),
    (socketkit.Stream, "send_all"),
    (AioStream, "send_all"),
    (AioStream, "receive_into"),
    (DrivenStream, "receive_some"),
    (StreamProtocol, "data_received"),
    (HandlerDriver, "_step"),
]
#: "c" where the extension is in use (always outside a SOCKETKIT_PURE=1 run: the speedups
#: tests fail if it did not build), and "pure" always.
ACCEL_MODES = ["c", "pure"] if _accel.ENABLED else ["pure"]
LOOPS = ["asyncio", "uvloop"]


@contextlib.contextmanager
def accel_mode(mode: str) -> Iterator[None]:
    """Run the block with the C fast paths ("c") or their Python twins ("pure")."""
    if mode == "c":
        assert _accel.ENABLED
        yield
        return
    saved = [(cls, name, vars(cls)[name]) for cls, name in ACCELERATED]
    try:
        for cls, name, method in saved:
            setattr(cls, name, getattr(method, "__wrapped__", method))
        yield
    finally:
        for cls, name, method in saved:
            setattr(cls, name, method)


@pytest.fixture(params=ACCEL_MODES)
def accel(request: pytest.FixtureRequest) -> Iterator[str]:
    with accel_mode(request.param):
        yield request.param


def run(loop: str, coro: Any, timeout: float = 60.0) -> Any:
    """Run ``coro`` on a new ``loop`` ("asyncio" or "uvloop"); a hang is a failure."""
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def raw_peer_pair(**kw: Any) -> AsyncIterator[tuple[AioStream, socket.socket]]:
    """An aio client stream whose peer is a plain blocking socket of the test's own."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = await skio.connect(f"127.0.0.1:{listener.getsockname()[1]}", **kw)
        try:
            peer, _ = listener.accept()  # already queued: connect returned
            with peer:
                peer.settimeout(30)
                yield stream, peer
        finally:
            stream.abort()


def feed(protocol: StreamProtocol, data: bytes) -> None:
    """Deliver ``data`` to ``protocol`` as its transport does after a read (``get_buffer``
    and ``buffer_updated``, or ``data_received``): bytes that arrived in this loop iteration."""
    if isinstance(protocol, BufferedStreamProtocol):
        while data:
            view = protocol.get_buffer(len(data))
            n = min(len(view), len(data))
            view[:n] = data[:n]
            protocol.buffer_updated(n)
            data = data[n:]
    else:
        protocol.data_received(data)


def waiting(protocol: StreamProtocol) -> bool:
    """A reader waits on the protocol's read future."""
    waiter = protocol._read_waiter
    return isinstance(waiter, asyncio.Future) and not waiter.done()


async def until(condition: Any, what: str, limit: int = 1000) -> None:
    """Let the loop run (one iteration at a time, at most ``limit``) until ``condition()``."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached: {what}")
