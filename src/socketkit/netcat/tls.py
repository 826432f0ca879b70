"""TLS for netcat sessions: contexts from :mod:`socketkit._tls`, handshakes with a deadline,
and one-line failures (exit status 6)."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from .._errors import SocketkitTimeout, TLSError, translate_os_error
from .._tls import client_context, describe, server_context
from .options import TlsOptions

__all__ = [
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
            insecure=tls.insecure,
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
) -> ssl.SSLSocket:
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
    sock.settimeout(timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    try:
        wrapped = ctx.wrap_socket(sock, server_hostname=name)
    except (ssl.SSLError, OSError) as exc:
        raise _tls_failure(exc, f"TLS handshake with {name or 'peer'}") from exc
    wrapped.settimeout(None)
    return wrapped


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
) -> ssl.SSLSocket:
    """Handshake as a server over accepted ``sock`` (blocking, with a deadline)."""
    sock.settimeout(timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    try:
        wrapped = ctx.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        raise _tls_failure(exc, f"TLS handshake with {peer}") from exc
    wrapped.settimeout(None)
    return wrapped


def _tls_failure(exc: BaseException, action: str) -> TLSError | SocketkitTimeout:
    """A failed handshake: a timeout stays a timeout (exit 5); anything else (an alert, a
    reset, an early EOF) is a TLS failure (exit 6). The message names ``action`` once."""
    err = translate_os_error(exc, action)
    if isinstance(err, (TLSError, SocketkitTimeout)):
        return err
    return TLSError(str(err))


def describe_tls(sock: ssl.SSLSocket) -> dict[str, Any]:
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
        unverified = info.get("verified") is False
        parts.append(
            (
                "peer certificate (not verified: --tls-insecure) "
                if unverified
                else "peer certificate "
            )
            + f"subject {cert['subject'] or '(empty)'}, issuer {cert['issuer'] or '(empty)'}, "
            f"expires {cert['not_after'] or 'unknown'}, SHA-256 {cert['sha256']}"
        )
    else:
        parts.append("no peer certificate")
    return "; ".join(parts)
