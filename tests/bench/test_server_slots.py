"""Test slots of the bench server cannot be held by clients that vanish in the handshake.

A client that sends a valid cookie and parameters and then vanishes (closes, or goes silent
with its connection open) must not leave a real ``iperf3 -c`` told "the server is busy".
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

from socketkit.bench import BenchServer
from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening

#: iperf3's state byte PARAM_EXCHANGE, which the server sends after the cookie.
PARAM_EXCHANGE = 9
ABUSERS = 200
#: fd -> the first state byte the server sent on it.
states: dict[int, bytes] = {}


def _cookie() -> bytes:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(36)).encode() + b"\0"


def _half_open_test(port: int, source: str) -> socket.socket:
    """Connect from ``source``, send a cookie and, if the server asks for them, valid
    parameters; return the socket (``sock.state``: the state byte the server answered)."""
    s = socket.socket()
    try:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(_cookie())
        state = s.recv(1)
        states[s.fileno()] = state
        if state == bytes([PARAM_EXCHANGE]):
            params = json.dumps({"tcp": True, "time": 10, "parallel": 1, "len": 131072}).encode()
            s.sendall(struct.pack(">I", len(params)) + params)
    except BaseException:
        s.close()
        raise
    return s


@contextlib.contextmanager
def _server(*extra: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port), *extra]
    with running(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        yield port, srv


def _iperf3(port: int) -> tuple[int, dict[str, object]]:
    iperf3 = require_tool("iperf3")
    rc, doc, _err = run_json([iperf3, "-c", "127.0.0.1", "-p", str(port), "-t", "1", "-J"])
    return rc, doc


def test_vanished_clients_free_their_slot_when_the_connection_closes() -> None:
    with _server() as (port, _srv):
        for _ in range(ABUSERS):
            _half_open_test(port, "127.0.0.1").close()
        time.sleep(1.0)
        rc, doc = _iperf3(port)
    assert rc == 0, doc.get("error")
    assert "error" not in doc
    end = doc["end"]
    assert isinstance(end, dict) and end["sum_received"]["bytes"] > 0


def test_silent_clients_from_one_source_hold_at_most_their_share() -> None:
    socks: list[socket.socket] = []
    with _server("--max-tests", "8") as (port, _srv):
        try:
            for _ in range(ABUSERS):
                # From another loopback address than the iperf3 client's 127.0.0.1.
                socks.append(_half_open_test(port, "127.0.0.2"))
            time.sleep(1.0)
            rc, doc = _iperf3(port)
        finally:
            for s in socks:
                s.close()
    assert rc == 0, doc.get("error")
    assert "error" not in doc


def test_per_source_limit_refuses_with_access_denied() -> None:
    socks: list[socket.socket] = []
    with BenchServer("127.0.0.1", 0, max_tests=8, max_tests_per_host=2) as server:
        server.start()
        try:
            for _ in range(2):
                socks.append(_half_open_test(server.port, "127.0.0.3"))
            deadline = time.monotonic() + 5
            while server.active_tests < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.active_tests == 2
            third = _half_open_test(server.port, "127.0.0.3")
            socks.append(third)
            # ACCESS_DENIED (-1 as a signed state byte) instead of PARAM_EXCHANGE, then closed.
            assert states[third.fileno()] == b"\xff"
            third.settimeout(5)
            assert third.recv(16) == b""
            # Another source still gets a test.
            other = _half_open_test(server.port, "127.0.0.4")
            socks.append(other)
            assert states[other.fileno()] == bytes([PARAM_EXCHANGE])
        finally:
            for s in socks:
                s.close()


def test_handshake_time_is_bounded() -> None:
    """The whole handshake (cookie, parameters, data streams) has one deadline: a client that
    uses most of each step's time, then goes silent with its connection open, loses its slot
    --control-timeout after it connected, not after the sum of the steps."""
    with BenchServer("127.0.0.1", 0, control_timeout=1.5) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            t0 = time.monotonic()
            time.sleep(0.7)
            s.sendall(_cookie())
            assert s.recv(1) == bytes([PARAM_EXCHANGE])
            time.sleep(0.7)
            params = json.dumps({"tcp": True, "time": 10, "parallel": 1}).encode()
            s.sendall(struct.pack(">I", len(params)) + params)
            deadline = time.monotonic() + 5
            while server.active_tests < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            while server.active_tests and time.monotonic() - t0 < 6:
                time.sleep(0.02)
            freed = time.monotonic() - t0
    assert freed < 1.5 + 0.6, freed  # the sum of the steps would be 2.9 s
