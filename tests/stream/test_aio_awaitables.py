"""What the asyncio stream's methods return is a coroutine: anything an asyncio user does with
a coroutine works with it (issue: ``asyncio.create_task(stream.send_all(b"x"))`` raised
``TypeError``).

Every public method that is awaited (the fast paths included: ``send_all``'s completed
send, ``receive_some``'s read future, ``receive_into``'s direct read, a handler's driven
``receive_some``), through ``create_task``, ``ensure_future``, ``gather``, ``wait_for``,
``asyncio.timeout``, ``TaskGroup.create_task`` and ``run_coroutine_threadsafe``; the
coroutine checks (``asyncio.iscoroutine``, ``inspect.iscoroutine``, ``inspect.isawaitable``,
``collections.abc.Coroutine``); and awaiting one twice raises ``RuntimeError`` as a coroutine
does. On asyncio and uvloop, with the C fast paths and with their pure-Python twins.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

import socketkit.aio as skio
from socketkit.proto.framing import LengthPrefixFramer

from .aio_helpers import LOOPS, accel, raw_peer_pair, run

__all__ = ["accel"]  # the fixture, used by name

DATA = b"abc\n"


@dataclass(frozen=True)
class Op:
    """One awaited stream method: what the peer sends first, what the call returns (as
    bytes), what the peer then receives."""

    name: str
    make: Callable[[Any], Coroutine[Any, Any, Any]]
    #: The call's result, as bytes (None for a send).
    result: Callable[[Any], bytes | None]
    sends: bytes = b""  # the peer receives these
    receives: bool = False  # the peer sends DATA for it
    sent_when_called: bool = False  # send_all hands its data to the transport at once

    def run_result(self, value: Any) -> bytes | None:
        return self.result(value)


_INTO = bytearray(64)


def _into_result(n: Any) -> bytes:
    return bytes(_INTO[:n])


OPS = [
    Op("send_all", lambda s: s.send_all(b"xyz"), lambda v: v, sends=b"xyz", sent_when_called=True),
    Op(
        "send_message",
        lambda s: s.send_message(b"xyz", LengthPrefixFramer(2)),
        lambda v: v,
        sends=b"\x00\x03xyz",
    ),
    Op("receive_some", lambda s: s.receive_some(), lambda v: v, receives=True),
    Op("receive_into", lambda s: s.receive_into(_INTO), _into_result, receives=True),
    Op("receive_exactly", lambda s: s.receive_exactly(4), lambda v: v, receives=True),
    Op("receive_until", lambda s: s.receive_until(b"\n"), lambda v: v + b"\n", receives=True),
    Op("receive_line", lambda s: s.receive_line(), lambda v: v + b"\n", receives=True),
]


async def _in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = asyncio.get_running_loop()
    out: list[Any] = []

    def call() -> None:
        out.append(asyncio.run_coroutine_threadsafe(coro, loop).result(10))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    return out[0]


async def _group(coro: Coroutine[Any, Any, Any]) -> Any:
    async with asyncio.TaskGroup() as group:
        task = group.create_task(coro)
    return task.result()


async def _timeout(coro: Coroutine[Any, Any, Any]) -> Any:
    async with asyncio.timeout(10):
        return await coro


async def _gather(coro: Coroutine[Any, Any, Any]) -> Any:
    (value,) = await asyncio.gather(coro)
    return value


WAYS: dict[str, Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]] = {
    "await": lambda c: c,
    "create_task": asyncio.create_task,
    "ensure_future": asyncio.ensure_future,
    "gather": _gather,
    "wait_for": lambda c: asyncio.wait_for(c, 10),
    "asyncio.timeout": _timeout,
    "TaskGroup.create_task": _group,
    "run_coroutine_threadsafe": _in_thread,
}


async def _exercise(stream: skio.Stream, peer: socket.socket, where: str) -> None:
    loop = asyncio.get_running_loop()
    for op in OPS:
        for way_name, way in WAYS.items():
            label = f"{where}: {way_name}({op.name}(...))"
            coro = op.make(stream)
            assert asyncio.iscoroutine(coro), label
            if op.receives:
                # Sent once the read waits (its hot path: nothing buffered yet).
                loop.call_later(0.01, peer.sendall, DATA)
            value = await way(coro)
            if op.receives:
                assert op.run_result(value) == DATA, label
            else:
                assert value is None, label
                got = await asyncio.to_thread(peer.recv, 100)
                assert got == op.sends, label

        # The coroutine checks, and a coroutine closed unawaited: nothing happens (but
        # send_all has handed its bytes to the transport when called, as documented).
        coro = op.make(stream)
        assert asyncio.iscoroutine(coro), op.name
        assert inspect.iscoroutine(coro), op.name
        assert inspect.isawaitable(coro), op.name
        assert isinstance(coro, collections.abc.Coroutine), op.name
        coro.close()
        if op.sent_when_called:
            assert await asyncio.to_thread(peer.recv, 100) == op.sends

        # Awaited twice: the second await raises, as a coroutine's does.
        coro = op.make(stream)
        if op.receives:
            loop.call_later(0.01, peer.sendall, DATA)
        value = await coro
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await coro
        if op.receives:
            assert op.run_result(value) == DATA, op.name
        else:
            assert await asyncio.to_thread(peer.recv, 100) == op.sends

    # receive_into's direct read (the bytes are already in the kernel when it is awaited).
    peer.sendall(DATA)
    await asyncio.sleep(0.05)
    coro = stream.receive_into(_INTO)
    assert inspect.iscoroutine(coro)
    assert _into_result(await asyncio.create_task(coro)) == DATA
    with pytest.raises(RuntimeError, match="cannot reuse"):
        await coro


@pytest.mark.parametrize("loop", LOOPS)
def test_client_stream_methods_return_coroutines(loop: str, accel: str) -> None:
    async def main() -> None:
        async with raw_peer_pair() as (stream, peer):
            await _exercise(stream, peer, "client")

    run(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_handler_stream_methods_return_coroutines(loop: str, accel: str) -> None:
    """A server handler's stream (its receive_some is the driven one)."""

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        peer_ready = asyncio.Event()
        peers: list[socket.socket] = []

        async def handler(stream: skio.Stream) -> None:
            try:
                await peer_ready.wait()
                await _exercise(stream, peers[0], "handler")
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)
                raise

        server = await skio.serve(handler, "127.0.0.1:0")
        try:
            with socket.create_connection(("127.0.0.1", server.address.port), 10) as peer:
                peer.settimeout(10)
                peers.append(peer)
                peer_ready.set()
                await done
        finally:
            await server.aclose(grace=2)

    run(loop, main())
