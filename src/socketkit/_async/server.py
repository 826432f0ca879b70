"""``socketkit.aio.serve``: an asyncio stream server; each client's handler is resumed by its
connection's protocol (``driver.py``), not run in a Task."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from .._addr import Address, AddressLike, format_sockaddr, parse_address
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
    ACCEPT_BACKOFF,
    DEFAULT_GRACE,
    DEFAULT_MAX_CONNECTIONS_AIO,
    DEFAULT_MAX_PER_IP_AIO,
    TLS_HANDSHAKE_TIMEOUT,
    PerIPCounter,
    bound_address,
    check_limit,
    server_tls_context,
)
from .._sockets import DEFAULT_BACKLOG, cleanup_unix_path, open_listeners
from .connect import tls_handshake
from .driver import HandlerDriver
from .protocol import BufferedStreamProtocol, StreamProtocol, protocol_class
from .stream import DrivenStream, Stream

__all__ = ["AsyncHandler", "Server", "serve"]

log = logging.getLogger("socketkit.server")

#: ``async def handler(stream)``; the server closes the stream when it returns.
AsyncHandler = Callable[[Stream], Coroutine[Any, Any, object]]
_PEER_ERRORS = (BrokenStreamError, IncompleteReadError, SocketkitTimeout, TLSError)


def _in_handshake(protocol: StreamProtocol) -> bool:
    """True while a TLS connection has not finished its handshake."""
    return protocol.tls is not None and not protocol.tls.handshake_done


class _Ring:
    """Head of a doubly-linked ring of connections: O(1) add/remove, no per-entry object."""

    __slots__ = ("count", "next", "prev")

    def __init__(self) -> None:
        self.next: _ServerProtocol | _Ring = self
        self.prev: _ServerProtocol | _Ring = self
        self.count = 0

    def add(self, item: _ServerProtocol) -> None:
        item.prev, item.next = self.prev, self
        self.prev.next = item
        self.prev = item
        self.count += 1

    def remove(self, item: _ServerProtocol) -> None:
        if item.next is item:
            return  # not linked
        item.prev.next = item.next
        item.next.prev = item.prev
        item.next = item.prev = item
        self.count -= 1

    def items(self) -> list[_ServerProtocol]:
        out = []
        node = self.next
        while isinstance(node, _ServerProtocol):
            out.append(node)
            node = node.next
        return out


class _ServerProtocol(StreamProtocol):
    """A StreamProtocol that starts its handler as soon as the connection is made."""

    __slots__ = ("next", "prev", "server")

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        # Links in the server's ring of live connections (cheaper than a set entry).
        self.prev: _ServerProtocol | _Ring = self
        self.next: _ServerProtocol | _Ring = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._connection_made(self)

    def handler_done(self, driver: HandlerDriver) -> None:
        """Called by the driver once the handler has returned or raised."""
        self.server._handler_done(self, driver)


class _BufferedServerProtocol(_ServerProtocol, BufferedStreamProtocol):
    """The same, reading through ``get_buffer`` (see ``protocol.py``)."""

    __slots__ = ()


_ServerProtocol.buffered_class = _BufferedServerProtocol


class Server:
    """A running asyncio server (from :func:`serve`); ``async with`` closes it.

    With ``max_connections`` (the default) an accept loop stops accepting while the limit is
    reached, so extra clients wait in the kernel backlog rather than being refused. With
    ``max_connections=None`` the loop's own accept machinery is used (``create_server``: in C
    on uvloop). ``max_connections_per_ip`` is checked as each connection is made: one over it
    is aborted before its handler starts.
    """

    def __init__(
        self,
        handler: AsyncHandler,
        listeners: list[socket.socket],
        *,
        max_connections: int | None,
        idle_timeout: float | None,
        tls: ssl.SSLContext | None,
        grace: float,
        backlog: int = DEFAULT_BACKLOG,
        max_connections_per_ip: int | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._backlog = backlog
        self._handler = handler
        self._listeners = listeners
        # Read once: after aclose() the sockets are gone, the addresses stay answerable.
        self._addresses = [bound_address(sock) for sock in listeners]
        self._idle_timeout = idle_timeout
        self._tls = tls
        self._grace = grace
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._per_ip = PerIPCounter(max_connections_per_ip)
        #: Connections aborted at once because their source was over ``max_connections_per_ip``.
        self.connections_refused = 0
        self._connections = _Ring()
        self._servers: list[asyncio.AbstractServer] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = asyncio.Event()
        self._handler_exit: asyncio.Future[None] | None = None
        self._protocol_factory: type[_ServerProtocol] = _ServerProtocol
        self.connections_accepted = 0
        # The context handlers start from (each gets a copy of it, as a Task would).
        self._context = contextvars.copy_context()

    async def _start(self) -> None:
        loop = self._loop
        factory = self._protocol_factory = _server_protocol_class(loop)
        for sock in self._listeners:
            sock.setblocking(False)
            if self._slots is None:
                self._servers.append(
                    # backlog again: create_server re-listens, by default with only 100.
                    await loop.create_server(
                        lambda: factory(self), sock=sock, backlog=self._backlog
                    )
                )
            else:
                self._acceptors.append(loop.create_task(self._accept_loop(sock)))

    @property
    def address(self) -> Address:
        return self._addresses[0]

    @property
    def addresses(self) -> list[Address]:
        return list(self._addresses)

    @property
    def active_connections(self) -> int:
        return self._connections.count

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
        for sock in self._listeners:
            cleanup_unix_path(sock)  # first: closing the servers closes the sockets too
        for server in self._servers:
            server.close()
        for task in self._acceptors:
            task.cancel()
        for task in self._acceptors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in self._listeners:
            sock.close()
        grace = self._grace if grace is None else grace
        me: object = asyncio.current_task()  # a handler may close the server: never wait for itself
        await self._handlers_ended(me, grace)
        for protocol in self._connections.items():
            if protocol.driver is me:
                continue
            if protocol.transport is not None:
                protocol.transport.abort()
            if protocol.driver is not None:
                protocol.driver.cancel()
        await self._handlers_ended(me, 5.0)
        self._closed.set()

    async def _handlers_ended(self, me: object, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until every handler but ``me`` has returned."""
        mine = isinstance(me, HandlerDriver) and any(
            p.driver is me for p in self._connections.items()
        )
        deadline = self._loop.time() + timeout
        while self._connections.count > mine:
            self._handler_exit = self._loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._handler_exit
            except TimeoutError:
                return
            finally:
                self._handler_exit = None

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- per connection ---------------------------------------------------------------------

    def _connection_made(self, protocol: _ServerProtocol) -> None:
        transport = protocol.transport
        assert transport is not None
        if self._per_ip.limit is not None:
            peer = transport.get_extra_info("peername")
            if not self._per_ip.admit(PerIPCounter.key(peer)):
                self.connections_refused += 1
                log.warning(
                    "refused %s: max_connections_per_ip %s reached",
                    format_sockaddr(peer),
                    self._per_ip.limit,
                )
                transport.abort()
                if self._slots is not None:
                    self._slots.release()
                return
        self.connections_accepted += 1
        # No setsockopt here: asyncio and uvloop transports already set TCP_NODELAY.
        stream = DrivenStream(transport, protocol, default_timeout=self._idle_timeout)
        self._connections.add(protocol)
        if self._closing:
            stream.abort()
        if self._tls is None:
            coro = self._handler(stream)
        else:
            coro = self._tls_then_handle(protocol, stream)
        # No Task: the protocol resumes the handler itself (driver.py). Each handler gets its
        # own context copy, as a Task would.
        driver = HandlerDriver(
            coro, protocol, self._loop, self._context.run(contextvars.copy_context)
        )
        protocol.driver = driver
        driver.start()

    async def _tls_then_handle(self, protocol: _ServerProtocol, stream: Stream) -> object:
        assert self._tls is not None
        async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
            await tls_handshake(protocol, self._tls, server_side=True)
        return await self._handler(stream)

    def _handler_done(self, protocol: _ServerProtocol, task: HandlerDriver) -> None:
        self._connections.remove(protocol)
        if self._handler_exit is not None and not self._handler_exit.done():
            self._handler_exit.set_result(None)
        transport = protocol.transport
        if transport is not None:
            if self._per_ip.limit is not None:
                self._per_ip.release(PerIPCounter.key(transport.get_extra_info("peername")))
            transport.close()
        protocol.driver = None
        if self._slots is not None:
            self._slots.release()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, ClosedResourceError):
            return
        peer = (
            "(unknown)"
            if transport is None
            else format_sockaddr(transport.get_extra_info("peername"))
        )
        if isinstance(exc, _PEER_ERRORS):
            log.info("connection %s ended: %s", peer, exc)
        elif isinstance(exc, TimeoutError) and _in_handshake(protocol):
            log.info("connection %s: TLS handshake timed out", peer)
        elif isinstance(exc, SocketkitError):
            log.warning("connection %s failed: %s", peer, exc)
        else:
            log.error("handler for %s raised", peer, exc_info=exc)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = self._loop
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            try:
                conn, _peer = await loop.sock_accept(listener)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                self._slots.release()
                log.warning("accept failed: %s", translate_os_error(exc, "accept"))
                await asyncio.sleep(ACCEPT_BACKOFF)
                continue
            try:
                await loop.connect_accepted_socket(lambda: self._protocol_factory(self), conn)
            except OSError as exc:
                self._slots.release()
                conn.close()
                log.warning("connection setup failed: %s", translate_os_error(exc, "accept"))


def _server_protocol_class(loop: asyncio.AbstractEventLoop) -> type[_ServerProtocol]:
    if protocol_class(loop) is StreamProtocol:
        return _ServerProtocol
    return _BufferedServerProtocol


async def serve(
    handler: AsyncHandler,
    address: AddressLike,
    *,
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS_AIO,
    max_connections_per_ip: int | None = DEFAULT_MAX_PER_IP_AIO,
    idle_timeout: float | None = None,
    tls: bool | ssl.SSLContext = False,
    backlog: int = DEFAULT_BACKLOG,
    grace: float = DEFAULT_GRACE,
) -> Server:
    """Listen on ``address`` and run ``await handler(stream)`` for each client concurrently
    (resumed by its connection, no Task: ``current_task()`` is a Task-like driver); returns
    as soon as it is listening. Parameters as the sync :func:`socketkit.serve`, except the
    defaults: ``max_connections`` 10,000 (an idle connection costs about 2 KiB here, not a
    thread) and ``max_connections_per_ip`` 1,000; ``None`` for either limit means none."""
    check_limit("max_connections", max_connections)
    check_limit("max_connections_per_ip", max_connections_per_ip)
    ctx = server_tls_context(tls)
    listeners = open_listeners(parse_address(address), backlog=backlog)
    server = Server(
        handler,
        listeners,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        tls=ctx,
        grace=grace,
        backlog=backlog,
        max_connections_per_ip=max_connections_per_ip,
    )
    try:
        await server._start()
    except BaseException:
        await server.aclose()
        raise
    return server
