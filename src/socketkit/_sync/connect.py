"""``socketkit.connect``: Happy Eyeballs (RFC 8305) over every resolved address, then TLS."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import time

from .._addr import AddressLike, format_sockaddr, parse_address, resolve
from .._connect_common import (
    DEFAULT_CONNECT_TIMEOUT,
    HAPPY_EYEBALLS_DELAY,
    connect_failure,
    tls_context_for,
)
from .._errors import ConnectTimeout, SocketkitError, TLSError, translate_os_error
from .._sockets import set_stream_options
from ..proto.tls import TLSEngine
from .stream import Stream

__all__ = ["connect"]

_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}


def connect(
    address: AddressLike,
    *,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    tls: bool | ssl.SSLContext = False,
    server_hostname: str | None = None,
    source: AddressLike | None = None,
    family: int = socket.AF_UNSPEC,
    numeric: bool = False,
    happy_eyeballs_delay: float = HAPPY_EYEBALLS_DELAY,
    default_timeout: float | None = None,
) -> Stream:
    """Connect to ``address`` and return a :class:`Stream`.

    Args:
        address: ``"host:port"``, ``"[v6]:port"``, ``("host", port)`` or ``"unix:/path"``.
        timeout: for the whole connect, TLS handshake included (``None``: no limit).
        tls: ``True`` for a verifying client context, or your own ``ssl.SSLContext``.
        server_hostname: name for SNI and verification (default: the host of ``address``).
        source: local address to bind first (``"addr:port"``, port 0 = any).
        family: ``socket.AF_INET`` or ``AF_INET6`` to use only that family.
        numeric: the host is a numeric address; never ask DNS.
        happy_eyeballs_delay: seconds before the next address is tried in parallel.
        default_timeout: the stream's default per-operation timeout.

    Raises:
        AddressError / ResolutionError: bad address, or the name does not resolve.
        ConnectionRefused: every address refused. ``ConnectTimeout``: none answered in time.
        ConnectError: a mix of failures; ``.attempts`` lists every address and its error.
        TLSError: the handshake or the certificate check failed.
    """
    target = parse_address(address)
    deadline = None if timeout is None else time.monotonic() + timeout
    if target.path is not None:
        sock = _connect_unix(target.path, timeout)
    else:
        infos = resolve(target, family=family, numeric=numeric)
        src = parse_address(source) if source is not None else None
        sock = happy_eyeballs(str(target), infos, deadline, happy_eyeballs_delay, src)
    set_stream_options(sock)
    engine = None
    try:
        ctx = tls_context_for(tls)
        if ctx is not None:
            engine = TLSEngine(
                ctx, server_side=False, server_hostname=server_hostname or target.host
            )
            _handshake(sock, engine, deadline)
        sock.settimeout(None)
        return Stream(sock, tls=engine, default_timeout=default_timeout)
    except BaseException:
        sock.close()
        raise


def _connect_unix(path: str, timeout: float | None) -> socket.socket:
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pause = 0.001
    try:
        while True:
            sock.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
            try:
                sock.connect(path)
                return sock
            except BlockingIOError:
                # EAGAIN: the listener's backlog is full (unix(7)). A blocking connect waits for
                # room; with a timeout the socket is non-blocking, so wait and retry here.
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError from None
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
    except TimeoutError as exc:
        sock.close()
        raise ConnectTimeout(f"cannot connect to {format_sockaddr(path)}: timed out") from exc
    except OSError as exc:
        sock.close()
        raise translate_os_error(exc, f"cannot connect to {format_sockaddr(path)}") from exc


def happy_eyeballs(
    shown: str,
    infos: list[tuple[int, tuple[object, ...]]],
    deadline: float | None,
    delay: float,
    source: object,
) -> socket.socket:
    """Start an attempt; start the next one after ``delay`` or as soon as one fails; the first
    to connect wins and every other socket is closed. Every failure is kept. Returns a
    blocking, connected TCP socket (RFC 8305; also used by ``socketkit connect``)."""
    from .._addr import Address

    pending = list(infos)
    failures: list[tuple[str, BaseException]] = []
    active: dict[socket.socket, str] = {}
    sel = selectors.DefaultSelector()
    next_start = 0.0
    timed_out = False
    try:
        while pending or active:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if pending and (not active or now >= next_start):
                family, sockaddr = pending.pop(0)
                where = format_sockaddr(sockaddr)
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    if isinstance(source, Address):
                        sock.bind((source.host or ("::" if family == socket.AF_INET6 else
                                                   "0.0.0.0"), source.port))  # fmt: skip
                    err = sock.connect_ex(sockaddr)
                except OSError as exc:
                    sock.close()
                    failures.append((where, exc))
                    continue
                if err == 0:
                    return sock
                if err not in _IN_PROGRESS:
                    sock.close()
                    failures.append((where, OSError(err, _strerror(err))))
                    continue
                active[sock] = where
                sel.register(sock, selectors.EVENT_WRITE)
                next_start = now + delay
            wait = None if deadline is None else deadline - now
            if pending:
                until_next = max(0.0, next_start - now)
                wait = until_next if wait is None else min(wait, until_next)
            for key, _ in sel.select(wait):
                sock = key.fileobj  # type: ignore[assignment]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                where = active.pop(sock)
                sel.unregister(sock)
                if err == 0:
                    for other in active:
                        other.close()
                    active.clear()
                    sock.setblocking(True)
                    return sock
                sock.close()
                failures.append((where, OSError(err, _strerror(err))))
                next_start = 0.0  # a failure starts the next attempt at once
    finally:
        for sock in active:
            sock.close()
        sel.close()
    raise connect_failure(shown, failures, timed_out=timed_out)


def _strerror(err: int) -> str:
    return os.strerror(err)


def _remaining(deadline: float | None) -> float | None:
    """Seconds left; never 0, which would make the socket non-blocking (BlockingIOError, not
    TimeoutError)."""
    return None if deadline is None else max(1e-6, deadline - time.monotonic())


def _handshake(sock: socket.socket, engine: TLSEngine, deadline: float | None) -> None:
    try:
        while True:
            done = engine.do_handshake()
            out = engine.data_to_send()
            if out:
                sock.settimeout(_remaining(deadline))
                sock.sendall(out)
            if done:
                return
            sock.settimeout(_remaining(deadline))
            data = sock.recv(65536)
            if not data:
                raise TLSError("TLS handshake failed: the peer closed the connection")
            engine.receive_data(data)
    except TimeoutError as exc:
        raise ConnectTimeout("TLS handshake timed out") from exc
    except SocketkitError:
        raise
    except OSError as exc:
        raise translate_os_error(exc, "TLS handshake") from exc
