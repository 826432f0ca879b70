"""``socketkit.aio.serve``: an asyncio stream server, each client in its own task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType

from .._addr import Address, AddressLike, parse_address
from .._errors import (
    BrokenStreamError,
    ClosedResourceError,
    IncompleteReadError,
    SocketkitError,
    SocketkitTimeout,
    TLSError,
    translate_os_error,
)
from .._server_common import (
    DEFAULT_GRACE,
    TLS_HANDSHAKE_TIMEOUT,
    bound_address,
    server_tls_context,
)
from .._sockets import DEFAULT_BACKLOG, cleanup_unix_path, open_listeners, set_stream_options
from .connect import tls_handshake
from .protocol import StreamProtocol
from .stream import Stream

__all__ = ["AsyncHandler", "Server", "serve"]

log = logging.getLogger("socketkit.server")

#: ``async def handler(stream)``; the server closes the stream when it returns.
AsyncHandler = Callable[[Stream], Awaitable[object]]
_PEER_ERRORS = (BrokenStreamError, IncompleteReadError, SocketkitTimeout, TLSError)


class Server:
    """A running asyncio server (from :func:`serve`); ``async with`` closes it."""

    def __init__(
        self,
        handler: AsyncHandler,
        listeners: list[socket.socket],
        *,
        max_connections: int | None,
        idle_timeout: float | None,
        tls: ssl.SSLContext | None,
        grace: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._listeners = listeners
        self._idle_timeout = idle_timeout
        self._tls = tls
        self._grace = grace
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: set[Stream] = set()
        self._closing = False
        self._closed = asyncio.Event()
        self.connections_accepted = 0
        for sock in listeners:
            sock.setblocking(False)
        self._acceptors = [self._loop.create_task(self._accept_loop(sock)) for sock in listeners]

    @property
    def address(self) -> Address:
        return bound_address(self._listeners[0])

    @property
    def addresses(self) -> list[Address]:
        return [bound_address(s) for s in self._listeners]

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    async def serve_forever(self) -> None:
        """Wait until the server is closed (cancelling this closes it)."""
        try:
            await self._closed.wait()
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def aclose(self, grace: float | None = None) -> None:
        """Stop accepting; give handlers ``grace`` seconds, then abort their connections and
        cancel them. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        for task in self._acceptors:
            task.cancel()
        for task in self._acceptors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in self._listeners:
            cleanup_unix_path(sock)
            sock.close()
        grace = self._grace if grace is None else grace
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for stream in list(self._streams):
            stream.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        self._closed.set()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = self._loop
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                conn, _peer = await loop.sock_accept(listener)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                if self._slots is not None:
                    self._slots.release()
                log.warning("accept failed: %s", translate_os_error(exc, "accept"))
                await asyncio.sleep(0.1)
                continue
            self.connections_accepted += 1
            task = loop.create_task(self._run(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: socket.socket) -> None:
        loop = self._loop
        stream: Stream | None = None
        try:
            set_stream_options(conn)
            transport, protocol = await loop.connect_accepted_socket(
                lambda: StreamProtocol(loop), conn
            )
            stream = Stream(transport, protocol, default_timeout=self._idle_timeout)
            self._streams.add(stream)
            if self._tls is not None:
                async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
                    await tls_handshake(protocol, self._tls, server_side=True)
            await self._handler(stream)
        except _PEER_ERRORS as exc:
            log.info("connection %s ended: %s", _peer(stream), exc)
        except TimeoutError:
            log.info("connection %s: TLS handshake timed out", _peer(stream))
        except ClosedResourceError:
            pass
        except SocketkitError as exc:
            log.warning("connection %s failed: %s", _peer(stream), exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler for %s raised", _peer(stream))
        finally:
            if stream is not None:
                self._streams.discard(stream)
                stream.close()
            else:
                conn.close()
            if self._slots is not None:
                self._slots.release()


def _peer(stream: Stream | None) -> str:
    return stream.peer_address if stream is not None else "(unknown)"


async def serve(
    handler: AsyncHandler,
    address: AddressLike,
    *,
    max_connections: int | None = None,
    idle_timeout: float | None = None,
    tls: bool | ssl.SSLContext = False,
    backlog: int = DEFAULT_BACKLOG,
    grace: float = DEFAULT_GRACE,
) -> Server:
    """Listen on ``address`` and run ``await handler(stream)`` in a task per client; returns
    as soon as it is listening. Parameters as the sync :func:`socketkit.serve`."""
    ctx = server_tls_context(tls)
    listeners = open_listeners(parse_address(address), backlog=backlog)
    return Server(
        handler,
        listeners,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        tls=ctx,
        grace=grace,
    )
