"""Fixtures of the stream tests: a trustme CA and server certificate, the contract harness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from .certs import write_tls_files
from .contract import IMPLS, Harness, Impl, TLSFiles


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return write_tls_files(ca, tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=IMPLS, ids=[impl.name for impl in IMPLS])
def harness(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Iterator[Harness]:
    impl: Impl = request.param
    h = Harness(impl, tls_files)
    try:
        yield h
    finally:
        h.cleanup()
