"""``socketkit.serve``: a threaded stream server that accepts in the background.

One accept thread (selector over every listener plus a wake-up pipe) and one thread per
connection. ``max_connections`` (512 by default) stops accepting while the limit is reached
(new clients wait in the kernel's backlog instead of being refused); ``max_connections_per_ip``
(256 by default) closes a connection at once when its source already has that many. A session
that cannot be started (no thread to be had) is closed and logged; the server goes on.
``close()`` stops accepting, lets handlers finish for a grace period, then shuts their sockets
down.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType

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
    DEFAULT_MAX_CONNECTIONS_SYNC,
    DEFAULT_MAX_PER_IP_SYNC,
    TLS_HANDSHAKE_TIMEOUT,
    PerIPCounter,
    bound_address,
    check_limit,
    server_tls_context,
)
from .._sockets import DEFAULT_BACKLOG, cleanup_unix_path, open_listeners, set_stream_options
from ..proto.tls import TLSEngine
from .stream import Stream

__all__ = ["Handler", "Server", "serve"]

log = logging.getLogger("socketkit.server")

#: A connection handler: called in its own thread with the accepted stream, which the server
#: closes when the handler returns.
Handler = Callable[[Stream], object]
#: Errors a handler may end with that are the peer's doing: logged quietly, not as bugs.
_PEER_ERRORS = (BrokenStreamError, IncompleteReadError, SocketkitTimeout, TLSError)


class Server:
    """A running server (returned by :func:`serve`). Use as a context manager."""

    def __init__(
        self,
        handler: Handler,
        listeners: list[socket.socket],
        *,
        max_connections: int | None,
        idle_timeout: float | None,
        tls: ssl.SSLContext | None,
        grace: float,
        max_connections_per_ip: int | None = None,
    ) -> None:
        self._handler = handler
        self._listeners = listeners
        # Read once: after close() the sockets are gone, the addresses stay answerable.
        self._addresses = [bound_address(sock) for sock in listeners]
        self._max = max_connections
        self._idle_timeout = idle_timeout
        self._tls = tls
        self._grace = grace
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_connections) if max_connections else None
        self._per_ip = PerIPCounter(max_connections_per_ip)
        #: Connections closed at once because their source was over ``max_connections_per_ip``.
        self.connections_refused = 0
        self._streams: set[Stream] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self.connections_accepted = 0
        for sock in listeners:
            sock.setblocking(False)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"socketkit-accept-{self.address}", daemon=True
        )
        self._acceptor.start()

    # -- public -----------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        """The bound address of the first listener (port 0 resolved to the real port)."""
        return self._addresses[0]

    @property
    def addresses(self) -> list[Address]:
        """Every bound address (``localhost`` binds 127.0.0.1 and ::1)."""
        return list(self._addresses)

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._streams)

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
        """Stop accepting; wait up to ``grace`` seconds (default: the server's) for handlers to
        finish, then shut the remaining connections down and wait for their threads.
        Idempotent."""
        if self._closing.is_set():
            self._closed.wait()
            return
        self._closing.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._acceptor.join()
        grace = self._grace if grace is None else grace
        end = time.monotonic() + grace
        for thread in self._handler_threads():
            thread.join(max(0.0, end - time.monotonic()))
        with self._lock:
            leftovers = list(self._streams)
        for stream in leftovers:
            try:
                stream.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._handler_threads():
            thread.join(5.0)
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._closed.set()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Server {self.address} active={self.active_connections}>"

    # -- internals --------------------------------------------------------------------------

    def _handler_threads(self) -> list[threading.Thread]:
        """Handler threads to wait for: all but the caller's own (a handler may call close)."""
        me = threading.current_thread()
        with self._lock:
            return [t for t in self._threads if t is not me]

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        for sock in self._listeners:
            sel.register(sock, selectors.EVENT_READ)
        try:
            while not self._closing.is_set():
                if self._slots is not None:
                    while not self._slots.acquire(timeout=0.1):
                        if self._closing.is_set():
                            return
                accepted = False
                try:
                    for key, _ in sel.select():
                        if key.fileobj is self._wake_r:
                            return
                        listener: socket.socket = key.fileobj  # type: ignore[assignment]
                        try:
                            conn, peer = listener.accept()
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError as exc:
                            # EMFILE and friends: log, back off, keep serving.
                            log.warning("accept failed: %s", translate_os_error(exc, "accept"))
                            time.sleep(ACCEPT_BACKOFF)
                            continue
                        accepted = self._start(conn, peer)
                        break
                finally:
                    if not accepted and self._slots is not None:
                        self._slots.release()
        finally:
            sel.close()
            for sock in self._listeners:
                cleanup_unix_path(sock)
                sock.close()

    def _start(self, conn: socket.socket, peer: object) -> bool:
        """Start ``conn``'s handler thread; ``False`` if it was closed instead (its source is
        over the per-IP limit, or no thread could be started), so its slot is free again."""
        key = PerIPCounter.key(peer)
        with self._lock:
            admitted = self._per_ip.admit(key)
            if not admitted:
                self.connections_refused += 1
        if not admitted:
            log.warning(
                "refused %s: max_connections_per_ip %s reached",
                format_sockaddr(peer),
                self._per_ip.limit,
            )
            conn.close()
            return False
        self.connections_accepted += 1
        thread = threading.Thread(target=self._run, args=(conn, key), daemon=True)
        thread.name = f"socketkit-conn-{self.connections_accepted}"
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or of threads
            with self._lock:
                self._threads.discard(thread)
                self._per_ip.release(key)
            log.warning("connection %s closed: %s", format_sockaddr(peer), exc)
            conn.close()
            time.sleep(ACCEPT_BACKOFF)  # let threads end before the next try
            return False
        return True

    def _run(self, conn: socket.socket, key: str | None) -> None:
        stream: Stream | None = None
        try:
            conn.setblocking(True)
            set_stream_options(conn)
            engine = None
            if self._tls is not None:
                engine = TLSEngine(self._tls, server_side=True)
                _server_handshake(conn, engine)
            stream = Stream(conn, tls=engine, default_timeout=self._idle_timeout)
            with self._lock:
                self._streams.add(stream)
            self._handler(stream)
        except _PEER_ERRORS as exc:
            log.info("connection %s ended: %s", _peer(conn), exc)
        except ClosedResourceError:
            pass
        except SocketkitError as exc:
            log.warning("connection %s failed: %s", _peer(conn), exc)
        except Exception:
            log.exception("handler for %s raised", _peer(conn))
        finally:
            if stream is not None:
                with self._lock:
                    self._streams.discard(stream)
                stream.close()
            else:
                conn.close()
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._per_ip.release(key)
            if self._slots is not None:
                self._slots.release()


def _peer(conn: socket.socket) -> str:
    try:
        return format_sockaddr(conn.getpeername())
    except OSError:
        return "(disconnected)"


def _server_handshake(conn: socket.socket, engine: TLSEngine) -> None:
    deadline = time.monotonic() + TLS_HANDSHAKE_TIMEOUT
    try:
        while True:
            try:
                done = engine.do_handshake()
            except TLSError:
                # Tell the client why (e.g. "certificate required"): send the alert OpenSSL
                # queued, best effort, instead of a bare close it would report as an EOF.
                with contextlib.suppress(OSError):
                    conn.sendall(engine.data_to_send())
                raise
            out = engine.data_to_send()
            if out:
                conn.sendall(out)
            if done:
                conn.settimeout(None)
                return
            conn.settimeout(max(1e-6, deadline - time.monotonic()))  # 0 = non-blocking
            data = conn.recv(65536)
            if not data:
                raise TLSError("TLS handshake failed: the client closed the connection")
            engine.receive_data(data)
    except TimeoutError as exc:
        raise TLSError("TLS handshake timed out") from exc
    except OSError as exc:
        raise translate_os_error(exc, "TLS handshake") from exc


def serve(
    handler: Handler,
    address: AddressLike,
    *,
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS_SYNC,
    max_connections_per_ip: int | None = DEFAULT_MAX_PER_IP_SYNC,
    idle_timeout: float | None = None,
    tls: bool | ssl.SSLContext = False,
    backlog: int = DEFAULT_BACKLOG,
    grace: float = DEFAULT_GRACE,
) -> Server:
    """Listen on ``address`` and handle each client in its own thread; returns at once.

    Args:
        handler: ``handler(stream)``; the stream is closed when it returns. Exceptions are
            logged on the ``socketkit.server`` logger, never fatal to the server.
        address: ``"host:port"``, ``":port"``/``port`` (every address), ``"unix:/path"``.
            Port 0 picks a free port: read it from ``server.address``.
        max_connections: at most this many handlers at once (default 512: each is a thread);
            more clients wait in the backlog. ``None``: no limit.
        max_connections_per_ip: at most this many connections from one IP address at once
            (default 256; IPv4-mapped IPv6 peers count as their IPv4 address); one more is
            closed as soon as it is accepted and logged. ``None``: no limit.
        idle_timeout: default timeout of every handler stream's receives and sends.
        tls: an ``ssl.SSLContext`` (see :func:`socketkit.server_context`), or ``True`` for an
            ephemeral self-signed certificate (its fingerprint is logged as a warning).
        backlog: the listen queue length.
        grace: seconds ``close()`` waits for handlers before shutting their sockets down.

    Raises:
        AddressError, PermissionDenied, SocketkitError: the address cannot be listened on.
    """
    check_limit("max_connections", max_connections)
    check_limit("max_connections_per_ip", max_connections_per_ip)
    ctx = server_tls_context(tls)
    listeners = open_listeners(parse_address(address), backlog=backlog)
    return Server(
        handler,
        listeners,
        max_connections=max_connections,
        max_connections_per_ip=max_connections_per_ip,
        idle_timeout=idle_timeout,
        tls=ctx,
        grace=grace,
    )
