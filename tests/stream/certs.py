"""Certificates for the TLS tests, made with trustme and written as PEM files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trustme

from .contract import TLSFiles

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def write_tls_files(ca: trustme.CA, where: Path, *names: str, **issue: Any) -> TLSFiles:
    """Write ``ca``'s certificate and a new leaf for ``names`` (default: the loopback names);
    ``issue`` goes to ``trustme.CA.issue_cert`` (``not_after=...``)."""
    where.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert(*(names or LOOPBACK_NAMES), **issue)
    ca_file, cert_file, key_file = where / "ca.pem", where / "cert.pem", where / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    return TLSFiles(str(ca_file), str(cert_file), str(key_file))
