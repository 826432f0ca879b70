"""TLS as a sans-I/O engine: ciphertext in, plaintext out, over ``ssl.MemoryBIO``.

Both the sync and the asyncio streams drive this one engine, so TLS behaves the same on both,
and — unlike ``ssl.SSLSocket`` and asyncio's SSL transport — it supports half-close:
:meth:`TLSEngine.send_eof` sends ``close_notify`` and the stream can still read what the peer
sends afterwards (RFC 8446 §6.1 lets each side close its write direction independently).
"""

from __future__ import annotations

import ssl
from typing import Any

from .._errors import TLSError, translate_os_error

#: Largest plaintext read from the engine at once (a TLS record is at most 16 KiB).
READ_CHUNK = 256 * 1024


def peer_already_closed(exc: ssl.SSLError) -> bool:
    """True when sending ``close_notify`` failed only because the peer had already closed the
    connection (TCP EOF, with or without its own ``close_notify``): not worth an error."""
    return isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) or (
        exc.reason == "UNEXPECTED_EOF_WHILE_READING"
    )


class TLSEngine:
    """One side of a TLS connection, with no socket."""

    __slots__ = (
        "_incoming",
        "_obj",
        "_outgoing",
        "_plain",
        "_ragged",
        "eof_sent",
        "handshake_done",
        "info",
        "receive_buffer",
    )

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.handshake_done = False
        self.eof_sent = False
        #: Plaintext decrypted before :meth:`send_eof` and not yet read (see there).
        self._plain = b""
        self._ragged = False  # the transport ended without the peer's close_notify
        #: Scratch space an I/O backend may receive ciphertext into (the engine never uses it;
        #: kept here so connections without TLS carry no slot for it).
        self.receive_buffer: bytearray | None = None
        #: What was negotiated (``socketkit.describe_tls``), set when the handshake completes.
        self.info: dict[str, Any] = {}

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._obj

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Ciphertext from the peer; ``b""`` means the transport reached EOF."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def data_to_send(self) -> bytes:
        """Ciphertext to put on the wire now (possibly ``b""``)."""
        return self._outgoing.read()

    def do_handshake(self) -> bool:
        """Advance the handshake. True when complete; False when it needs more peer data.

        Raises:
            TLSError: the handshake failed (certificate, host name, protocol).
        """
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except (ssl.SSLError, OSError) as exc:
            raise translate_os_error(exc, "TLS handshake") from exc
        self.handshake_done = True
        from .._tls import describe

        self.info = describe(self._obj)
        return True

    def read(self, size: int = READ_CHUNK) -> bytes | None:
        """Plaintext: ``None`` if more ciphertext is needed, ``b""`` at the peer's EOF.

        A peer that closes TCP without ``close_notify`` (common: netcats, ``openssl
        s_client``) is treated as EOF too, as ``ssl``'s ``suppress_ragged_eofs`` does.
        """
        if self._plain:
            data, self._plain = self._plain[:size], self._plain[size:]
            return data
        try:
            return self._obj.read(size)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLEOFError:
            self._ragged = True
            return b""
        except ssl.SSLError as exc:
            raise TLSError(f"TLS error while receiving: {exc.reason or exc}") from exc

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data``; fetch the ciphertext with :meth:`data_to_send`."""
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise TLSError(f"TLS error while sending: {exc.reason or exc}") from exc

    def send_eof(self) -> None:
        """Queue ``close_notify`` (our write direction ends; reading goes on)."""
        if self.eof_sent:
            return
        self.eof_sent = True
        if self._ragged:
            # The peer's TCP EOF came without close_notify: OpenSSL has marked the connection
            # failed (SSL_shutdown would say SHUTDOWN_WHILE_IN_INIT), and nobody is left to
            # tell.
            return
        # unwrap() calls SSL_shutdown a second time to read the peer's close_notify; finding
        # the peer's unread records instead, it fails (APPLICATION_DATA_AFTER_CLOSE_NOTIFY) and
        # they are lost. Hold them aside: with nothing to read it just wants more data. The
        # same holds for the rest of a record a short read() left inside OpenSSL: take it out.
        if self._obj.pending():
            self._plain += self._obj.read(self._obj.pending())
        unread = self._incoming.read()
        try:
            self._obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError as exc:
            if peer_already_closed(exc):
                return  # nobody is left to tell
            raise TLSError(f"TLS error while closing: {exc.reason or exc}") from exc
        finally:
            if unread:
                self._incoming.write(unread)
