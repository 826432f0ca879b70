"""Helpers of the connect/server tests: run one client exchange through any API, listeners
that refuse or never answer, and a resolver stand-in with chosen addresses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvloop

import socketkit
import socketkit._sync.connect  # imported before fake_resolve patches what it imports
import socketkit.aio as skio

APIS = ["sync", "asyncio", "uvloop"]


def run_async(api: str, coro: Any) -> Any:
    factory = uvloop.new_event_loop if api == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def exchange(api: str, target: object, **kw: Any) -> dict[str, Any] | None:
    """Connect with ``api``, check one echoed line, close; return the TLS info (or None)."""
    if api == "sync":
        with socketkit.connect(target, **kw) as stream:  # type: ignore[arg-type]
            stream.send_all(b"ping\n")
            assert stream.receive_line(timeout=5) == b"ping"
            return stream.tls.info if stream.tls else None

    async def go() -> dict[str, Any] | None:
        stream = await skio.connect(target, **kw)  # type: ignore[arg-type]
        try:
            await stream.send_all(b"ping\n")
            assert await stream.receive_line(timeout=5) == b"ping"
            return stream.tls.info if stream.tls else None
        finally:
            await stream.aclose()

    result: dict[str, Any] | None = run_async(api, go())
    return result


def echo_lines(stream: socketkit.Stream) -> None:
    for line in stream:
        stream.send_all(line + b"\n")


@contextlib.contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on ``host`` that refuses connections (bound, not listening: no one else gets
    it while the test runs)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield sock.getsockname()[1]


@contextlib.contextmanager
def unresponsive_port() -> Iterator[int]:
    """A 127.0.0.1 port whose accept queue is full: new SYNs are dropped, so a connect
    neither succeeds nor fails until its timeout (no traffic leaves loopback)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(3):  # a backlog of 0 still admits one; fill it with margin
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        yield address[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def fake_resolve(monkeypatch: Any, infos: list[tuple[int, tuple[object, ...]]]) -> None:
    """Make both connect paths resolve any name to ``infos`` (in that order)."""

    def resolve(*_args: object, **_kw: object) -> list[tuple[int, tuple[object, ...]]]:
        return list(infos)

    monkeypatch.setattr("socketkit._addr.resolve", resolve)
    monkeypatch.setattr("socketkit._sync.connect.resolve", resolve)


@contextlib.contextmanager
def aio_server_thread(handler: Any, address: str = "127.0.0.1:0", **kw: Any) -> Iterator[str]:
    """An asyncio ``serve`` running on uvloop in a thread of its own; yields its address.
    Lets a sync client (or a client on another loop) talk to the asyncio server."""
    import threading

    ready: list[Any] = []
    started = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        try:
            server = await skio.serve(handler, address, **kw)
        except BaseException as exc:
            ready.append(exc)
            started.set()
            raise
        ready.append(server)
        started.set()
        async with server:
            await stop[0].wait()

    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        started.wait(10)
        if isinstance(ready[0], BaseException):
            raise ready[0]
        yield str(ready[0].address)
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(15)
        loop.close()
