"""TLS for netcat sessions: contexts from :mod:`socketkit._tls`, handshakes with a deadline,
and one-line failures (exit status 6)."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from .._errors import TLSError, translate_os_error
from .._tls import client_context, describe, server_context
from .options import TlsOptions

__all__ = ["client_wrap", "describe_tls", "make_server_context", "server_wrap", "tls_summary"]

#: A TLS handshake that has not finished in 30 s is not going to.
HANDSHAKE_TIMEOUT = 30.0


def client_wrap(
    sock: socket.socket, tls: TlsOptions, server_name: str | None, timeout: float | None
) -> ssl.SSLSocket:
    """Handshake as a client over connected ``sock``; returns the TLS socket (blocking).

    Raises:
        TLSError: bad CA/cert files, verification failure (wrong CA, wrong name, expired).
    """
    ctx = client_context(
        ca_file=tls.ca_file,
        insecure=tls.insecure,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        alpn=list(tls.alpn) or None,
    )
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
    ctx = server_context(
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        alpn=list(tls.alpn) or None,
        client_ca_file=tls.client_ca_file,
    )
    # No TLS 1.3 session tickets: netcat-style clients (ncat --send-only, scripts) never read
    # after their handshake, so tickets sit unread in their receive queue and their close()
    # turns into a TCP RST that destroys the last data in flight. Nobody resumes a netcat
    # session, so the tickets buy nothing.
    ctx.num_tickets = 0
    return ctx


def server_wrap(
    sock: socket.socket, ctx: ssl.SSLContext, timeout: float | None = None
) -> ssl.SSLSocket:
    """Handshake as a server over accepted ``sock`` (blocking, with a deadline)."""
    sock.settimeout(timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    try:
        wrapped = ctx.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        raise _tls_failure(exc, "TLS handshake with client") from exc
    wrapped.settimeout(None)
    return wrapped


def _tls_failure(exc: BaseException, action: str) -> TLSError:
    err = translate_os_error(exc, action)
    if isinstance(err, TLSError):
        return err
    return TLSError(f"{action}: {err}")


def describe_tls(sock: ssl.SSLSocket) -> dict[str, Any]:
    return describe(sock)


def tls_summary(info: dict[str, Any]) -> str:
    """One human line: ``TLSv1.3 TLS_AES_256_GCM_SHA384, ALPN h2, peer CN=...``."""
    parts = [f"{info.get('version')} {info.get('cipher')}"]
    parts.append(f"ALPN {info['alpn']}" if info.get("alpn") else "no ALPN")
    cert = info.get("peer_certificate")
    if cert:
        parts.append(
            f"peer certificate subject {cert['subject'] or '(empty)'}, issuer "
            f"{cert['issuer'] or '(empty)'}, expires {cert['not_after']}, SHA-256 {cert['sha256']}"
        )
    else:
        parts.append("no peer certificate")
    return "; ".join(parts)
