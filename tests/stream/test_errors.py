"""Errors against a bare-socket peer (sync, asyncio, uvloop): what a reset or an early close
in the middle of a read turns into, and that every error is a ``SocketkitError``."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import socketkit
import socketkit.aio as skio
from socketkit import BrokenStreamError, ClosedResourceError, IncompleteReadError

from .peers import APIS, run_async

pytestmark = pytest.mark.parametrize("api", APIS)

RESET = struct.pack("ii", 1, 0)


@pytest.fixture
def raw_peer() -> Iterator[tuple[str, Callable[[Callable[[socket.socket], None]], None]]]:
    """A listener; ``start(script)`` runs ``script(conn)`` on the next accepted socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)  # a script whose client never came ends, not hangs
    threads: list[threading.Thread] = []

    def start(script: Callable[[socket.socket], None]) -> None:
        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                script(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", start
    finally:
        for thread in threads:
            thread.join(15)
        listener.close()


def send_then(action: str, data: bytes) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        time.sleep(0.2)  # the client is already waiting in its read
        conn.sendall(data)
        time.sleep(0.2)
        if action == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)

    return script


def read_exactly(api: str, target: str, count: int) -> bytes:
    if api == "sync":
        with socketkit.connect(target) as stream:
            return stream.receive_exactly(count, timeout=10)

    async def go() -> bytes:
        stream = await skio.connect(target)
        try:
            return await stream.receive_exactly(count, timeout=10)
        finally:
            stream.abort()

    data: bytes = run_async(api, go())
    return data


def test_reset_during_receive_exactly(api: str, raw_peer: tuple[str, Callable]) -> None:  # type: ignore[type-arg]
    target, start = raw_peer
    start(send_then("reset", b"abc"))
    with pytest.raises(BrokenStreamError) as info:
        read_exactly(api, target, 10)
    assert isinstance(info.value.__cause__, OSError)


def test_close_during_receive_exactly(api: str, raw_peer: tuple[str, Callable]) -> None:  # type: ignore[type-arg]
    target, start = raw_peer
    start(send_then("close", b"abc"))
    with pytest.raises(IncompleteReadError) as info:
        read_exactly(api, target, 10)
    assert info.value.partial == b"abc"


def test_use_after_close(api: str, raw_peer: tuple[str, Callable]) -> None:  # type: ignore[type-arg]
    target, start = raw_peer
    start(lambda conn: conn.recv(10))
    if api == "sync":
        stream = socketkit.connect(target)
        stream.close()
        stream.close()  # idempotent
        with pytest.raises(ClosedResourceError):
            stream.receive_some()
        with pytest.raises(ClosedResourceError):
            stream.send_all(b"x")
        return

    async def go() -> None:
        stream = await skio.connect(target)
        await stream.aclose()
        await stream.aclose()
        with pytest.raises(ClosedResourceError):
            await stream.receive_some()
        with pytest.raises(ClosedResourceError):
            await stream.send_all(b"x")
        await asyncio.sleep(0)

    run_async(api, go())
