"""A socketkit bench server facing broken or hostile clients: it refuses them with
SERVER_ERROR and a log line, keeps serving everyone else, and its memory stays bounded."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from socketkit.proto.iperf3 import BenchParams, State, encode_json, make_cookie
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening

CONTROL_TIMEOUT = 2


@pytest.fixture
def server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port), "--control-timeout", str(CONTROL_TIMEOUT)]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_listening(port)
        yield port, proc


def _log(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err.decode()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(CONTROL_TIMEOUT + 8)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _server_error(data: bytes) -> int:
    """The i_errno of the SERVER_ERROR at the end of ``data``."""
    assert len(data) >= 9 and data[-9] == 0xFE, data
    return int(struct.unpack("!i", data[-8:-4])[0])


def _good_test(port: int) -> None:
    rc, doc, err = run_json([*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "1", "-J"])
    assert rc == 0, err
    assert doc["end"]["sum_received"]["bytes"] > 0


def test_bad_cookie(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = server
    with _connect(port) as sock:
        sock.sendall(b"NOT-A-COOKIE".ljust(37, b"!"))
        assert _server_error(_read_all(sock)) == 106  # IERECVCOOKIE
    _good_test(port)
    assert "refused a connection from 127.0.0.1" in _log(proc)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (struct.pack("!I", 1 << 30) + b"{", "params JSON of 1073741824 bytes > 8192"),
        (struct.pack("!I", 9) + b"{not-json", "invalid JSON"),
        (struct.pack("!I", 2) + b"[]", "not a JSON object"),
        (bytes([0x63]), ""),  # a state byte where JSON belongs: read as a length, then stall
    ],
)
def test_bad_params(
    server: tuple[int, subprocess.Popen[bytes]], payload: bytes, message: str
) -> None:
    port, proc = server
    with _connect(port) as sock:
        sock.sendall(make_cookie())
        assert sock.recv(1) == bytes([State.PARAM_EXCHANGE])
        sock.sendall(payload)
        assert _server_error(_read_all(sock)) in (110, 108)
    _good_test(port)
    log = _log(proc)
    assert "test from 127.0.0.1" in log and "refused" in log
    assert message in log


def test_unknown_state_byte_while_running(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = server
    cookie = make_cookie()
    with _connect(port) as sock:
        sock.sendall(cookie)
        assert sock.recv(1) == bytes([State.PARAM_EXCHANGE])
        sock.sendall(encode_json(BenchParams(time=5).to_json()))
        assert sock.recv(1) == bytes([State.CREATE_STREAMS])
        with socket.create_connection(("127.0.0.1", port)) as data:
            data.sendall(cookie)
            assert sock.recv(2) == bytes([State.TEST_START, State.TEST_RUNNING])
            sock.sendall(b"\x63")
            assert _server_error(_read_all(sock)) == 110  # IEMESSAGE
    _good_test(port)
    assert "unknown state byte 0x63" in _log(proc)


def test_stalled_clients_do_not_block_others(
    server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = server
    silent = _connect(port)  # never sends its cookie
    stalled = _connect(port)
    stalled.sendall(make_cookie())  # ... and never sends params
    try:
        t0 = time.monotonic()
        _good_test(port)  # served while both stall
        assert time.monotonic() - t0 < CONTROL_TIMEOUT + 4
        assert stalled.recv(1) == bytes([State.PARAM_EXCHANGE])
        assert _server_error(_read_all(stalled)) == 108  # IECTRLREAD, after the timeout
        _read_all(silent)
    finally:
        silent.close()
        stalled.close()
    log = _log(proc)
    assert "no parameters within 2 s" in log
    assert "no cookie within 2 s" in log


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_under_junk(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = server
    _good_test(port)  # warm up: imports, buffers
    before = _rss_kib(proc.pid)
    junk = make_cookie() + struct.pack("!I", 8000) + b"x" * (1 << 20)

    def hostile() -> None:
        for _ in range(20):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.settimeout(5)
                    s.sendall(junk[: 37 + 4 + 8000 + 1000])
                    try:
                        s.sendall(junk)
                    except OSError:
                        pass
                    _read_all(s)
            except OSError:
                pass

    threads = [threading.Thread(target=hostile) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    _good_test(port)
    after = _rss_kib(proc.pid)
    assert after - before < 32 * 1024, (before, after)
    _log(proc)
