"""The synchronous datagram socket: :func:`udp` and :class:`DatagramSocket`.

What it adds over a bare ``socket.socket(SOCK_DGRAM)``: the address syntax of streams, per-call
deadlines, one error tree (``EMSGSIZE`` says the limit, ICMP errors on a connected socket are
``ConnectionRefused``), truncation and kernel drops reported on each datagram instead of
hidden, an idempotent close that wakes a blocked receiver, and Unix datagram sockets that can
be replied to.
"""

from __future__ import annotations

import errno
import math
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from .. import _udp_batch as _batch
from .._accel import accelerate
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
    _new_object,
    _set_address,
    _set_data,
    _set_dropped,
    _set_truncated,
    cleanup_path,
    datagram_error,
    enable_drop_counter,
    make_datagram,
    open_udp_socket,
    payload_size,
    prepare_batch,
)

__all__ = ["DatagramSocket", "udp"]

_UNSET: float = UNSET  # 'not given': compared with `is` (socketkit/_timeout.py)
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_MSG_TRUNC = socket.MSG_TRUNC
_DONTWAIT = socket.MSG_DONTWAIT


def udp(
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
    """Open a datagram socket (UDP over IPv4/IPv6, or a Unix datagram socket).

    Args:
        local: where to bind: ``"host:port"``, ``"[v6]:port"``, ``":port"``, a port ``int``,
            ``"unix:/path"``, ``"unix:@abstract"``; ``None``: an ephemeral port (or, with a
            Unix ``remote``, a kernel-chosen abstract name, so the peer can reply).
        remote: connect to this peer: ``send`` needs no ``to``, only its datagrams are
            received, and ICMP errors (port unreachable) are reported on the next call.
        family: ``socket.AF_INET``/``AF_INET6``/``AF_UNIX``; inferred when ``None`` (an
            unbound or host-less local address with no remote is dual-stack ``[::]``).
        reuse_port: ``SO_REUSEPORT``: several sockets share the port (the kernel spreads
            datagrams between them by source).
        reuse_address: ``SO_REUSEADDR``: several sockets bound to one address and port each
            get every multicast or broadcast datagram sent there (the usual way for several
            receivers of one group on one host; see docs/multicast.md).
        broadcast: ``SO_BROADCAST``: allow sending to broadcast addresses.
        receive_buffer: ``SO_RCVBUF`` request in bytes (the kernel doubles it and caps it at
            ``net.core.rmem_max``); ``None``: the kernel default.
        send_buffer: ``SO_SNDBUF`` request in bytes, likewise.
        max_size: the longest datagram ``receive`` returns whole; a longer one comes back cut
            to this size with ``truncated=True``.
        default_timeout: timeout of every call not given its own (``None``: wait forever).
        dont_fragment: set the IP don't-fragment bit and never fragment locally
            (``IP_PMTUDISC_DO``): a datagram over the path MTU then fails with
            :class:`DatagramTooLarge` naming the MTU-based limit, instead of leaving in
            fragments. Without it the limit is only the protocol's (65507 bytes over IPv4,
            65527 over IPv6) and the kernel fragments what the path cannot carry whole.
        gro: turn UDP GRO on (``UDP_GRO``, Linux 5.0) where the kernel has it: the kernel
            may hand over a run of one sender's datagrams in one read, which
            :meth:`~DatagramSocket.receive_many` and :meth:`~DatagramSocket.receive` split back
            into datagrams (fewer system calls at high rates). Where the kernel lacks it,
            the socket works as without it (:attr:`~DatagramSocket.gro` says which).

    Returns:
        A :class:`DatagramSocket`; close it (or use ``with``).

    Raises:
        AddressError: bad address syntax, an unresolvable name, or a Unix and an IP address
            mixed.
        PermissionDenied: a privileged port without the privilege.
        SocketkitError: the address is in use or not local, the remote is unreachable, ...
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, not {max_size}")
    default_timeout = check_timeout(default_timeout, "default_timeout")  # before any socket
    sock, owns_path = open_udp_socket(
        local, remote, family=family, reuse_port=reuse_port, reuse_address=reuse_address,
            broadcast=broadcast,
        receive_buffer=receive_buffer, send_buffer=send_buffer, dont_fragment=dont_fragment,
    )  # fmt: skip
    return DatagramSocket(
        sock, max_size=max_size, default_timeout=default_timeout, gro=gro, _owns_path=owns_path
    )


class DatagramSocket:
    """A datagram socket. Get one from :func:`socketkit.udp`, or wrap your own
    ``SOCK_DGRAM`` socket (``DatagramSocket(sock)``).

    Every ``send``/``receive`` takes an optional ``timeout`` in seconds; without one, the
    socket's ``default_timeout`` applies (``None``: wait forever). A deadline belongs to its
    call: the socket stays blocking, and a call with a deadline uses ``MSG_DONTWAIT`` and
    waits in ``poll``, so one thread may receive while another sends, each with its own
    timeout. A receive that times out has taken nothing from the queue.
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
        # With GRO on, one read may carry several datagrams: every receive goes through the
        # batch layer, which splits them, and what one read brought beyond the datagrams asked
        # for waits here, in order, ahead of the socket's queue.
        self._gro = gro and sock.family != socket.AF_UNIX and _batch.enable_gro(sock)
        self._pending: deque[Datagram] = deque()
        if sock.gettimeout() is not None:
            sock.settimeout(None)  # blocking: each call keeps its own deadline (see above)
        self._sock = sock
        self._max_size = max_size
        self._default_timeout = default_timeout = check_timeout(default_timeout, "default_timeout")
        # True while receive/send without a timeout can go straight to the socket (open, no
        # default timeout): the per-datagram path, kept short (benchmarks/bench_udp_api.py).
        self._direct = default_timeout is None and not self._gro
        self._owns_path = _owns_path
        self._closed = False
        self._close_lock = threading.Lock()
        self._destinations = Destinations(sock)
        if sock.family == socket.AF_UNIX:
            # Unix datagram sockets drop nothing on receive: a sender waits (or gets EAGAIN)
            # while the receiver's queue is full.
            self._drops = DropCounter(True)
            self._drops_known = False
        else:
            self._drops = DropCounter(enable_drop_counter(sock))
            self._drops_known = True
        #: dropped_before of a datagram without the SO_RXQ_OVFL control message
        self._no_drops: int | None = 0 if self._drops.enabled else None
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

    # -- properties -------------------------------------------------------------------------

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
        """Datagrams the kernel dropped from this socket's receive queue so far, as learned
        from the datagrams received since (``SO_RXQ_OVFL``): a drop is seen when the next
        datagram after it is received. Always 0 for Unix datagram sockets (they do not drop)."""
        return self._drops.total if self._drops_known else 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def fileno(self) -> int:
        """The socket's file descriptor (-1 once closed)."""
        return self._sock.fileno()

    @property
    def default_timeout(self) -> float | None:
        """Timeout of every call that is not given its own (``None``: wait forever)."""
        return self._default_timeout

    @default_timeout.setter
    def default_timeout(self, value: float | None) -> None:
        self._default_timeout = value = check_timeout(value, "default_timeout")
        self._direct = value is None and not self._closed and not self._gro

    # -- helpers ----------------------------------------------------------------------------

    def _deadline(self, timeout: float) -> float | None:
        t = self.default_timeout if timeout is _UNSET else check_timeout(timeout)
        return None if t is None else time.monotonic() + t

    def _wait_ready(self, events: int, deadline: float | None) -> None:
        """Wait for ``events`` by this call's own deadline; builtin TimeoutError when it passes."""
        fd = self._sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        poller = select.poll()
        poller.register(fd, events)
        while True:
            if deadline is None:
                wait = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                wait = math.ceil(left * 1000)  # ms, rounded up: never wakes before the deadline
            if poller.poll(wait):
                return

    def _error(self, exc: OSError, action: str, size: int = 0, to: Any = None) -> SocketkitError:
        if self._closed:
            return ClosedResourceError(f"{action}: the datagram socket was closed")
        return datagram_error(self._sock, exc, action, size=size, to=to, remote=self._remote)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the datagram socket is closed")

    def _recvmsg(self, size: int, deadline: float | None) -> tuple[bytes, Any, int, Any]:
        sock = self._sock
        flags = 0 if deadline is None else _DONTWAIT
        while True:
            try:
                return sock.recvmsg(size, ANCILLARY_SIZE, flags)
            except BlockingIOError:  # (also a socket made non-blocking behind our back)
                self._wait_ready(_POLLIN, deadline)

    # -- receiving --------------------------------------------------------------------------

    def receive(self, *, timeout: float = _UNSET) -> Datagram:
        """Wait for one datagram and return it.

        Returns:
            A :class:`Datagram`: ``data`` (at most ``max_size`` bytes; ``truncated`` says when
            the datagram was longer), the sender's ``address``, ``dropped_before``.

        Raises:
            ReadTimeout: nothing arrived in time; nothing was taken from the queue.
            ConnectionRefused: a connected socket's earlier datagram met an ICMP port
                unreachable (nobody listens at the remote); the socket stays usable.
            ClosedResourceError: the socket is closed (also when another thread closes it
                while this call waits).
        """
        if self._direct and timeout is _UNSET:
            try:
                data, ancdata, flags, address = self._sock.recvmsg(self._max_size, ANCILLARY_SIZE)
            except BlockingIOError:
                pass  # a socket made non-blocking behind our back: the waiting path polls
            except OSError as exc:
                raise self._error(exc, "receive") from exc
            else:
                if data or not self._closed:
                    # make_datagram(), inlined: this is the per-datagram path
                    datagram: Datagram = _new_object(Datagram)
                    _set_data(datagram, data)
                    _set_address(datagram, address)
                    _set_truncated(datagram, flags & _MSG_TRUNC != 0)
                    _set_dropped(
                        datagram,
                        self._drops.update(ancdata) if ancdata else self._no_drops,
                    )
                    return datagram
        self._check_open()
        if self._gro:
            return self._receive_split(timeout)
        deadline = self._deadline(timeout)
        try:
            data, ancdata, flags, address = self._recvmsg(self._max_size, deadline)
        except TimeoutError as exc:
            raise ReadTimeout("receive timed out") from exc
        except OSError as exc:
            raise self._error(exc, "receive") from exc
        if not data and self._closed:  # close() shut the socket down to wake us
            raise ClosedResourceError("receive: the datagram socket was closed")
        return make_datagram(
            data,
            address,
            flags & _MSG_TRUNC != 0,
            self._drops.update(ancdata) if self._drops_known else 0,
        )

    def _receive_split(self, timeout: float) -> Datagram:
        """``receive`` on a GRO socket: the next datagram of the last read, or a new read."""
        if not self._pending:
            self._pending.extend(self.receive_many(timeout=timeout))
        return self._pending.popleft()

    def receive_into(
        self, buffer: bytearray | memoryview, *, timeout: float = _UNSET
    ) -> tuple[int, Any, bool]:
        """Receive one datagram into ``buffer`` (no allocation for the payload).

        Returns:
            ``(count, address, truncated)``: bytes written to ``buffer``, the sender's kernel
            address, and whether the datagram was longer than ``buffer`` (its rest is gone).
            The kernel's drop count is read as by :meth:`receive` (see :attr:`drops`).

        Raises:
            ReadTimeout, ConnectionRefused, ClosedResourceError: as :meth:`receive`.
        """
        self._check_open()
        if self._gro:
            datagram = self._receive_split(timeout)
            count = min(len(datagram.data), len(buffer))
            buffer[:count] = datagram.data[:count]
            return count, datagram.address, datagram.truncated or count < len(datagram.data)
        deadline = self._deadline(timeout)
        sock = self._sock
        flags = 0 if deadline is None else _DONTWAIT
        try:
            while True:
                try:
                    count, ancdata, msg_flags, address = sock.recvmsg_into(
                        [buffer], ANCILLARY_SIZE, flags
                    )
                    break
                except BlockingIOError:
                    self._wait_ready(_POLLIN, deadline)
        except TimeoutError as exc:
            raise ReadTimeout("receive timed out") from exc
        except OSError as exc:
            raise self._error(exc, "receive") from exc
        if not count and self._closed:
            raise ClosedResourceError("receive: the datagram socket was closed")
        if self._drops_known:
            self._drops.update(ancdata)
        return count, address, bool(msg_flags & _MSG_TRUNC)

    def __iter__(self) -> Iterator[Datagram]:
        """Datagrams until the socket is closed (by this or another thread); each wait uses
        the ``default_timeout`` (a timeout raises ReadTimeout)."""
        while not self._closed:
            try:
                yield self.receive()
            except ClosedResourceError:
                return

    # -- sending ----------------------------------------------------------------------------

    def send(
        self,
        data: bytes | bytearray | memoryview,
        to: Any = None,
        *,
        timeout: float = _UNSET,
    ) -> int:
        """Send ``data`` as one datagram.

        Args:
            data: the payload (empty is allowed: a zero-length datagram).
            to: the destination: ``"host:port"``, ``"[v6]:port"``, ``"unix:/path"``, a kernel
                address (``Datagram.address``), or ``None`` on a connected socket.

        Returns:
            The number of bytes sent (always ``len(data)``: a datagram goes whole or not at
            all).

        Raises:
            DatagramTooLarge: longer than the limit (``.size``, ``.limit``); nothing was sent.
            WriteTimeout: the send buffer stayed full until the deadline; nothing was sent.
            ConnectionRefused: (connected socket) an earlier datagram met an ICMP port
                unreachable.
            AddressError: ``to`` is malformed, does not resolve, is of the wrong family, or
                is missing on an unconnected socket.
            ClosedResourceError: the socket is closed.
        """
        if to is None and self._direct and timeout is _UNSET and self._remote is not None:
            try:
                return self._sock.send(data)
            except BlockingIOError:
                pass  # a socket made non-blocking behind our back: the waiting path polls
            except OSError as exc:
                raise self._error(exc, "send", len(memoryview(data).cast("B"))) from exc
        self._check_open()
        sock = self._sock
        if to is None:
            if self._remote is None:
                raise AddressError("send: no destination: give to=, or open with remote=")
            target = None
        else:
            target = self._destinations.lookup(to)
        deadline = self._deadline(timeout)
        flags = 0 if deadline is None else _DONTWAIT
        try:
            while True:
                try:
                    if target is None:
                        return sock.send(data, flags)
                    return sock.sendto(data, flags, target)
                except BlockingIOError:
                    self._wait_ready(_POLLOUT, deadline)
        except TimeoutError as exc:
            raise WriteTimeout("send timed out: the send buffer stayed full", sent=0) from exc
        except OSError as exc:
            raise self._error(exc, "send", len(memoryview(data).cast("B")), target) from exc

    # -- batches (sendmmsg/recvmmsg, GSO/GRO: socketkit/_udp_batch.py) -----------------------

    def send_many(
        self,
        datagrams: Sequence[Buffer | tuple[Buffer, Any]],
        *,
        to: Any = None,
        timeout: float = _UNSET,
    ) -> int:
        """Send each item as one datagram, many per system call (``sendmmsg``, with GSO where
        the kernel has it), waiting for room in the send buffer as needed.

        Args:
            datagrams: bytes-like payloads, or ``(payload, address)`` pairs (an address as
                for :meth:`send`); boundaries are kept: the peer receives exactly these.
            to: the destination of the items without their own (``None``: the connected
                remote).

        Returns:
            ``len(datagrams)``: every datagram went, in order.

        Raises:
            DatagramTooLarge: an item is over the limit; the items before it went, it and
                those after did not (``str(exc)`` says which size).
            WriteTimeout: the send buffer stayed full; ``sent`` is the number of *datagrams*
                that went (the first ``sent`` items).
            ConnectionRefused, AddressError, ClosedResourceError: as :meth:`send`.
        """
        self._check_open()
        items, target = prepare_batch(self._destinations, datagrams, to, self._remote is not None)
        deadline = self._deadline(timeout)
        sent = 0
        try:
            while sent < len(items):
                try:
                    sent += _batch.send_many(self._sock, items[sent:], target)
                except BlockingIOError:
                    self._wait_ready(_POLLOUT, deadline)
        except TimeoutError as exc:
            raise WriteTimeout(
                f"send_many timed out after {sent} of {len(items)} datagrams", sent=sent
            ) from exc
        except OSError as exc:
            raise self._error(exc, "send_many", payload_size(items[sent]), target) from exc
        return sent

    def receive_many(self, max: int = 64, *, timeout: float = _UNSET) -> list[Datagram]:
        """Wait for at least one datagram, then return every one queued, up to ``max`` kernel
        messages per call (``recvmmsg``; with GRO on, one message may carry several datagrams
        from one sender, split back here, so the list may be longer than ``max``).

        Returns:
            One or more :class:`Datagram` in arrival order (``truncated`` and
            ``dropped_before`` per datagram, as :meth:`receive`).

        Raises:
            ReadTimeout, ConnectionRefused, ClosedResourceError: as :meth:`receive`.
        """
        self._check_open()
        if max < 1:
            raise ValueError(f"max must be at least 1, not {max}")
        if self._pending:  # split from an earlier GRO read: they come first
            got = list(self._pending)
            self._pending.clear()
            return got
        deadline = self._deadline(timeout)
        try:
            while True:
                try:
                    got = _batch.receive_many(self._sock, max, self._max_size, drops=self._drops)
                except BlockingIOError:
                    self._wait_ready(_POLLIN, deadline)
                    continue
                if self._closed and not any(d.data for d in got):
                    raise ClosedResourceError("receive_many: the datagram socket was closed")
                return got
        except TimeoutError as exc:
            raise ReadTimeout("receive_many timed out") from exc
        except OSError as exc:
            raise self._error(exc, "receive_many") from exc

    # -- multicast (socketkit/_multicast.py) ------------------------------------------------

    def join(
        self, group: str, *, interface: str | int | None = None, source: str | None = None
    ) -> None:
        """Join multicast ``group`` (IPv4 or IPv6) on ``interface`` (a name such as ``"lo"``,
        an index, or a local address; ``None``: the kernel's choice); with ``source``, only
        that sender's datagrams (source-specific multicast). docs/multicast.md has the rest.

        Raises:
            AddressError: not a multicast group, a bad interface or source.
            SocketkitError: the kernel refused (one line, with the reason).
        """
        self._check_open()
        from .. import _multicast

        _multicast.join(self._sock, group, interface=interface, source=source)

    def leave(
        self, group: str, *, interface: str | int | None = None, source: str | None = None
    ) -> None:
        """Leave a group joined with :meth:`join` (the same arguments)."""
        self._check_open()
        from .. import _multicast

        _multicast.leave(self._sock, group, interface=interface, source=source)

    def set_multicast(
        self,
        *,
        ttl: int | None = None,
        loopback: bool | None = None,
        interface: str | int | None = None,
    ) -> None:
        """Options of the multicast datagrams this socket sends: ``ttl`` (hop limit for IPv6),
        ``loopback`` (whether our own host's members get them), the outgoing ``interface``.
        ``None`` leaves an option as it is."""
        self._check_open()
        from .. import _multicast

        _multicast.set_options(self._sock, ttl=ttl, loopback=loopback, interface=interface)

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket (idempotent). A thread blocked in ``receive`` gets
        ClosedResourceError; datagrams still queued are discarded; a Unix socket file this
        socket created is removed."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._direct = False
        sock = self._sock
        if self._owns_path:  # first: a receiver woken below may look for the file at once
            cleanup_path(sock)
        try:
            # Wakes a receive blocked in recvmsg (close alone would not); ENOTCONN on an
            # unconnected socket still wakes it (inet_shutdown), so the error is ignored.
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def __enter__(self) -> DatagramSocket:
        return self

    def __exit__(
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


# receive's and send's direct branches (no timeout, no default timeout; send on a connected
# socket), done in C where the extension is built: one recvmsg with the GIL released and the
# Datagram made there; one send, offered first without releasing the GIL.
accelerate(DatagramSocket, "receive", "SYNC_DGRAM_RECEIVE")
accelerate(DatagramSocket, "send", "SYNC_DGRAM_SEND")
