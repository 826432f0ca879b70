"""One connected socket (TCP, Unix, connected UDP, or TLS over TCP) as the relay sees it.

Non-blocking once the relay owns it: reads and writes raise :class:`BlockingIOError` when the
kernel (or the TLS layer) would block, whatever the socket type.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any

from .._addr import format_sockaddr
from .._errors import (
    BrokenStreamError,
    ConnectionRefused,
    RemoteProtocolError,
    translate_os_error,
)
from ..proto.tls import peer_already_closed

__all__ = ["Conn", "shown"]


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
        sock: a connected ``socket.socket`` or ``ssl.SSLSocket`` (handshake done).
        peer: the peer's address as shown to users (default: ``getpeername``, which fails
            once a fast peer has already gone).
        datagram: ``True`` for connected UDP (every read is one datagram).
    """

    def __init__(
        self, sock: socket.socket, *, datagram: bool = False, peer: str | None = None
    ) -> None:
        self.sock = sock
        self.datagram = datagram
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.fd = sock.fileno()
        self.peer = peer if peer is not None else _name(sock, peer=True)
        self.local = _name(sock, peer=False)
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
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError(errno.EAGAIN, "TLS wants I/O") from None
        except ssl.SSLZeroReturnError:
            return 0
        except ssl.SSLEOFError:
            return 0  # the peer closed TCP without a close_notify: EOF, as every netcat does
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
        try:
            return self.sock.send(view)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError(errno.EAGAIN, "TLS wants I/O") from None
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED and self.datagram:
                raise ConnectionRefused(
                    f"send to {self.peer}: port unreachable (ICMP), nothing listens there"
                ) from exc
            raise translate_os_error(exc, f"send to {self.peer}") from exc

    def pending(self) -> int:
        """Bytes the TLS layer has already decrypted (poll cannot see them)."""
        return self.sock.pending() if self.tls else 0  # type: ignore[attr-defined]

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
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        blocking = sock.getblocking()
        sock.setblocking(False)
        try:
            # SSL_shutdown sends our close_notify; waiting for the peer's is "want read",
            # and the TLS state stays usable for reading the rest of the peer's data.
            sock.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError as exc:
            if not peer_already_closed(exc):
                raise translate_os_error(exc, f"close_notify to {self.peer}") from exc
        except OSError as exc:
            raise translate_os_error(exc, f"close_notify to {self.peer}") from exc
        finally:
            if sock.fileno() >= 0:
                sock.setblocking(blocking)

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def tls_info(self) -> dict[str, Any] | None:
        """Version, cipher, ALPN and the peer certificate of a TLS connection."""
        if not self.tls:
            return None
        from .tls import describe_tls

        return describe_tls(self.sock)  # type: ignore[arg-type]


def _name(sock: socket.socket, *, peer: bool) -> str:
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return "?"
    text = shown(addr)
    return text if text != "unix:" else "unix:(unnamed)"
