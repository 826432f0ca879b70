"""How connect dials: Happy Eyeballs over the resolved addresses (RFC 8305)."""

from __future__ import annotations

import socket
import time

import pytest

from socketkit.netcat.net import dial
from socketkit.netcat.options import NetcatOptions
from stream.peers import unresponsive_port


def test_dial_races_addresses_so_a_stalled_one_costs_one_attempt_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """connect's TCP dial is Happy Eyeballs: an address that never answers (its accept queue
    is full, so SYNs are dropped) loses the race to the next one after 250 ms."""
    with unresponsive_port() as stalled, socket.create_server(("127.0.0.1", 0)) as live:
        infos = [
            (socket.AF_INET, ("127.0.0.1", stalled)),
            (socket.AF_INET, ("127.0.0.1", live.getsockname()[1])),
        ]
        monkeypatch.setattr("socketkit.netcat.net.resolve", lambda *_a, **_k: list(infos))
        started = time.monotonic()
        sock = dial(NetcatOptions(host="slow.test", port=80, connect_timeout=10))
        elapsed = time.monotonic() - started
        with sock:
            assert sock.getpeername() == live.getsockname()
        assert 0.2 <= elapsed < 2
