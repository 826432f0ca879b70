"""The asyncio datagram socket: :func:`udp` and :class:`DatagramSocket`, the same methods and
semantics as the sync ones, awaited.

The socket is non-blocking; a call first tries the kernel directly and only when it would block
waits for readiness (``loop.add_reader``/``add_writer``; uvloop has no ``sock_recvfrom``, and
readiness alone is all either loop needs). The datagram is read by the waiting call itself,
after it wakes, so a receive that is cancelled or times out has taken nothing: the datagram
stays queued in the kernel for the next receive.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

from .. import _udp_batch as _batch
from .._addr import AddressLike, format_sockaddr
from .._errors import (
    AddressError,
    ClosedResourceError,
    ReadTimeout,
    SocketkitError,
    WriteTimeout,
)
from .._timeout import UNSET, check_timeout
from .._udp import (
    ANCILLARY_SIZE,
    DEFAULT_MAX_SIZE,
    Buffer,
    Datagram,
    Destinations,
    DropCounter,
    cleanup_path,
    datagram_error,
    enable_drop_counter,
    make_datagram,
    needs_lookup,
    open_udp_socket,
    payload_size,
    prepare_batch,
)

__all__ = ["DatagramSocket", "udp"]

_UNSET: float = UNSET  # 'not given': compared with `is` (socketkit/_timeout.py)
_MSG_TRUNC = socket.MSG_TRUNC


async def udp(
    local: AddressLike | None = None,
    *,
    remote: AddressLike | None = None,
    family: socket.AddressFamily | None = None,
    reuse_port: bool = False,
    reuse_address: bool = False,
    broadcast: bool = False,
    receive_buffer: int | None = None,
    send_buffer: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    default_timeout: float | None = None,
    dont_fragment: bool = False,
    gro: bool = False,
) -> DatagramSocket:
    """Open a datagram socket on the running loop. Parameters, result and errors as the sync
    :func:`socketkit.udp`; a host name is looked up in the loop's executor (as asyncio's own
    ``getaddrinfo``), numeric addresses without one."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, not {max_size}")
    default_timeout = check_timeout(default_timeout, "default_timeout")  # before any socket

    def open_() -> tuple[socket.socket, bool]:
        return open_udp_socket(
            local, remote, family=family, reuse_port=reuse_port, reuse_address=reuse_address,
            broadcast=broadcast,
            receive_buffer=receive_buffer, send_buffer=send_buffer,
            dont_fragment=dont_fragment,
        )  # fmt: skip

    if needs_lookup(local) or needs_lookup(remote):
        sock, owns_path = await asyncio.get_running_loop().run_in_executor(None, open_)
    else:
        sock, owns_path = open_()
    return DatagramSocket(
        sock, max_size=max_size, default_timeout=default_timeout, gro=gro, _owns_path=owns_path
    )


class DatagramSocket:
    """A datagram socket on an asyncio loop (``await socketkit.aio.udp(...)``), or your own
    ``SOCK_DGRAM`` socket wrapped (``DatagramSocket(sock)``; it is made non-blocking).

    Several tasks may receive (and send) at once; each call has its own timeout.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        default_timeout: float | None = None,
        gro: bool = False,
        _owns_path: bool = False,
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"not a datagram socket: {sock!r}")
        # GRO: as the sync socket, every receive goes through the batch layer's split.
        self._gro = gro and sock.family != socket.AF_UNIX and _batch.enable_gro(sock)
        self._pending: deque[Datagram] = deque()
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._max_size = max_size
        self.default_timeout = check_timeout(default_timeout, "default_timeout")
        self._owns_path = _owns_path
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers: list[asyncio.Future[None]] = []
        self._writers: list[asyncio.Future[None]] = []
        self._destinations = Destinations(sock)
        self._drops_known = sock.family != socket.AF_UNIX  # Unix datagrams are never dropped
        self._drops = DropCounter(enable_drop_counter(sock) if self._drops_known else True)
        try:
            self._local = format_sockaddr(sock.getsockname())
            try:
                peer: Any = sock.getpeername()
            except OSError:
                self._remote: str | None = None
            else:
                self._remote = format_sockaddr(peer)
        except OSError as exc:
            raise datagram_error(sock, exc, "inspect the datagram socket") from exc

    # -- properties (as the sync socket) ------------------------------------------------------

    @property
    def local(self) -> str:
        """Our address, e.g. ``127.0.0.1:5000``, ``[::]:5000``, ``unix:/path``."""
        return self._local

    @property
    def remote(self) -> str | None:
        """The connected peer (``remote=``), or ``None``."""
        return self._remote

    @property
    def family(self) -> socket.AddressFamily:
        """``socket.AF_INET``, ``AF_INET6`` or ``AF_UNIX``."""
        return self._sock.family

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (for setsockopt and friends)."""
        return self._sock

    @property
    def max_size(self) -> int:
        """The longest datagram ``receive`` returns whole."""
        return self._max_size

    @property
    def gro(self) -> bool:
        """True when UDP GRO is on (``udp(gro=True)`` on a kernel that has it)."""
        return self._gro

    @property
    def drops(self) -> int:
        """Kernel receive-queue drops seen so far (``SO_RXQ_OVFL``), as the sync socket."""
        return self._drops.total if self._drops_known else 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def fileno(self) -> int:
        """The socket's file descriptor (-1 once closed)."""
        return self._sock.fileno()

    # -- waiting for readiness -----------------------------------------------------------------

    def _timeout(self, timeout: float) -> float | None:
        return self.default_timeout if timeout is _UNSET else check_timeout(timeout)

    def _on_readable(self) -> None:
        self._wake(self._readers)
        if self._loop is not None:
            self._loop.remove_reader(self._fd)

    def _on_writable(self) -> None:
        self._wake(self._writers)
        if self._loop is not None:
            self._loop.remove_writer(self._fd)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    async def _wait(self, writing: bool, timeout: float | None) -> None:
        """Wait until the socket is readable (writable); builtin TimeoutError after
        ``timeout`` seconds. Only readiness: nothing is read here."""
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self._writers if writing else self._readers
        if not waiters:
            if writing:
                loop.add_writer(self._fd, self._on_writable)
            else:
                loop.add_reader(self._fd, self._on_readable)
        waiters.append(waiter)
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            if not waiter.done() or waiter.cancelled():
                waiter.cancel()
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters and not self._closed:
                    if writing:
                        loop.remove_writer(self._fd)
                    else:
                        loop.remove_reader(self._fd)

    def _error(self, exc: OSError, action: str, size: int = 0, to: Any = None) -> SocketkitError:
        if self._closed:
            return ClosedResourceError(f"{action}: the datagram socket was closed")
        return datagram_error(self._sock, exc, action, size=size, to=to, remote=self._remote)

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, *, timeout: float = _UNSET) -> Datagram:
        """Wait for one datagram and return it. As the sync :meth:`receive`; a receive that is
        cancelled (``Task.cancel``, ``asyncio.timeout``) or times out took nothing from the
        queue.

        Raises:
            ReadTimeout: nothing arrived in time; nothing was taken from the queue.
            ConnectionRefused: (connected socket) ICMP port unreachable for an earlier datagram.
            ClosedResourceError: the socket is closed (also when closed while this call waits).
        """
        if timeout is not _UNSET:
            check_timeout(timeout)  # refused at once, even when no wait is needed
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        if self._gro:
            return await self._receive_split(timeout)
        sock = self._sock
        limit: float | None = None
        deadline: float | None = None
        while True:
            try:
                data, ancdata, flags, address = sock.recvmsg(self._max_size, ANCILLARY_SIZE)
                break
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "receive") from exc
            if deadline is None:
                limit = self._timeout(timeout)
                if limit is not None:
                    deadline = asyncio.get_running_loop().time() + limit
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                raise ReadTimeout("receive timed out")
            try:
                await self._wait(False, left)
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out") from exc
        return make_datagram(
            data,
            address,
            flags & _MSG_TRUNC != 0,
            self._drops.update(ancdata) if self._drops_known else 0,
        )

    async def _receive_split(self, timeout: float) -> Datagram:
        """``receive`` on a GRO socket: the next datagram of the last read, or a new read
        (cancelled while waiting, it took nothing: the read's result is kept at once)."""
        if not self._pending:
            self._pending.extend(await self.receive_many(timeout=timeout))
        return self._pending.popleft()

    async def receive_into(
        self, buffer: bytearray | memoryview, *, timeout: float = _UNSET
    ) -> tuple[int, Any, bool]:
        """Receive one datagram into ``buffer``: ``(count, address, truncated)``, as the sync
        :meth:`receive_into`. A cancelled call took nothing (``buffer`` is untouched)."""
        if timeout is not _UNSET:
            check_timeout(timeout)  # refused at once, even when no wait is needed
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        if self._gro:
            datagram = await self._receive_split(timeout)
            count = min(len(datagram.data), len(buffer))
            buffer[:count] = datagram.data[:count]
            return count, datagram.address, datagram.truncated or count < len(datagram.data)
        sock = self._sock
        deadline: float | None = None
        started = False
        while True:
            try:
                count, ancdata, flags, address = sock.recvmsg_into([buffer], ANCILLARY_SIZE)
                break
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "receive") from exc
            loop = asyncio.get_running_loop()
            if not started:
                started = True
                limit = self._timeout(timeout)
                deadline = None if limit is None else loop.time() + limit
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise ReadTimeout("receive timed out")
            try:
                await self._wait(False, left)
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out") from exc
        if self._drops_known:
            self._drops.update(ancdata)
        return count, address, bool(flags & _MSG_TRUNC)

    def __aiter__(self) -> AsyncIterator[Datagram]:
        """Datagrams until the socket is closed; each wait uses ``default_timeout``."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Datagram]:
        while not self._closed:
            try:
                yield await self.receive()
            except ClosedResourceError:
                return

    # -- sending ------------------------------------------------------------------------------

    async def send(
        self,
        data: bytes | bytearray | memoryview,
        to: Any = None,
        *,
        timeout: float = _UNSET,
    ) -> int:
        """Send ``data`` as one datagram. As the sync :meth:`send` (``to`` with a host name
        is looked up in the executor the first time, then cached)."""
        if timeout is not _UNSET:
            check_timeout(timeout)  # refused at once, even when no wait is needed
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        sock = self._sock
        if to is None:
            if self._remote is None:
                raise AddressError("send: no destination: give to=, or open with remote=")
            target = None
        else:
            target = self._destinations.known(to)
            if target is None:
                if isinstance(to, str) and needs_lookup(to):  # a host name: off the loop
                    loop = asyncio.get_running_loop()
                    target = await loop.run_in_executor(None, self._destinations.lookup, to)
                else:
                    target = self._destinations.lookup(to)
        deadline: float | None = None
        started = False
        while True:
            try:
                if target is None:
                    return sock.send(data)
                return sock.sendto(data, target)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "send", len(memoryview(data).cast("B")), target) from exc
            loop = asyncio.get_running_loop()
            if not started:
                started = True
                limit = self._timeout(timeout)
                deadline = None if limit is None else loop.time() + limit
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise WriteTimeout("send timed out: the send buffer stayed full", sent=0)
            try:
                await self._wait(True, left)
            except TimeoutError as exc:
                raise WriteTimeout("send timed out: the send buffer stayed full", sent=0) from exc

    # -- batches (socketkit/_udp_batch.py) ----------------------------------------------------

    async def send_many(
        self,
        datagrams: Sequence[Buffer | tuple[Buffer, Any]],
        *,
        to: Any = None,
        timeout: float = _UNSET,
    ) -> int:
        """Send each item as one datagram, many per system call. As the sync
        :meth:`~socketkit.DatagramSocket.send_many` (a cancelled call may have sent the first
        items; ``WriteTimeout.sent`` counts datagrams)."""
        if timeout is not _UNSET:
            check_timeout(timeout)  # refused at once, even when no wait is needed
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        items, target = prepare_batch(self._destinations, datagrams, to, self._remote is not None)
        sent = 0
        deadline: float | None = None
        started = False
        while sent < len(items):
            try:
                sent += _batch.send_many(self._sock, items[sent:], target)
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "send_many", payload_size(items[sent]), target) from exc
            loop = asyncio.get_running_loop()
            if not started:
                started = True
                limit = self._timeout(timeout)
                deadline = None if limit is None else loop.time() + limit
            left = None if deadline is None else deadline - loop.time()
            message = f"send_many timed out after {sent} of {len(items)} datagrams"
            if left is not None and left <= 0:
                raise WriteTimeout(message, sent=sent)
            try:
                await self._wait(True, left)
            except TimeoutError as exc:
                raise WriteTimeout(message, sent=sent) from exc
        return sent

    async def receive_many(self, max: int = 64, *, timeout: float = _UNSET) -> list[Datagram]:
        """Wait for at least one datagram, then return every one queued (up to ``max`` kernel
        messages). As the sync :meth:`~socketkit.DatagramSocket.receive_many`; a cancelled or
        timed-out call took nothing."""
        if timeout is not _UNSET:
            check_timeout(timeout)  # refused at once, even when no wait is needed
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        if max < 1:
            raise ValueError(f"max must be at least 1, not {max}")
        if self._pending:  # split from an earlier GRO read: they come first
            got = list(self._pending)
            self._pending.clear()
            return got
        deadline: float | None = None
        started = False
        while True:
            try:
                return _batch.receive_many(self._sock, max, self._max_size, drops=self._drops)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "receive_many") from exc
            loop = asyncio.get_running_loop()
            if not started:
                started = True
                limit = self._timeout(timeout)
                deadline = None if limit is None else loop.time() + limit
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise ReadTimeout("receive_many timed out")
            try:
                await self._wait(False, left)
            except TimeoutError as exc:
                raise ReadTimeout("receive_many timed out") from exc

    # -- multicast (socketkit/_multicast.py) --------------------------------------------------

    async def join(
        self, group: str, *, interface: str | int | None = None, source: str | None = None
    ) -> None:
        """Join multicast ``group``; as the sync :meth:`~socketkit.DatagramSocket.join`."""
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        from .. import _multicast

        _multicast.join(self._sock, group, interface=interface, source=source)

    async def leave(
        self, group: str, *, interface: str | int | None = None, source: str | None = None
    ) -> None:
        """Leave a group joined with :meth:`join` (the same arguments)."""
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        from .. import _multicast

        _multicast.leave(self._sock, group, interface=interface, source=source)

    async def set_multicast(
        self,
        *,
        ttl: int | None = None,
        loopback: bool | None = None,
        interface: str | int | None = None,
    ) -> None:
        """Multicast sending options; as the sync
        :meth:`~socketkit.DatagramSocket.set_multicast`."""
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")
        from .. import _multicast

        _multicast.set_options(self._sock, ttl=ttl, loopback=loopback, interface=interface)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket (idempotent). Tasks waiting in ``receive``/``send`` get
        ClosedResourceError; a Unix socket file this socket created is removed."""
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
            loop.remove_writer(self._fd)
        for waiters in (self._readers, self._writers):
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(
                        ClosedResourceError("the datagram socket was closed while waiting")
                    )
            waiters.clear()
        if self._owns_path:
            cleanup_path(self._sock)
        self._sock.close()

    async def aclose(self) -> None:
        """:meth:`close`, awaitable (for ``contextlib.aclosing`` and symmetry with streams)."""
        self.close()

    async def __aenter__(self) -> DatagramSocket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        remote = f" -> {self._remote}" if self._remote else ""
        return f"<DatagramSocket {self._local}{remote} {state}>"
