"""``socketkit.serve_udp``: one datagram socket, one conversation per remote address.

UDP has no connections; a server that wants one session per client demultiplexes the
datagrams of its one socket by source address itself. One receiver thread reads the socket,
looks the source up in a :class:`~socketkit.proto.peers.PeerTable` and queues the datagram
on that peer's :class:`Conversation`; a new source (within ``max_peers`` and
``max_peers_per_ip``) gets a new conversation and its own handler thread. A conversation
whose peer is silent for ``idle_timeout`` seconds ends: its ``receive`` raises
:class:`~socketkit.ClosedResourceError` (iteration stops), and once its handler has returned
the address is free for a new conversation.
"""

from __future__ import annotations

import collections
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from .._addr import Address, AddressLike, format_sockaddr
from .._errors import (
    ClosedResourceError,
    ReadTimeout,
    SocketkitError,
    SocketkitTimeout,
    translate_os_error,
)
from .._server_common import DEFAULT_GRACE, bound_address, check_limit
from .._udp import SO_RXQ_OVFL, cleanup_path, datagram_error, open_udp_socket
from ..proto.peers import FULL, Peer, PeerTable

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "Conversation",
    "DatagramHandler",
    "UDPServer",
    "serve_udp",
]

log = logging.getLogger("socketkit.server")

#: A conversation whose peer has sent nothing for a minute is taken as gone. Long enough for
#: request/response protocols that retry on their own (TFTP's default timeout is 5 s, DNS's a
#: few), and shorter than a NAT's UDP mapping (at least 2 minutes, RFC 4787 REQ-5), so a
#: client that comes back after its mapping lapsed finds a fresh conversation.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Conversations at once on the sync server: each is a thread (its stack, its queue), as the
#: TCP server's ``max_connections``. A datagram from one more source is dropped and counted.
DEFAULT_MAX_PEERS_SYNC = 512
#: From one IP address at once: half the table, as the TCP server (a single source can take
#: every port it likes, so without this one host could fill the table).
DEFAULT_MAX_PEERS_PER_IP_SYNC = 256
#: Datagrams waiting in one conversation for its handler. A handler that falls behind loses
#: the newest datagrams (counted in ``Conversation.dropped``) instead of the server holding
#: an unbounded backlog: UDP senders must cope with loss anyway. 64 datagrams of 1,400 bytes
#: are 90 KiB a peer.
DEFAULT_MAX_QUEUE = 64
#: Bytes queued in all conversations together: the bound on memory whatever peers send
#: (``max_peers * max_queue`` datagrams of 64 KiB would be gigabytes). Over it, datagrams are
#: dropped and counted as for a full queue.
MAX_QUEUED_BYTES = 32 * 1024 * 1024
#: The receive buffer for one datagram: the largest UDP payload. A longer datagram (only a
#: Unix one can be) is dropped and counted, never handed over cut.
MAX_DATAGRAM = 65535
#: The same on a Unix datagram socket, where the sender's send buffer is the only limit:
#: more than a sender with the default buffer can send (212,992 bytes less 32), and less than
#: the asyncio server's event loop reads at once (asyncio 256 KiB, uvloop 256,000 bytes), so a
#: longer datagram is always seen as longer there too.
MAX_UNIX_DATAGRAM = 224 * 1024
#: Datagrams read per wake-up before the receiver looks at the clock (idle expiry) again.
RECEIVE_BURST = 64
#: At most one log line this often about peers refused for the limits (a flood of new
#: sources must not flood the log too); each line carries the count so far.
REFUSAL_LOG_INTERVAL = 10.0

_UNSET: Any = object()


class Conversation:
    """The datagrams of one remote address, handed to a :func:`serve_udp` handler.

    ``receive()`` returns the next datagram's bytes, waiting for it (``timeout``: seconds, or
    ``None`` to wait as long as the conversation lives; the server's ``idle_timeout`` ends it
    anyway). When the conversation ends (the peer was idle for ``idle_timeout``, ``close()``
    was called, or the server is closing), datagrams already queued are still returned, then
    ``receive`` raises :class:`~socketkit.ClosedResourceError` and iteration stops.

    ``send(data)`` sends one datagram to the peer from the server's socket (its address is
    the one the peer wrote to, so replies pass NATs and connected client sockets); it works
    until the server is closed, also after the conversation ended (a last reply).
    """

    __slots__ = (
        "_cond",
        "_queue",
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
        self._cond = threading.Condition(server._lock)
        self._queue: collections.deque[bytes] = collections.deque()
        #: The kernel's address of the peer: ``(host, port)``, ``(host, port, flow, scope)``,
        #: a Unix path.
        self.address = address
        #: The peer as text: ``127.0.0.1:5000``, ``[::1]:5000``, ``unix:/path``.
        self.peer = format_sockaddr("" if address is None else address)
        self.closed = False
        #: Datagrams from the peer dropped because the queue was full (``max_queue``).
        self.dropped = 0
        #: Datagrams received from / sent to the peer.
        self.received = 0
        self.sent = 0

    @property
    def local(self) -> Address:
        """The server's bound address."""
        return self._server.address

    def receive(self, *, timeout: float | None = _UNSET) -> bytes:
        """The next datagram from the peer.

        Raises:
            ReadTimeout: nothing came within ``timeout`` seconds (nothing was consumed).
            ClosedResourceError: the conversation ended and its queue is empty.
        """
        with self._cond:
            if not self._queue:
                if self.closed:
                    raise ClosedResourceError(f"the conversation with {self.peer} has ended")
                wait = None if timeout is _UNSET else timeout
                if not self._cond.wait_for(self._ready, wait):
                    raise ReadTimeout(f"receive from {self.peer}: no datagram within {timeout:g} s")
                if not self._queue:
                    raise ClosedResourceError(f"the conversation with {self.peer} has ended")
            data = self._queue.popleft()
            self._server._queued_bytes -= len(data)
            return data

    def _ready(self) -> bool:
        return bool(self._queue) or self.closed

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Send ``data`` as one datagram to the peer; returns its length.

        Raises:
            ClosedResourceError: the server is closed.
            DatagramTooLarge: longer than the kernel lets through (the error gives the limit).
        """
        if self._server._sock_closed:
            raise ClosedResourceError("the server is closed")
        if not self.address:
            raise SocketkitError(
                f"{self.peer} has no address (an unbound Unix datagram socket): "
                "nothing can be sent to it"
            )
        sock = self._server._sock
        try:
            sent = sock.sendto(data, self.address)
        except OSError as exc:
            if self._server._sock_closed:
                raise ClosedResourceError("the server is closed") from exc
            raise datagram_error(
                sock, exc, f"send to {self.peer}", len(data), to=self.address
            ) from exc
        self.sent += 1
        return sent

    def close(self) -> None:
        """End the conversation: receives return what is queued, then raise
        ClosedResourceError. The peer's address stays taken until the handler returns."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[bytes]:
        """Datagrams until the conversation ends."""
        while True:
            try:
                yield self.receive()
            except ClosedResourceError:
                return

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Conversation {self.peer} {state} queued={len(self._queue)}>"


#: ``handler(conversation)``, called in the conversation's own thread.
DatagramHandler = Callable[[Conversation], object]


class UDPServer:
    """A running :func:`serve_udp` server. Use as a context manager."""

    def __init__(
        self,
        handler: DatagramHandler,
        sock: socket.socket,
        *,
        idle_timeout: float | None,
        max_peers: int | None,
        max_peers_per_ip: int | None,
        max_queue: int,
        grace: float,
        owns_path: bool,
    ) -> None:
        self._handler = handler
        self._sock = sock
        self._sock_closed = False
        self._owns_path = owns_path
        self._address = bound_address(sock)
        self._max_queue = max_queue
        self._grace = grace
        self._lock = threading.Lock()
        self._table: PeerTable[Conversation] = PeerTable(
            max_peers=max_peers, max_peers_per_ip=max_peers_per_ip, idle_timeout=idle_timeout
        )
        self._threads: set[threading.Thread] = set()
        self._queued_bytes = 0
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._refusals_logged_at = -REFUSAL_LOG_INTERVAL
        #: Datagrams dropped because a conversation's queue (or all queues' bytes) was full,
        #: or it had ended; datagrams longer than the receive buffer (dropped too).
        self.datagrams_dropped = 0
        self.datagrams_truncated = 0
        self._receiver = threading.Thread(
            target=self._receive_loop, name=f"socketkit-udp-{self._address}", daemon=True
        )
        self._receiver.start()

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
        with self._lock:
            return len(self._table)

    @property
    def peers_accepted(self) -> int:
        """Conversations started so far."""
        return self._table.admitted

    @property
    def peers_refused(self) -> int:
        """Datagrams from new sources dropped because of ``max_peers``/``max_peers_per_ip``."""
        return self._table.refused

    def serve_forever(self) -> None:
        """Block until :meth:`close` is called (from a handler, a signal handler or another
        thread). Ctrl-C closes the server and re-raises ``KeyboardInterrupt``."""
        try:
            while not self._closed.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.close()
            raise

    def close(self, grace: float | None = None) -> None:
        """Stop receiving; end every conversation (handlers see ClosedResourceError once their
        queue is empty) and wait up to ``grace`` seconds (default: the server's) for the
        handlers to return, then close the socket. Idempotent."""
        if self._closing.is_set():
            self._closed.wait()
            return
        self._closing.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._receiver.join()
        with self._lock:
            for peer in self._table:
                if peer.value is not None:
                    peer.value.closed = True
                    peer.value._cond.notify_all()
        grace = self._grace if grace is None else grace
        end = time.monotonic() + grace
        for thread in self._handler_threads():
            thread.join(max(0.0, end - time.monotonic()))
        self._sock_closed = True
        if self._owns_path:
            cleanup_path(self._sock)
        self._sock.close()
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._closed.set()

    def __enter__(self) -> UDPServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<UDPServer {self.address} conversations={self.active_conversations}>"

    # -- internals --------------------------------------------------------------------------

    def _handler_threads(self) -> list[threading.Thread]:
        me = threading.current_thread()
        with self._lock:
            return [t for t in self._threads if t is not me]

    def _receive_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        sel.register(self._sock, selectors.EVENT_READ)
        limit = MAX_UNIX_DATAGRAM if self._sock.family == socket.AF_UNIX else MAX_DATAGRAM
        view = memoryview(bytearray(limit + 1))
        try:
            while not self._closing.is_set():
                with self._lock:
                    self._expire(time.monotonic())
                    due = self._table.next_expiry()
                timeout = None if due is None else max(0.0, due - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._wake_r:
                        return
                    self._receive_burst(view, limit)
        except Exception:  # a bug: say so, and let close() still work
            log.exception("UDP server %s: the receiver stopped", self._address)
        finally:
            sel.close()

    def _receive_burst(self, view: memoryview, limit: int) -> None:
        sock = self._sock
        flags = socket.MSG_DONTWAIT | socket.MSG_TRUNC
        for _ in range(RECEIVE_BURST):
            try:
                n, address = sock.recvfrom_into(view, limit + 1, flags)
            except BlockingIOError:
                return
            except (ConnectionRefusedError, ConnectionResetError):
                continue  # an ICMP error about an earlier reply: nothing to act on
            except OSError as exc:
                log.warning("UDP server %s: %s", self._address, translate_os_error(exc, "receive"))
                return
            if n > limit:  # MSG_TRUNC: n is the datagram's real length
                self.datagrams_truncated += 1
                log.warning(
                    "datagram of %d bytes from %s dropped: longer than %d",
                    n,
                    format_sockaddr("" if address is None else address),
                    limit,
                )
                continue
            data = bytes(view[:n])
            with self._lock:
                self._deliver(address, data, time.monotonic())

    def _deliver(self, address: Any, data: bytes, now: float) -> None:
        """Queue ``data`` for ``address``'s conversation, starting it if new (lock held)."""
        table = self._table
        peer = table.get(address)
        if peer is None:
            if self._closing.is_set():
                return
            got = table.admit(address, now)
            if not isinstance(got, Peer):
                self._refused(address, got, now)
                return
            peer = got
            if not self._start(peer):
                return
        else:
            table.touch(peer, now)
        conv = peer.value
        assert conv is not None
        if (
            conv.closed
            or len(conv._queue) >= self._max_queue
            or self._queued_bytes + len(data) > MAX_QUEUED_BYTES
        ):
            conv.dropped += 1
            self.datagrams_dropped += 1
            return
        conv._queue.append(data)
        conv.received += 1
        self._queued_bytes += len(data)
        conv._cond.notify()

    def _refused(self, address: Any, why: str, now: float) -> None:
        if now - self._refusals_logged_at < REFUSAL_LOG_INTERVAL:
            return
        self._refusals_logged_at = now
        limit = self._table.max_peers if why == FULL else self._table.max_peers_per_ip
        log.warning(
            "datagrams from %s dropped: %s %s reached (%d new peers refused so far)",
            format_sockaddr(address),
            why,
            limit,
            self._table.refused,
        )

    def _expire(self, now: float) -> None:
        for peer in self._table.expire(now):
            conv = peer.value
            if conv is not None:
                conv.closed = True
                conv._cond.notify_all()

    def _start(self, peer: Peer[Conversation]) -> bool:
        conv = Conversation(self, peer.address)
        peer.value = conv
        thread = threading.Thread(target=self._run, args=(peer,), daemon=True)
        thread.name = f"socketkit-udp-conversation-{self._table.admitted}"
        self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or threads
            self._threads.discard(thread)
            self._table.remove(peer)
            log.warning("conversation with %s not started: %s", conv.peer, exc)
            return False
        return True

    def _run(self, peer: Peer[Conversation]) -> None:
        conv = peer.value
        assert conv is not None
        try:
            self._handler(conv)
        except ClosedResourceError:
            pass
        except SocketkitTimeout as exc:
            log.info("conversation with %s ended: %s", conv.peer, exc)
        except SocketkitError as exc:
            log.warning("conversation with %s failed: %s", conv.peer, exc)
        except Exception:
            log.exception("handler for %s raised", conv.peer)
        finally:
            with self._lock:
                conv.closed = True
                self._queued_bytes -= sum(len(d) for d in conv._queue)
                conv._queue.clear()
                self._table.remove(peer)
                self._threads.discard(threading.current_thread())


def _no_drop_counter(sock: socket.socket) -> None:
    """Turn SO_RXQ_OVFL off again: the servers read with recvfrom (no control messages),
    so the kernel's per-datagram drop count would only cost time."""
    if sock.family != socket.AF_UNIX:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 0)
        except OSError:
            pass


def serve_udp(
    handler: DatagramHandler,
    address: AddressLike,
    *,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    max_peers: int | None = DEFAULT_MAX_PEERS_SYNC,
    max_peers_per_ip: int | None = DEFAULT_MAX_PEERS_PER_IP_SYNC,
    max_queue: int = DEFAULT_MAX_QUEUE,
    reuse_port: bool = False,
    receive_buffer: int | None = None,
    send_buffer: int | None = None,
    grace: float = DEFAULT_GRACE,
) -> UDPServer:
    """Bind a datagram socket at ``address`` and run ``handler(conversation)`` in a thread for
    each remote address that writes to it; returns at once.

    Args:
        handler: called with a :class:`Conversation` in its own thread; the conversation ends
            when it returns. Exceptions are logged on the ``socketkit.server`` logger, never
            fatal to the server.
        address: ``"host:port"``, ``":port"``/``port`` (every address, IPv4 and IPv6),
            ``"unix:/path"``, ``"unix:@name"``. Port 0 picks a free port: read
            ``server.address``.
        idle_timeout: seconds without a datagram from the peer after which its conversation
            ends (default 60). ``None``: never (then only ``max_peers`` bounds the table).
        max_peers: conversations (threads) at once (default 512). A datagram from one more
            source is dropped, counted in ``peers_refused`` and logged (at most every 10 s).
        max_peers_per_ip: conversations from one IP address (default 256; IPv4-mapped IPv6
            counts as IPv4).
        max_queue: datagrams waiting for one handler (default 64); more are dropped and
            counted in ``Conversation.dropped`` and ``server.datagrams_dropped``.
        reuse_port, receive_buffer, send_buffer: as for :func:`socketkit.udp`.
        grace: seconds ``close()`` waits for handlers to return.

    Raises:
        AddressError, PermissionDenied, SocketkitError: the address cannot be bound.
    """
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
    return UDPServer(
        handler,
        sock,
        idle_timeout=idle_timeout,
        max_peers=max_peers,
        max_peers_per_ip=max_peers_per_ip,
        max_queue=max_queue,
        grace=grace,
        owns_path=owns_path,
    )
