"""Fixtures of the stream tests: a trustme CA and server certificate, the contract harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from .contract import IMPLS, Harness, Impl, TLSFiles


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return write_tls_files(ca, tmp_path_factory.mktemp("tls"))


def write_tls_files(ca: trustme.CA, where: Path, *names: str, **issue: object) -> TLSFiles:
    """Write ``ca``'s certificate and a new leaf for ``names`` (default: loopback names)."""
    leaf = ca.issue_cert(*(names or ("localhost", "127.0.0.1", "::1")), **issue)  # type: ignore[arg-type]
    ca_file, cert_file, key_file = where / "ca.pem", where / "cert.pem", where / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    return TLSFiles(str(ca_file), str(cert_file), str(key_file))


@pytest.fixture(params=IMPLS, ids=[impl.name for impl in IMPLS])
def harness(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Iterator[Harness]:
    impl: Impl = request.param
    h = Harness(impl, tls_files)
    try:
        yield h
    finally:
        h.cleanup()
