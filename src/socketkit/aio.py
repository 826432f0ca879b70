"""socketkit on asyncio: the same names and parameters as the sync API, awaited.

    import socketkit.aio as skio

    async def echo(stream):
        async for line in stream:
            await stream.send_all(line + b"\\n")

    async def main():
        async with await skio.serve(echo, "127.0.0.1:7000") as server:
            await server.serve_forever()

    skio.run(main())

``run`` uses uvloop when it is installed (a loop factory, not a global policy change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._async.connect import connect, tls_handshake
from ._async.server import AsyncHandler, Server, serve
from ._async.stream import Stream
from ._async.udp import DatagramSocket, udp
from ._async.udp_server import Conversation, UDPServer, serve_udp

__all__ = [
    "AsyncHandler",
    "Conversation",
    "DatagramSocket",
    "Server",
    "Stream",
    "UDPServer",
    "connect",
    "loop_factory",
    "run",
    "serve",
    "serve_udp",
    "tls_handshake",
    "udp",
]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's ``new_event_loop`` when uvloop is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run`` on the fastest loop available (uvloop on Linux/macOS if installed)."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory()) as runner:
        return runner.run(main)
