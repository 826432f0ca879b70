"""``socketkit.aio.serve_udp``: the asyncio twin of :func:`socketkit.serve_udp`.

One datagram transport (uvloop's, in C, when the loop is uvloop); its protocol looks each
datagram's source up in a :class:`~socketkit.proto.peers.PeerTable` and hands the bytes to
that peer's :class:`Conversation`. Each conversation's handler is a coroutine resumed
directly by the protocol (:class:`~socketkit._async.driver.HandlerDriver`, as the stream
server's): a handler waiting in ``receive()`` gets its datagram on the spot, with no future,
no Task step and no ``call_soon``; that is what keeps a per-peer server close to a bare
``DatagramProtocol`` echo (``benchmarks/bench_serve_udp.py``). One timer, set for the oldest
peer's expiry, does idle expiry: a datagram only moves its peer to the back of the table.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import errno
import logging
import os
import socket
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any

from .._accel import accelerate, speedups
from .._addr import Address, AddressLike, format_sockaddr
from .._errors import (
    ClosedResourceError,
    ReadTimeout,
    SocketkitError,
    SocketkitTimeout,
)
from .._server_common import DEFAULT_GRACE, bound_address, check_limit
from .._sync.udp_server import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    MAX_QUEUED_BYTES,
    MAX_UNIX_DATAGRAM,
    _no_drop_counter,
)
from .._sync.udp_server import REFUSAL_LOG_INTERVAL as _REFUSAL_LOG_INTERVAL
from .._udp import (
    IPV4_MAX_PAYLOAD,
    cleanup_path,
    datagram_error,
    ipv4_mapped,
    open_udp_socket,
)
from ..proto.peers import FULL, Peer, PeerTable
from .driver import DRIVEN, RUNNING, HandlerDriver

__all__ = [
    "DEFAULT_MAX_PEERS_AIO",
    "DEFAULT_MAX_PEERS_PER_IP_AIO",
    "AsyncDatagramHandler",
    "Conversation",
    "UDPServer",
    "serve_udp",
]

log = logging.getLogger("socketkit.server")

#: Conversations at once on asyncio: each is a coroutine frame and a small object (no
#: thread), so ten times the sync server's; ``MAX_QUEUED_BYTES`` bounds what they hold.
DEFAULT_MAX_PEERS_AIO = 5_000
#: From one IP address at once: a fifth of the table (more sources share an address behind a
#: NAT than on the sync server's typical LAN).
DEFAULT_MAX_PEERS_PER_IP_AIO = 1_000

_UNSET: Any = object()


@types.coroutine
def _driven() -> Generator[Any, Any, bytes]:
    """The driven handler's wait: yields DRIVEN; the protocol sends the datagram in."""
    return (yield DRIVEN)  # type: ignore[no-any-return]


class Conversation:
    """The datagrams of one remote address, handed to an :func:`serve_udp` handler.

    As the sync :class:`socketkit.Conversation`, awaited: ``await receive(timeout=...)``
    returns the next datagram's bytes (:class:`~socketkit.ReadTimeout` when ``timeout``
    runs out; :class:`~socketkit.ClosedResourceError` once the conversation has ended and its
    queue is empty); ``async for data in conversation`` stops at the end; ``await send(data)``
    sends one datagram to the peer. A cancelled ``receive`` consumes nothing.
    """

    __slots__ = (
        "_driver",
        "_iterating",
        "_limit",
        "_protocol",
        "_queue",
        "_read_waiter",
        "_server",
        "address",
        "closed",
        "dropped",
        "peer",
        "received",
        "sent",
    )

    def __init__(self, server: UDPServer, address: Any) -> None:
        self._server = server
        self._protocol = server._protocol
        self._queue: collections.deque[bytes] = collections.deque()
        # DRIVEN (the handler waits in receive and the protocol sends the bytes in), a Future
        # (any other wait), or None.
        self._read_waiter: object = None
        self._driver: HandlerDriver | None = None
        # The driven wait is that of ``async for`` (its end is StopAsyncIteration).
        self._iterating = False
        self.address = address
        self.peer = format_sockaddr("" if address is None else address)
        # The longest datagram send() hands over directly; -1 (no address): never.
        self._limit = self._protocol.max_payload if address else -1
        if self._limit > IPV4_MAX_PAYLOAD and ipv4_mapped(address):
            self._limit = IPV4_MAX_PAYLOAD  # a dual-stack server's IPv4 peer: IPv4's limit
        self.closed = False
        self.dropped = 0
        self.received = 0
        self.sent = 0

    @property
    def local(self) -> Address:
        """The server's bound address."""
        return self._server.address

    # -- receiving --------------------------------------------------------------------------

    async def receive(self, *, timeout: float | None = _UNSET) -> bytes:
        """The next datagram from the peer (see the class)."""
        queue = self._queue
        if queue:
            data = queue.popleft()
            self._server._queued_bytes -= len(data)
            return data
        if self.closed:
            raise ClosedResourceError(f"the conversation with {self.peer} has ended")
        driver = self._driver
        if (
            timeout is _UNSET
            and driver is not None
            and driver._waiting is RUNNING
            and self._read_waiter is None
        ):
            # The handler itself waits: the protocol will resume it with the bytes.
            self._read_waiter = DRIVEN
            self._iterating = False
            return await _driven()
        return await self._receive_slow(None if timeout is _UNSET else timeout)

    async def _receive_slow(self, timeout: float | None) -> bytes:
        loop = self._server._loop
        while True:
            if self._queue:
                data = self._queue.popleft()
                self._server._queued_bytes -= len(data)
                return data
            if self.closed:
                raise ClosedResourceError(f"the conversation with {self.peer} has ended")
            if self._read_waiter is not None:
                raise RuntimeError("another task is already receiving from this conversation")
            waiter: asyncio.Future[None] = loop.create_future()
            self._read_waiter = waiter
            handle = None
            if timeout is not None:
                handle = loop.call_later(max(0.0, timeout), self._expire_wait, waiter)
            try:
                await waiter
            except TimeoutError:
                raise ReadTimeout(
                    f"receive from {self.peer}: no datagram within {timeout:g} s"
                ) from None
            finally:
                if handle is not None:
                    handle.cancel()
                if self._read_waiter is waiter:
                    self._read_waiter = None

    def _expire_wait(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
            self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        driver = self._driver
        if driver is not None:
            driver.resume(waiter)

    def _feed(self, data: bytes) -> None:
        """A datagram from the peer (called by the protocol)."""
        self.received += 1
        waiter = self._read_waiter
        if waiter is DRIVEN:
            self._read_waiter = None
            self._driver._step(data, None)  # type: ignore[union-attr]
            return
        server = self._server
        if (
            len(self._queue) >= server._max_queue
            or server._queued_bytes + len(data) > MAX_QUEUED_BYTES
        ):
            self.received -= 1
            self.dropped += 1
            server.datagrams_dropped += 1
            return
        self._queue.append(data)
        server._queued_bytes += len(data)
        if waiter is not None:
            assert isinstance(waiter, asyncio.Future)
            if not waiter.done():
                waiter.set_result(None)
                self._wake(waiter)

    def _end(self) -> None:
        """The conversation is over (expired, closed, server closing): wake a waiting receive."""
        if self.closed:
            return
        self.closed = True
        waiter = self._read_waiter
        if waiter is DRIVEN:
            self._read_waiter = None
            if self._iterating:  # the wait of __anext__: the loop just ends
                end: Exception = StopAsyncIteration()
            else:
                end = ClosedResourceError(f"the conversation with {self.peer} has ended")
            self._driver.throw(end)  # type: ignore[union-attr]
        elif isinstance(waiter, asyncio.Future) and not waiter.done():
            waiter.set_result(None)
            self._wake(waiter)

    # The driver's owner interface (see driver.py).
    def cancel_driven_read(self) -> None:
        """(For the handler's driver) a driven wait was cancelled: nothing waits now."""
        if self._read_waiter is DRIVEN:
            self._read_waiter = None

    def handler_done(self, driver: HandlerDriver) -> None:
        """(For the handler's driver) the handler has returned or raised."""
        self._server._handler_done(self, driver)

    # -- sending ----------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> Awaitable[None]:
        """Send ``data`` as one datagram to the peer: ``await conv.send(data)``. Waits only
        while the transport's buffer is over its high-water mark (the socket was full).

        On the common path the datagram is handed to the transport during the call and what
        is returned is an already finished future (nothing to suspend for: a datagram send
        does not wait for the peer), which is cheaper than a coroutine per datagram.

        Raises:
            ClosedResourceError: the server is closed.
            DatagramTooLarge: longer than the kernel lets through.
        """
        protocol = self._protocol
        if protocol.writable and len(data) <= self._limit:
            protocol.transport.sendto(data, self.address)  # type: ignore[union-attr]
            self.sent += 1
            return protocol.done
        return self._send_slow(data)

    async def _send_slow(self, data: bytes | bytearray | memoryview) -> None:
        protocol = self._protocol
        if protocol.transport is not None and protocol.paused:
            await protocol.wait_writable()
        transport = protocol.transport
        if transport is None:
            raise ClosedResourceError("the server is closed")
        if not self.address:
            raise SocketkitError(
                f"{self.peer} has no address (an unbound Unix datagram socket): "
                "nothing can be sent to it"
            )
        size = len(data)
        if size > self._limit:
            sock = transport.get_extra_info("socket")
            exc = OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
            raise datagram_error(sock, exc, "send", size, to=self.address)
        transport.sendto(data, self.address)
        self.sent += 1

    def close(self) -> None:
        """End the conversation: receives return what is queued, then raise
        ClosedResourceError. The peer's address stays taken until the handler returns."""
        self._end()

    # -- iteration --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        # Not a coroutine function: on the hot path (the handler itself waits, nothing
        # queued) the awaitable is the one ``_driven`` generator; at the end the protocol
        # throws StopAsyncIteration straight into it (``_iterating``).
        driver = self._driver
        if (
            not self._queue
            and not self.closed
            and driver is not None
            and driver._waiting is RUNNING
            and self._read_waiter is None
        ):
            self._read_waiter = DRIVEN
            self._iterating = True
            return _driven()
        return self._anext_slow()

    async def _anext_slow(self) -> bytes:
        try:
            return await self.receive()
        except ClosedResourceError:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<aio.Conversation {self.peer} {state} queued={len(self._queue)}>"


#: ``async def handler(conversation)``; the conversation ends when it returns.
AsyncDatagramHandler = Callable[[Conversation], Coroutine[Any, Any, object]]


class _Protocol(asyncio.DatagramProtocol):
    """Demultiplexes the transport's datagrams by source address."""

    # Slots: the C fast path (_speedups.c) reads them directly.
    __slots__ = (
        "_by_activity",
        "_peers",
        "_time",
        "_writable",
        "done",
        "max_payload",
        "paused",
        "server",
        "transport",
        "writable",
    )

    def __init__(self, server: UDPServer, max_payload: int) -> None:
        self.server = server
        table = server._table
        self._peers = table._peers
        self._by_activity = table._by_activity
        self._time = server._loop.time
        self.transport: asyncio.DatagramTransport | None = None
        self.max_payload = max_payload
        self.paused = False
        #: A transport that is not paused: Conversation.send may hand datagrams straight to it.
        self.writable = False
        self._writable: asyncio.Future[None] | None = None
        #: What send() returns when the datagram is with the transport: a finished future
        #: (awaiting it returns at once, any number of times).
        self.done: asyncio.Future[None] = server._loop.create_future()
        self.done.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.writable = not self.paused

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # Once per datagram: the lookup, the touch and the hand-over to a handler waiting in
        # ``receive``/``async for`` are inlined (PeerTable.touch and Conversation._feed say
        # the same at length).
        peer = self._peers.get(addr)
        if peer is None:
            self.server._new_peer(addr, data)
            return
        peer.last = self._time()
        try:
            self._by_activity.move_to_end(addr)
        except KeyError:
            pass  # expired: no longer in the activity order
        conv: Conversation = peer.value  # type: ignore[assignment]
        if conv._read_waiter is DRIVEN:
            conv._read_waiter = None
            conv.received += 1
            conv._driver._step(data, None)  # type: ignore[union-attr]
            return
        conv._feed(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors about earlier replies (port unreachable): not one conversation's to act
        # on, as on the sync server.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()
        self.writable = False

    def pause_writing(self) -> None:
        self.paused = True
        self.writable = False

    def resume_writing(self) -> None:
        self.paused = False
        self.writable = self.transport is not None
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_writable(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._writable)


class _UnixProtocol(_Protocol):
    """On a Unix datagram socket: the event loop reads into a fixed buffer (asyncio 256 KiB,
    uvloop 256,000 bytes) and cuts a longer datagram without a word. Anything longer than
    ``MAX_UNIX_DATAGRAM`` (below both) is dropped and counted instead, never handed over cut,
    as on the sync server. UDP payloads never come near either size: IP sockets skip this."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > MAX_UNIX_DATAGRAM:
            self.server._too_long(addr)
            return
        super().datagram_received(data, addr)


class UDPServer:
    """A running :func:`serve_udp` server; ``async with`` closes it."""

    def __init__(
        self,
        handler: AsyncDatagramHandler,
        sock: socket.socket,
        *,
        idle_timeout: float | None,
        max_peers: int | None,
        max_peers_per_ip: int | None,
        max_queue: int,
        grace: float,
        owns_path: bool,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._sock = sock
        self._owns_path = owns_path
        self._address = bound_address(sock)
        self._max_queue = max_queue
        self._grace = grace
        self._table: PeerTable[Conversation] = PeerTable(
            max_peers=max_peers, max_peers_per_ip=max_peers_per_ip, idle_timeout=idle_timeout
        )
        self._queued_bytes = 0
        self._closing = False
        self._closed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._handler_exit: asyncio.Future[None] | None = None
        self._refusals_logged_at = -_REFUSAL_LOG_INTERVAL
        # The clock admissions and refusal log lines are timed by (the loop's; a test may
        # put its own here to step over REFUSAL_LOG_INTERVAL without waiting for it).
        self._clock: Callable[[], float] = self._loop.time
        self._context = contextvars.copy_context()
        if sock.family == socket.AF_UNIX:
            limit = 1 << 30  # the kernel says (EMSGSIZE) when asked: see send()
        elif sock.family == socket.AF_INET6:
            limit = 65527
        else:
            limit = 65507
        kind = _UnixProtocol if sock.family == socket.AF_UNIX else _Protocol
        self._protocol = kind(self, limit)
        #: Datagrams dropped because a conversation's queue (or all queues' bytes) was full,
        #: or it had ended; Unix datagrams longer than ``MAX_UNIX_DATAGRAM`` (dropped too).
        self.datagrams_dropped = 0
        self.datagrams_truncated = 0

    async def _start(self) -> None:
        self._sock.setblocking(False)
        await self._loop.create_datagram_endpoint(lambda: self._protocol, sock=self._sock)

    # -- public -----------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        """The bound address (port 0 resolved to the real port)."""
        return self._address

    @property
    def socket(self) -> socket.socket:
        """The server's datagram socket (to set options; do not read from it)."""
        return self._sock

    @property
    def active_conversations(self) -> int:
        """Conversations whose handler is running."""
        return len(self._table)

    @property
    def peers_accepted(self) -> int:
        """Conversations started so far."""
        return self._table.admitted

    @property
    def peers_refused(self) -> int:
        """Datagrams from new sources dropped because of ``max_peers``/``max_peers_per_ip``."""
        return self._table.refused

    async def serve_forever(self) -> None:
        """Wait until the server is closed (cancelling this closes it)."""
        try:
            await self._closed.wait()
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def aclose(self, grace: float | None = None) -> None:
        """Stop starting conversations; end every conversation and give the handlers
        ``grace`` seconds (default: the server's) to return, then cancel the rest and close
        the socket. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        for peer in self._table:
            if peer.value is not None:
                peer.value._end()
        me: object = asyncio.current_task()
        grace = self._grace if grace is None else grace
        await self._handlers_ended(me, grace)
        for peer in self._table:
            conv = peer.value
            if conv is not None and conv._driver is not None and conv._driver is not me:
                conv._driver.cancel()
        await self._handlers_ended(me, 5.0)
        transport = self._protocol.transport
        if self._owns_path:
            cleanup_path(self._sock)
        if transport is not None:
            transport.close()
        else:
            self._sock.close()
        self._closed.set()

    async def _handlers_ended(self, me: object, timeout: float) -> None:
        mine = any(p.value is not None and p.value._driver is me for p in self._table)
        deadline = self._loop.time() + timeout
        while len(self._table) > mine:
            self._handler_exit = self._loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._handler_exit
            except TimeoutError:
                return
            finally:
                self._handler_exit = None

    async def __aenter__(self) -> UDPServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<aio.UDPServer {self.address} conversations={self.active_conversations}>"

    # -- per peer ---------------------------------------------------------------------------

    def _new_peer(self, addr: Any, data: bytes) -> None:
        if self._closing:
            return
        now = self._clock()
        got = self._table.admit(addr, now)
        if not isinstance(got, Peer):
            self._refused(addr, got, now)
            return
        conv = Conversation(self, addr)
        got.value = conv
        conv._feed(data)  # queued: the handler's first receive returns it at once
        driver = HandlerDriver(
            self._handler(conv), conv, self._loop, self._context.run(contextvars.copy_context)
        )
        conv._driver = driver
        self._arm_timer()
        driver.start()

    def _too_long(self, addr: Any) -> None:
        self.datagrams_truncated += 1
        log.warning(
            "datagram of more than %d bytes from %s dropped",
            MAX_UNIX_DATAGRAM,
            format_sockaddr("" if addr is None else addr),
        )

    def _refused(self, addr: Any, why: str, now: float) -> None:
        if now - self._refusals_logged_at < _REFUSAL_LOG_INTERVAL:
            return
        self._refusals_logged_at = now
        table = self._table
        limit = table.max_peers if why == FULL else table.max_peers_per_ip
        log.warning(
            "datagrams from %s dropped: %s %s reached (%d new peers refused so far)",
            format_sockaddr(addr),
            why,
            limit,
            table.refused,
        )

    def _arm_timer(self) -> None:
        due = self._table.next_expiry()
        if due is None or self._closing:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= due:
            return  # it fires first and re-arms for whatever is due then
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        for peer in self._table.expire(self._loop.time()):
            if peer.value is not None:
                peer.value._end()
        self._arm_timer()

    def _handler_done(self, conv: Conversation, driver: HandlerDriver) -> None:
        conv.closed = True
        conv._driver = None
        for data in conv._queue:
            self._queued_bytes -= len(data)
        conv._queue.clear()
        peer = self._table.get(conv.address)
        if peer is not None and peer.value is conv:
            self._table.remove(peer)
        if self._handler_exit is not None and not self._handler_exit.done():
            self._handler_exit.set_result(None)
        if driver.cancelled():
            return
        exc = driver.exception()
        if exc is None or isinstance(exc, ClosedResourceError):
            return
        if isinstance(exc, SocketkitTimeout):
            log.info("conversation with %s ended: %s", conv.peer, exc)
        elif isinstance(exc, SocketkitError):
            log.warning("conversation with %s failed: %s", conv.peer, exc)
        else:
            log.error("handler for %s raised", conv.peer, exc_info=exc)


async def serve_udp(
    handler: AsyncDatagramHandler,
    address: AddressLike,
    *,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    max_peers: int | None = DEFAULT_MAX_PEERS_AIO,
    max_peers_per_ip: int | None = DEFAULT_MAX_PEERS_PER_IP_AIO,
    max_queue: int = DEFAULT_MAX_QUEUE,
    reuse_port: bool = False,
    receive_buffer: int | None = None,
    send_buffer: int | None = None,
    grace: float = DEFAULT_GRACE,
) -> UDPServer:
    """Bind a datagram socket at ``address`` and run ``await handler(conversation)`` for each
    remote address that writes to it (resumed by the server's protocol, no Task:
    ``current_task()`` is a Task-like driver); returns as soon as it is bound. Parameters as
    the sync :func:`socketkit.serve_udp`, except the defaults: ``max_peers`` 5,000 (a
    conversation costs a coroutine, not a thread) and ``max_peers_per_ip`` 1,000."""
    check_limit("max_peers", max_peers)
    check_limit("max_peers_per_ip", max_peers_per_ip)
    check_limit("max_queue", max_queue)
    if idle_timeout is not None and not idle_timeout > 0:
        raise ValueError(f"idle_timeout must be more than 0 seconds or None, not {idle_timeout!r}")
    sock, owns_path = open_udp_socket(
        address,
        None,
        family=None,
        reuse_port=reuse_port,
        broadcast=False,
        receive_buffer=receive_buffer,
        send_buffer=send_buffer,
    )
    _no_drop_counter(sock)
    server = UDPServer(
        handler,
        sock,
        idle_timeout=idle_timeout,
        max_peers=max_peers,
        max_peers_per_ip=max_peers_per_ip,
        max_queue=max_queue,
        grace=grace,
        owns_path=owns_path,
    )
    try:
        await server._start()
    except BaseException:
        if owns_path:
            cleanup_path(sock)
        sock.close()
        raise
    return server


# The per-datagram path in C where the extension is built (_accel.py, _speedups.c): the
# protocol's hand-over to a handler waiting in ``async for``, the handler's ``send`` and its
# ``async for`` wait. They resume the handler through the driver's step, which the stream
# module puts in C (configure_aio), so it is imported first.
if speedups is not None:
    from . import stream as _stream  # noqa: F401

    speedups.configure_udp_aio(conversation=Conversation, protocol=_Protocol, peer=Peer)
    accelerate(_Protocol, "datagram_received", "UDP_DATAGRAM_RECEIVED")
    accelerate(Conversation, "send", "UDP_SEND")
    accelerate(Conversation, "__anext__", "UDP_ANEXT")
