"""TLS for netcat sessions: contexts from :mod:`socketkit._tls`, handshakes with a deadline,
and one-line failures (exit status 6)."""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from typing import Any

from .._errors import SocketkitTimeout, TLSError, translate_os_error
from .._tls import client_context, describe, fingerprint, server_context
from ..proto.tls import READ_CHUNK, TLSEngine
from .options import TlsOptions

__all__ = [
    "TlsSocket",
    "check_tls_files",
    "client_wrap",
    "describe_tls",
    "make_client_context",
    "make_server_context",
    "server_wrap",
    "tls_summary",
]

#: A TLS handshake that has not finished in 30 s is not going to.
HANDSHAKE_TIMEOUT = 30.0
#: Most ciphertext taken in from the peer while we wait for room to send ours.
HOLD_LIMIT = 16 << 20


#: The PEM block each file option must hold (RFC 7468): what ``--tls-cert`` and friends are
#: checked for before anything is bound or connected, so a wrong file is named as such.
_PEM_LABELS = {
    "--tls-cert": ("CERTIFICATE",),
    "--tls-key": ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
    "--tls-ca": ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CRL"),
    "--tls-client-ca": ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CRL"),
}


def check_tls_files(tls: TlsOptions) -> None:
    """Check that every file option names a readable PEM file with the right kind of block.

    Raises:
        OSError: one line naming the option and the file (exit status 9, a local file).
    """
    for option, path in (
        ("--tls-cert", tls.cert_file),
        ("--tls-key", tls.key_file),
        ("--tls-ca", tls.ca_file),
        ("--tls-client-ca", tls.client_ca_file),
    ):
        if path is None:
            continue
        try:
            with open(path, "rb") as fh:
                text = fh.read(4 << 20)
        except OSError as exc:
            raise OSError(f"cannot read {option} {path}: {exc.strerror}") from exc
        labels = _PEM_LABELS[option]
        if not any(f"-----BEGIN {label}-----".encode() in text for label in labels):
            raise OSError(
                f"{option} {path}: not a PEM file with a {labels[0].lower()} "
                f"(no '-----BEGIN {labels[0]}-----' line)"
            )
        if option in ("--tls-cert", "--tls-key") and (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or b"Proc-Type: 4,ENCRYPTED" in text
        ):
            # OpenSSL would ask for the pass phrase on the terminal (or hang without one).
            raise OSError(
                f"{option} {path}: the private key is encrypted, and socketkit takes no pass "
                f"phrase; decrypt it first (openssl pkey -in {path} -out key.pem)"
            )
        if option == "--tls-cert" and tls.key_file is None:
            keys = _PEM_LABELS["--tls-key"]
            if not any(f"-----BEGIN {label}-----".encode() in text for label in keys):
                raise OSError(f"--tls-cert {path}: has no private key; give it with --tls-key")


def _load_failure(exc: TLSError, tls: TlsOptions) -> OSError:
    """A certificate/key pair that OpenSSL refused to load is a local-file problem (exit 9),
    said in words rather than as an OpenSSL reason code."""
    text = str(exc)
    if "KEY_VALUES_MISMATCH" in text and tls.key_file is not None:
        return OSError(
            f"--tls-key {tls.key_file} does not match the certificate in --tls-cert {tls.cert_file}"
        )
    return OSError(text)


def make_client_context(tls: TlsOptions) -> ssl.SSLContext:
    """The client context for ``tls`` (files are loaded here, before connecting)."""
    check_tls_files(tls)
    try:
        return client_context(
            ca_file=tls.ca_file,
            # A pin is checked after the handshake (client_wrap), instead of a CA and the name.
            insecure=tls.insecure or tls.pin is not None,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            alpn=list(tls.alpn) or None,
        )
    except TLSError as exc:
        if str(exc).startswith("cannot load"):
            raise _load_failure(exc, tls) from exc
        raise


def client_wrap(
    sock: socket.socket,
    tls: TlsOptions,
    server_name: str | None,
    timeout: float | None,
    ctx: ssl.SSLContext | None = None,
    *,
    peer: str | None = None,
) -> TlsSocket:
    """Handshake as a client over connected ``sock``; returns the TLS socket (blocking).

    Raises:
        TLSError: bad CA/cert files, verification failure (wrong CA, wrong name, expired).
        SocketkitTimeout: the handshake did not finish within ``timeout`` (default 30 s).
    """
    if ctx is None:
        ctx = make_client_context(tls)
    name = tls.sni or server_name
    if name is not None and name.startswith("["):
        name = name.strip("[]")
    try:
        engine = TLSEngine(ctx, server_side=False, server_hostname=name)
    except (ssl.SSLError, ValueError) as exc:
        raise TLSError(f"TLS with {name or 'peer'}: {exc}") from exc
    wrapped = TlsSocket(sock, engine, peer=name or peer or "peer")
    wrapped.client_cert = tls.cert_file is not None
    wrapped.handshake(timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    if tls.pin is not None:
        _check_pin(wrapped, tls.pin)
        wrapped.pinned = True
    return wrapped


def _check_pin(wrapped: TlsSocket, pin: str) -> None:
    """The peer's certificate must be the pinned one; else nothing is sent (TLSError)."""
    der = wrapped.engine.ssl_object.getpeercert(binary_form=True)
    got = fingerprint(der) if der else None
    if got != pin:
        wrapped.sock.close()
        said = f"SHA-256 {got}" if got else "no certificate"
        raise TLSError(
            f"TLS with {wrapped.peer}: its certificate is {said}, not the pinned SHA-256 {pin}"
        )


def make_server_context(tls: TlsOptions) -> ssl.SSLContext:
    check_tls_files(tls)
    try:
        ctx = server_context(
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            alpn=list(tls.alpn) or None,
            client_ca_file=tls.client_ca_file,
        )
    except TLSError as exc:
        if str(exc).startswith("cannot load"):
            raise _load_failure(exc, tls) from exc
        raise
    # No TLS 1.3 session tickets: netcat-style clients (ncat --send-only, scripts) never read
    # after their handshake, so tickets sit unread in their receive queue and their close()
    # turns into a TCP RST that destroys the last data in flight. Nobody resumes a netcat
    # session, so the tickets buy nothing.
    ctx.num_tickets = 0
    return ctx


def server_wrap(
    sock: socket.socket,
    ctx: ssl.SSLContext,
    timeout: float | None = None,
    peer: str = "client",
) -> TlsSocket:
    """Handshake as a server over accepted ``sock`` (blocking, with a deadline)."""
    wrapped = TlsSocket(sock, TLSEngine(ctx, server_side=True), peer=peer)
    wrapped.handshake(timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    return wrapped


class TlsSocket:
    """TLS over a connected stream socket, driven through :class:`~socketkit.proto.tls.TLSEngine`
    (memory BIOs) rather than ``ssl.SSLSocket``.

    ``SSLSocket.unwrap()`` calls ``SSL_shutdown`` twice: the second call reads from the socket
    and, finding the peer's application data there (a banner, the rest of a transfer), fails
    with ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY`` and drops it. Owning the ciphertext, the
    engine sends our ``close_notify`` and keeps every byte the peer sends afterwards: a TLS
    half-close (RFC 8446 §6.1), as ``ncat --ssl`` and ``socat OPENSSL`` do.

    Non-blocking use (the relay): :meth:`recv_into` and :meth:`send` raise
    :class:`BlockingIOError` when the socket would block; :meth:`pending` says when decrypted
    bytes wait that ``poll`` cannot see.
    """

    def __init__(self, sock: socket.socket, engine: TLSEngine, *, peer: str) -> None:
        self.sock = sock
        self.engine = engine
        self.peer = peer
        self.family = sock.family
        #: A client that offered a certificate (a server asking for one is then not the cause).
        self.client_cert = True
        #: Plaintext received so far (a refused client certificate shows before any arrives).
        self.received = 0
        #: The peer's certificate was checked against --tls-pin (instead of a CA).
        self.pinned = False
        self._out = bytearray()  # ciphertext not yet taken by the kernel
        self._plain = b""  # decrypted bytes a short recv_into did not take
        self._eof = False  # the peer's EOF (close_notify or TCP FIN) was read
        self._more = False  # the engine may hold records poll cannot announce
        self._held = 0  # ciphertext taken in while waiting to send (see _flush_blocking)
        self._peer_fin = False

    # -- socket-like surface ------------------------------------------------------------
    def fileno(self) -> int:
        return self.sock.fileno()

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def getsockname(self) -> Any:
        return self.sock.getsockname()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self.engine.ssl_object

    # -- handshake ------------------------------------------------------------------------
    def handshake(self, timeout: float) -> None:
        """Complete the handshake on the (blocking) socket within ``timeout`` seconds.

        Raises:
            TLSError: an alert, a reset, an early EOF, a refused certificate (exit 6).
            SocketkitTimeout: the deadline passed (exit 5).
        """
        action = f"TLS handshake with {self.peer}"
        deadline = time.monotonic() + timeout
        obj = self.engine.ssl_object
        try:
            while True:
                try:
                    obj.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                self._flush_blocking(deadline)
                if done:
                    break
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = self.sock.recv(READ_CHUNK)
                self.engine.receive_data(data)
        except (ssl.SSLError, OSError) as exc:
            if isinstance(exc, ssl.SSLError):
                try:  # the alert OpenSSL queued tells the peer why (a missing certificate)
                    self._flush()
                except OSError:
                    pass
            failure = _tls_failure(exc, action)
            obj = self.engine.ssl_object
            if isinstance(failure, TLSError) and not obj.server_side and not self.client_cert:
                text = str(failure)
                if any(alert in text for alert in _CERT_ALERTS):
                    failure = TLSError(text + client_cert_hint(text, 0))
            raise failure from exc
        finally:
            if self.sock.fileno() >= 0:
                self.sock.settimeout(None)
        self.engine.handshake_done = True
        self._more = True  # the peer's first records may have come with its last handshake one

    def _flush_blocking(self, deadline: float | None) -> None:
        """Put every queued ciphertext byte on the wire, waiting for room up to ``deadline``.

        While it waits, what the peer sends is taken into the engine (up to
        :data:`HOLD_LIMIT` bytes), so a peer that writes before it reads cannot deadlock us.
        """
        self._out += self.engine.data_to_send()
        while self._out:
            try:
                sent = self.sock.send(self._out, socket.MSG_DONTWAIT)
            except BlockingIOError:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(errno.ETIMEDOUT, "timed out") from None
                events = select.POLLOUT
                if not self._peer_fin and self._held < HOLD_LIMIT:
                    events |= select.POLLIN
                poller = select.poll()
                poller.register(self.sock.fileno(), events)
                fired = poller.poll(-1 if left is None else int(left * 1000) + 1)
                if fired and fired[0][1] & select.POLLIN:
                    self._hold()
                continue
            del self._out[:sent]

    def _hold(self) -> None:
        try:
            chunk = self.sock.recv(READ_CHUNK, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        self.engine.receive_data(chunk)
        self._held += len(chunk)
        self._peer_fin = not chunk
        self._more = True

    def flush(self) -> bool:
        """Send queued ciphertext without blocking; True when nothing is left queued."""
        return self._flush()

    def _flush(self) -> bool:
        """Send queued ciphertext without blocking; True when nothing is left queued."""
        self._out += self.engine.data_to_send()
        while self._out:
            try:
                sent = self.sock.send(self._out, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            del self._out[:sent]
        return True

    # -- data -----------------------------------------------------------------------------
    def recv_into(self, view: memoryview) -> int:
        """Decrypted bytes into ``view``; 0 at the peer's EOF (close_notify, or a TCP FIN
        without one, as every netcat treats it). Raises BlockingIOError, TLSError, OSError."""
        if not self._plain and not self._eof:
            self._fill()
        if self._plain:
            n = min(len(view), len(self._plain))
            view[:n] = self._plain[:n]
            self._plain = self._plain[n:]
            self.received += n
            return n
        return 0

    def _fill(self) -> None:
        """Decrypt what the engine holds into ``_plain`` (up to READ_CHUNK bytes; ``_more``
        says records may be left), or set ``_eof``. BlockingIOError: nothing to read yet."""
        chunks: list[bytes] = []
        size = 0
        self._more = False
        while True:
            data = self.engine.read(READ_CHUNK)
            if data is None:
                self._held = 0  # whatever _hold took in has been decrypted
                if chunks:
                    break
                self._flush()  # a TLS 1.3 KeyUpdate answer, an alert
                chunk = self.sock.recv(READ_CHUNK, socket.MSG_DONTWAIT)  # BlockingIOError
                self.engine.receive_data(chunk)
                continue
            if not data:
                self._eof = True
                break
            chunks.append(data)
            size += len(data)
            if size >= READ_CHUNK:
                self._more = True  # poll cannot see the records still in the engine
                break
        self._flush()
        self._plain = b"".join(chunks)

    def send(self, view: memoryview) -> int:
        """Encrypt and send from ``view``; returns plaintext bytes taken. Raises
        BlockingIOError while earlier ciphertext still waits for room in the socket."""
        if not self._flush():
            raise BlockingIOError(errno.EAGAIN, "TLS records wait for the socket")
        taken = view[:READ_CHUNK]
        self.engine.write(taken)
        self._flush()
        return len(taken)

    def pending(self) -> int:
        """Decrypted (or decryptable) bytes that poll cannot announce."""
        if self._eof:
            return len(self._plain)  # after the peer's EOF nothing more is coming
        return len(self._plain) + int(self._more) + self.engine.ssl_object.pending()

    def wants_write(self) -> bool:
        """Ciphertext still waits for room in the socket."""
        return bool(self._out)

    def send_eof(self, deadline: float | None) -> None:
        """Send ``close_notify`` after everything queued; reading goes on (half-close)."""
        self.engine.send_eof()
        self._more = True  # the engine may hold decrypted bytes aside (TLSEngine.send_eof)
        self._flush_blocking(deadline)

    def drain(self, deadline: float | None) -> None:
        """Wait (up to ``deadline``) until every ciphertext byte was taken by the kernel."""
        self._flush_blocking(deadline)

    def close(self) -> None:
        self.sock.close()


#: What a server that wants a client certificate and got none answers (TLS 1.3: alert 116,
#: RFC 8446 §4.4.2.4; TLS 1.2: handshake_failure, RFC 5246 §7.4.6).
_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE")


def client_cert_hint(text: str, received: int) -> str:
    """For a client that offered no certificate: the advice to append to the error ``text``
    (``""`` if the failure does not look like a refused client certificate: an alert naming
    one, or the server breaking off before sending a byte)."""
    broke_off = received == 0 and any(
        word in text for word in ("EOF occurred", "reset", "TLS error", "closed")
    )
    if any(alert in text for alert in _CERT_ALERTS) or broke_off:
        return (
            "; the server may require a client certificate (give it with --tls-cert and --tls-key)"
        )
    return ""


def _tls_failure(exc: BaseException, action: str) -> TLSError | SocketkitTimeout:
    """A failed handshake: a timeout stays a timeout (exit 5); anything else (an alert, a
    reset, an early EOF) is a TLS failure (exit 6). The message names ``action`` once."""
    err = translate_os_error(exc, action)
    if isinstance(err, (TLSError, SocketkitTimeout)):
        return err
    return TLSError(str(err))


def describe_tls(sock: ssl.SSLSocket | ssl.SSLObject) -> dict[str, Any]:
    """:func:`socketkit._tls.describe`, plus ``verified`` and, for a certificate that was not
    verified (``--tls-insecure``: Python then decodes nothing of it), its subject, issuer and
    expiry read from the DER bytes, so the user sees what they chose to trust."""
    info = describe(sock)
    cert = info.get("peer_certificate")
    info["verified"] = cert is not None and sock.context.verify_mode != ssl.CERT_NONE
    if cert is not None and cert.get("not_after") is None:
        der = sock.getpeercert(binary_form=True)
        if der:
            cert.update(_decode_der(der))
    return info


def _decode_der(der: bytes) -> dict[str, Any]:
    """Subject, issuer and expiry of a DER certificate, in the form ``getpeercert`` uses for a
    verified one (``commonName=x``; ``Mar  3 12:00:00 2027 GMT``)."""
    try:
        from cryptography import x509
    except ImportError:  # a declared dependency; without it the fields stay unknown
        return {}
    try:
        parsed = x509.load_der_x509_certificate(der)
    except ValueError:
        return {}

    def name(value: x509.Name) -> str:
        return ", ".join(
            f"{getattr(attr.oid, '_name', attr.oid.dotted_string)}={attr.value!s}" for attr in value
        )

    # not_valid_after_utc since cryptography 42; the naive UTC not_valid_after before it.
    expires = getattr(parsed, "not_valid_after_utc", None) or parsed.not_valid_after
    return {
        "subject": name(parsed.subject),
        "issuer": name(parsed.issuer),
        "not_after": f"{expires:%b} {expires.day:2d} {expires:%H:%M:%S %Y} GMT",
    }


def tls_summary(info: dict[str, Any]) -> str:
    """One human line: ``TLSv1.3 TLS_AES_256_GCM_SHA384, ALPN h2, peer CN=...``."""
    parts = [f"{info.get('version')} {info.get('cipher')}"]
    parts.append(f"ALPN {info['alpn']}" if info.get("alpn") else "no ALPN")
    cert = info.get("peer_certificate")
    if cert:
        if info.get("pinned"):
            trust = "peer certificate (pinned: its SHA-256 is the one --tls-pin names) "
        elif info.get("verified") is False:
            trust = "peer certificate (not verified: --tls-insecure) "
        else:
            trust = "peer certificate "
        parts.append(
            trust
            + f"subject {cert['subject'] or '(empty)'}, issuer {cert['issuer'] or '(empty)'}, "
            f"expires {cert['not_after'] or 'unknown'}, SHA-256 {cert['sha256']}"
        )
    else:
        parts.append("no peer certificate")
    return "; ".join(parts)
