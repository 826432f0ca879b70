"""One exception tree for all of socketkit.

Every error socketkit raises is a :class:`SocketkitError`. ``OSError`` and ``ssl.SSLError``
from the operating system are translated in exactly one place (:func:`translate_os_error`) and
always chained (``raise ... from exc``), so the original errno is one ``__cause__`` away.

Errors that carry data already received (``partial``) never lose it: a timeout or an EOF in
the middle of ``receive_exactly``/``receive_until`` hands the bytes back on the exception.
"""

from __future__ import annotations

import errno as _errno
import sys
from collections.abc import Sequence

__all__ = [
    "AccessDenied",
    "AddressError",
    "BrokenStreamError",
    "ClosedResourceError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionRefused",
    "DatagramTooLarge",
    "DecodeError",
    "IncompleteReadError",
    "LocalProtocolError",
    "MissingDependency",
    "PermissionDenied",
    "ProtocolError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ResolutionError",
    "SocketkitError",
    "SocketkitTimeout",
    "TLSError",
    "WriteTimeout",
    "translate_os_error",
]


class SocketkitError(Exception):
    """Base of every error socketkit raises."""


# --- addresses -------------------------------------------------------------------------------


class AddressError(SocketkitError, ValueError):
    """An address string could not be parsed (bad syntax, port out of range)."""


class ResolutionError(AddressError):
    """A host name did not resolve to any address."""


# --- connecting ------------------------------------------------------------------------------


class ConnectError(SocketkitError):
    """Every connection attempt failed.

    ``attempts`` lists ``(address, exception)`` for every address that was tried, in the order
    they were started, so nothing about the failure is hidden behind the last error.
    """

    def __init__(self, message: str, attempts: Sequence[tuple[str, BaseException]] = ()) -> None:
        super().__init__(message)
        self.attempts: list[tuple[str, BaseException]] = list(attempts)


class ConnectionRefused(ConnectError):
    """The peer answered with a refusal (RST, ICMP port unreachable) on every address."""


# --- timeouts (also builtin TimeoutError, so ``except TimeoutError`` works) ---------------------


class SocketkitTimeout(SocketkitError, TimeoutError):
    """A socketkit operation ran out of time."""


class ConnectTimeout(SocketkitTimeout, ConnectError):
    """No address accepted the connection before the timeout."""

    def __init__(self, message: str, attempts: Sequence[tuple[str, BaseException]] = ()) -> None:
        ConnectError.__init__(self, message, attempts)


class ReadTimeout(SocketkitTimeout):
    """A receive ran out of time. ``partial`` holds the bytes it had already consumed.

    The stream stays usable: nothing was lost, and the bytes in ``partial`` are no longer in the
    stream's buffer (they are yours now).
    """

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class WriteTimeout(SocketkitTimeout):
    """A send ran out of time. ``sent`` is how many bytes of the data were handed to the kernel.

    After a write timeout the stream's state is unknown to the peer; close it.
    """

    def __init__(self, message: str, sent: int = 0) -> None:
        super().__init__(message)
        self.sent = sent


# --- the stream ------------------------------------------------------------------------------


class BrokenStreamError(SocketkitError):
    """The connection broke: reset by the peer, or writing after the peer closed."""


class ClosedResourceError(SocketkitError):
    """The stream, server or socket was already closed by this side."""


class IncompleteReadError(SocketkitError, EOFError):
    """The peer closed (EOF) before the requested data was complete.

    ``partial`` holds every byte received before the EOF (possibly ``b""``); ``expected`` is
    the number of bytes asked for, or ``None`` when reading up to a delimiter.
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        want = "a delimiter" if expected is None else f"{expected} bytes"
        super().__init__(f"peer closed the stream after {len(partial)} bytes, before {want}")
        self.partial = partial
        self.expected = expected


# --- datagrams -------------------------------------------------------------------------------


class DatagramTooLarge(SocketkitError):
    """A datagram was larger than the kernel lets through (``EMSGSIZE``); nothing was sent.

    ``size`` is the datagram's length and ``limit`` the largest that can go (the protocol's
    maximum payload, the path MTU minus headers, or a Unix socket's send buffer); ``reason``
    says which limit it is. Raised by a receive, it reports an earlier datagram that the
    path turned back (ICMP "fragmentation needed" on a connected socket): ``size`` is then 0
    (the kernel does not say which datagram).
    """

    def __init__(self, size: int, limit: int, reason: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"send: datagram of {size} bytes is too large: the limit is {limit} bytes ({reason})"
        )
        self.size = size
        self.limit = limit
        self.reason = reason


# --- protocol --------------------------------------------------------------------------------


class ProtocolError(SocketkitError):
    """A protocol rule was broken (framing, bench control protocol, ...)."""


class LocalProtocolError(ProtocolError):
    """You asked for something the protocol does not allow (e.g. a frame over the maximum)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol (oversize frame, missing delimiter, bad control message).

    ``partial`` holds buffered bytes that will no longer be delivered, when there are any.
    """

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class DecodeError(ProtocolError):
    """Bytes could not be decoded as the named layer; ``offset`` is where decoding failed."""

    def __init__(self, layer: str, offset: int, reason: str) -> None:
        super().__init__(f"{layer}: {reason} at offset {offset}")
        self.layer = layer
        self.offset = offset
        self.reason = reason


# --- security and the local system ------------------------------------------------------------


class TLSError(SocketkitError):
    """The TLS handshake or a TLS record failed (certificate, host name, protocol)."""


class AccessDenied(SocketkitError):
    """The peer is not allowed by an allow/deny list, or the peer refused us access."""


class PermissionDenied(SocketkitError, PermissionError):
    """The operating system refused: a privileged port, raw sockets without CAP_NET_RAW, ..."""


class MissingDependency(SocketkitError, ImportError):
    """An optional library or system package is needed; the message names it."""


_REFUSED = {_errno.ECONNREFUSED, _errno.EHOSTUNREACH, _errno.ENETUNREACH}
_BROKEN = {_errno.ECONNRESET, _errno.EPIPE, _errno.ECONNABORTED, _errno.ESHUTDOWN}
_PERM = {_errno.EACCES, _errno.EPERM}


def translate_os_error(exc: BaseException, action: str) -> SocketkitError:
    """Translate an OS-level exception into the socketkit tree. The caller chains it.

    ``action`` is a short phrase ("connect to 127.0.0.1:80", "receive") used in the message.
    Usage: ``raise translate_os_error(exc, "receive") from exc``.
    """
    if isinstance(exc, SocketkitError):
        return exc
    # ssl is imported only by code that uses TLS; if it is not loaded, this is no SSLError
    # (and the command line starts without paying for the import).
    ssl = sys.modules.get("ssl")
    if ssl is None:
        pass
    elif isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return TLSError(f"{action}: certificate verification failed: {detail}")
    elif isinstance(exc, ssl.SSLError):
        return TLSError(f"{action}: TLS error: {exc.reason or exc}")
    if isinstance(exc, TimeoutError):
        return SocketkitTimeout(f"{action}: timed out")
    if isinstance(exc, OSError):
        code = exc.errno
        text = exc.strerror or str(exc)
        if code in _REFUSED:
            return ConnectionRefused(f"{action}: {text}")
        if code in _BROKEN:
            return BrokenStreamError(f"{action}: {text}")
        if code in _PERM:
            return PermissionDenied(f"{action}: {text}")
        if code == _errno.EBADF:
            return ClosedResourceError(f"{action}: the socket is closed")
        return SocketkitError(f"{action}: {text}")
    return SocketkitError(f"{action}: {exc}")
