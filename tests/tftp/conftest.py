"""Fixtures shared by the TFTP tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 that plays a raw TFTP peer (10 s receive timeout)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()
