"""TLS configuration with Python's ``ssl``: verification on by default, SNI, ALPN, mTLS, and an
ephemeral self-signed server certificate when none is given.

``client_context``/``server_context`` build ``ssl.SSLContext`` objects that the streams (and
the CLI) use as they are; ``describe`` reports what was negotiated.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import MissingDependency, TLSError

__all__ = [
    "EphemeralCertificate",
    "client_context",
    "describe",
    "ephemeral_certificate",
    "fingerprint",
    "server_context",
]

log = logging.getLogger("socketkit.tls")

#: TLS 1.2 is the oldest version without known protocol breaks (RFC 8996 retires 1.0/1.1).
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: Ephemeral certificates live a week: long enough for any test session, short if leaked.
EPHEMERAL_DAYS = 7
#: Names an ephemeral certificate covers (the loopback names).
EPHEMERAL_NAMES = ("localhost", "127.0.0.1", "::1")


def client_context(
    *,
    ca_file: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    alpn: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """A client context that verifies the server (system CAs, or ``ca_file``) and its name.

    Args:
        ca_file: PEM file of trusted CAs instead of the system store.
        insecure: skip certificate and host-name verification (say so loudly to users).
        cert_file, key_file: a client certificate for mutual TLS.
        alpn: protocols to offer, most preferred first (e.g. ``["h2", "http/1.1"]``).

    Raises:
        TLSError: a file could not be loaded (the message names it).
    """
    try:
        ctx = ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load CA file {ca_file}: {_reason(exc)}") from exc
    ctx.minimum_version = MINIMUM_VERSION
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        _load_chain(ctx, cert_file, key_file)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def server_context(
    *,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    alpn: Sequence[str] | None = None,
    client_ca_file: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A server context; with no ``cert_file`` an ephemeral self-signed certificate is made and
    its SHA-256 fingerprint logged as a warning (clients must pin it or skip verification).

    Args:
        cert_file, key_file: the server's certificate chain and key (PEM).
        alpn: protocols the server accepts, most preferred first.
        client_ca_file: require client certificates signed by these CAs (mutual TLS).

    The fingerprint of an ephemeral certificate is on ``context.socketkit_fingerprint``
    (``None`` for a given certificate: use :func:`fingerprint` on its PEM).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    fp: str | None = None
    if cert_file:
        _load_chain(ctx, cert_file, key_file)
    else:
        eph = ephemeral_certificate()
        _load_chain_pem(ctx, eph.cert_pem, eph.key_pem)
        fp = eph.fingerprint
        log.warning("no certificate given: using an ephemeral self-signed one, SHA-256 %s", fp)
    if client_ca_file:
        try:
            ctx.load_verify_locations(cafile=os.fspath(client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load client CA file {client_ca_file}: {_reason(exc)}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.socketkit_fingerprint = fp  # type: ignore[attr-defined]
    return ctx


@dataclass(frozen=True)
class EphemeralCertificate:
    cert_pem: bytes
    key_pem: bytes
    #: SHA-256 of the DER certificate, colon-separated upper-case hex (openssl's format).
    fingerprint: str


def ephemeral_certificate(names: Iterable[str] = EPHEMERAL_NAMES) -> EphemeralCertificate:
    """Make a self-signed ECDSA P-256 certificate for ``names`` (host names or IP addresses)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise MissingDependency(
            "an ephemeral TLS certificate needs the 'cryptography' package: "
            "pip install cryptography, or give a certificate and key"
        ) from exc
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(names)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"socketkit {names[0]}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=EPHEMERAL_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return EphemeralCertificate(cert_pem, key_pem, fingerprint(cert_pem))


def fingerprint(cert: bytes | str) -> str:
    """SHA-256 fingerprint of a PEM (``str``/``bytes`` starting with -----BEGIN) or DER cert."""
    if isinstance(cert, str):
        cert = cert.encode()
    der = ssl.PEM_cert_to_DER_cert(cert.decode()) if cert.lstrip().startswith(b"-----") else cert
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def describe(obj: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """What was negotiated: version, cipher, ALPN, SNI, and the peer certificate's subject,
    issuer, expiry and fingerprint (if the peer sent one)."""
    cipher = obj.cipher()
    info: dict[str, Any] = {
        "version": obj.version(),
        "cipher": cipher[0] if cipher else None,
        "bits": cipher[2] if cipher else None,
        "alpn": obj.selected_alpn_protocol(),
        "server_hostname": obj.server_hostname,
        "peer_certificate": None,
    }
    der = obj.getpeercert(binary_form=True)
    if der:
        cert = obj.getpeercert() or {}
        info["peer_certificate"] = {
            "subject": _flatten_name(cert.get("subject", ())),
            "issuer": _flatten_name(cert.get("issuer", ())),
            "not_after": cert.get("notAfter"),
            "sha256": fingerprint(der),
        }
    return info


def _flatten_name(name: Any) -> str:
    parts = []
    for rdn in name:
        for key, value in rdn:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _load_chain(
    ctx: ssl.SSLContext,
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str] | None,
) -> None:
    try:
        ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load certificate {cert_file}: {_reason(exc)}") from exc


def _load_chain_pem(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl loads chains only from files: write a private temporary file and remove it at once.
    fd, path = tempfile.mkstemp(prefix="socketkit-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(cert_pem + key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
