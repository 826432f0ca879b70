"""One connected socket (TCP, Unix, connected UDP, or TLS over TCP) as the relay sees it.

Non-blocking once the relay owns it: reads and writes raise :class:`BlockingIOError` when the
kernel (or the TLS layer) would block, whatever the socket type.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from .._addr import format_sockaddr
from .._errors import (
    BrokenStreamError,
    ConnectionRefused,
    RemoteProtocolError,
    SocketkitError,
    SocketkitTimeout,
    TLSError,
    translate_os_error,
)
from .tls import HANDSHAKE_TIMEOUT, TlsSocket, client_cert_hint

__all__ = ["Conn", "peer_name", "shown"]


def shown(addr: object) -> str:
    """An address as users read it; IPv4-mapped IPv6 (``::ffff:a.b.c.d``, what a dual-stack
    listener sees for IPv4 peers) is shown as plain IPv4. ``None`` is a Unix datagram sender
    that bound no address."""
    if addr is None:
        return "unix:(no address)"
    if isinstance(addr, tuple) and len(addr) >= 2 and str(addr[0]).startswith("::ffff:"):
        host = str(addr[0])[7:]
        if host.count(".") == 3:
            return f"{host}:{addr[1]}"
    return format_sockaddr(addr)


class Conn:
    """A connected socket.

    Args:
        sock: a connected ``socket.socket``, or a :class:`~socketkit.netcat.tls.TlsSocket`
            (handshake done).
        peer: the peer's address as shown to users (default: ``getpeername``, which fails
            once a fast peer has already gone).
        datagram: ``True`` for connected UDP (every read is one datagram).
    """

    def __init__(
        self,
        sock: socket.socket | TlsSocket,
        *,
        datagram: bool = False,
        peer: str | None = None,
    ) -> None:
        #: The TLS layer, or None; :attr:`sock` is always the kernel socket under it.
        self.tls_sock = sock if isinstance(sock, TlsSocket) else None
        self.sock: socket.socket = sock.sock if isinstance(sock, TlsSocket) else sock
        self.datagram = datagram
        self.tls = self.tls_sock is not None
        self.fd = sock.fileno()
        self.peer = peer if peer is not None else _name(self.sock, peer=True)
        self.local = _name(self.sock, peer=False)
        self._closed = False
        self._write_shut = False

    @property
    def proto(self) -> str:
        if self.sock.family == socket.AF_UNIX:
            return "unixgram" if self.datagram else "unix"
        return "udp" if self.datagram else "tcp"

    def fileno(self) -> int:
        return self.fd

    def set_blocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def recv_into(self, view: memoryview) -> int:
        """Receive into ``view``; 0 means EOF (never for UDP). Raises BlockingIOError, and
        RemoteProtocolError for a datagram longer than ``view`` (never cut silently)."""
        if self.tls_sock is not None:
            try:
                return self.tls_sock.recv_into(view)
            except BlockingIOError:
                raise
            except (TLSError, OSError) as exc:
                raise self._tls_error(exc, "receive from") from exc
        try:
            if self.datagram:
                count = self.sock.recv_into(view, 0, socket.MSG_TRUNC)  # the real size
                if count > len(view):
                    raise RemoteProtocolError(
                        f"receive from {self.peer}: a datagram of {count} bytes is longer "
                        f"than the {len(view)}-byte receive buffer"
                    )
                return count
            return self.sock.recv_into(view)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED and self.datagram:
                raise ConnectionRefused(
                    f"receive from {self.peer}: port unreachable (ICMP), nothing listens there"
                ) from exc
            raise translate_os_error(exc, f"receive from {self.peer}") from exc

    def send(self, view: memoryview) -> int:
        """Send from ``view``; returns bytes taken. Raises BlockingIOError."""
        if self.tls_sock is not None:
            try:
                return self.tls_sock.send(view)
            except BlockingIOError:
                raise
            except (TLSError, OSError) as exc:
                raise self._tls_error(exc, "send to") from exc
        try:
            return self.sock.send(view)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED and self.datagram:
                raise ConnectionRefused(
                    f"send to {self.peer}: port unreachable (ICMP), nothing listens there"
                ) from exc
            raise translate_os_error(exc, f"send to {self.peer}") from exc

    def wants_write(self) -> bool:
        """TLS records wait for room in the socket (see :meth:`flush`)."""
        return self.tls_sock is not None and self.tls_sock.wants_write()

    def flush(self) -> bool:
        """Put queued TLS records on the wire without blocking; True when none are left
        (always for a plain socket: the kernel took every byte :meth:`send` reported)."""
        if self.tls_sock is None or not self.tls_sock.wants_write():
            return True
        try:
            return self.tls_sock.flush()
        except OSError as exc:
            raise self._tls_error(exc, "send to") from exc

    def pending(self) -> int:
        """Bytes the TLS layer has already decrypted (poll cannot see them)."""
        return self.tls_sock.pending() if self.tls_sock is not None else 0

    def shutdown_write(self) -> None:
        """Send our EOF (TCP FIN) and keep receiving. Idempotent; a no-op for UDP.

        For TLS it is a close_notify alert: in TLS 1.3 that closes only our sending side
        (RFC 8446 §6.1) and the peer may keep sending; a bare TCP FIN under TLS is a
        truncation attack to a strict peer (openssl s_server answers with an alert).
        """
        if self._write_shut or self._closed or self.datagram:
            return
        self._write_shut = True
        if self.tls:
            self._close_notify()
            return
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError as exc:
            if exc.errno not in (errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET):
                raise BrokenStreamError(f"shutdown to {self.peer}: {exc.strerror}") from exc

    def _close_notify(self) -> None:
        sock = self.tls_sock
        assert sock is not None
        try:
            sock.send_eof(time.monotonic() + HANDSHAKE_TIMEOUT)
        except OSError as exc:
            if exc.errno in (errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET):
                return  # the peer is gone: nobody is left to tell
            raise self._tls_error(exc, "close_notify to") from exc
        except TLSError as exc:
            raise self._tls_error(exc, "close_notify to") from exc

    def _tls_error(self, exc: BaseException, action: str) -> SocketkitError:
        """A failed TLS session as one line naming the peer. A client that offered no
        certificate and got nothing before the server broke off is told why that may be."""
        where = f"{action} {self.peer}"
        if isinstance(exc, TimeoutError):
            return SocketkitTimeout(
                f"{where}: the peer took no data for {HANDSHAKE_TIMEOUT:g} s; giving up"
            )
        if isinstance(exc, TLSError):
            err: SocketkitError = TLSError(f"{where}: {exc}")
        else:
            err = translate_os_error(exc, where)
        sock = self.tls_sock
        assert sock is not None
        if not sock.engine.ssl_object.server_side and not sock.client_cert:
            hint = client_cert_hint(str(err), sock.received)
            if hint:
                return TLSError(str(err) + hint)
        return err

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tls = self.tls_sock
        if tls is not None:
            # A session that ends by policy (the peer's EOF, -q, an idle timeout) ends with
            # our close_notify too: a bare TCP FIN is a truncation to a strict peer.
            queued = tls.wants_write()
            if not self._write_shut and not self.datagram:
                self._write_shut = True
                try:
                    tls.engine.send_eof()
                except TLSError:
                    pass  # the TLS session already failed: nothing to close politely
            try:
                if queued:  # the last records of the session: worth a short wait
                    tls.drain(time.monotonic() + 5.0)
                else:
                    tls.flush()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass

    def tls_info(self) -> dict[str, Any] | None:
        """Version, cipher, ALPN and the peer certificate of a TLS connection."""
        if not self.tls:
            return None
        from .tls import describe_tls

        assert self.tls_sock is not None
        info = describe_tls(self.tls_sock.ssl_object)
        if self.tls_sock.pinned:
            info["pinned"] = True
        return info


def peer_name(sock: socket.socket) -> str:
    """The peer of connected ``sock`` as users read it (``?`` once it is gone)."""
    return _name(sock, peer=True)


def _name(sock: socket.socket, *, peer: bool) -> str:
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return "?"
    text = shown(addr)
    return text if text != "unix:" else "unix:(unnamed)"
