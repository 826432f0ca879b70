"""EOF options, presets, -C, --hex-dump, -o and --json against socketkit's own listener."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from .nctools import SK, Collector, finish, free_port, started


def _server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, server.getsockname()[1]


def test_default_connect_stays_after_peer_eof_until_stdin_ends() -> None:
    server, port = _server()
    with server, started([*SK, "connect", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE) as proc:  # fmt: skip
        peer, _ = server.accept()
        peer.sendall(b"bye\n")
        peer.shutdown(socket.SHUT_WR)
        out = Collector(proc.stdout)
        assert out.wait_for(4) == b"bye\n"
        time.sleep(0.5)
        assert proc.poll() is None  # nc -N: still sending stdin to the half-closed peer
        assert proc.stdin is not None
        proc.stdin.write(b"late data\n")
        proc.stdin.close()
        assert finish(proc, 10) == 0
        peer.settimeout(5)
        got = b""
        while chunk := peer.recv(100):
            got += chunk
        assert got == b"late data\n"
        peer.close()


def test_on_peer_eof_exit_and_socat_preset_end_promptly() -> None:
    for extra, most in ((["--on-peer-eof", "exit"], 1.0), (["--eof-preset", "socat"], 2.0)):
        server, port = _server()
        argv = [*SK, "connect", *extra, "127.0.0.1", str(port)]
        with server, started(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as proc:
            peer, _ = server.accept()
            start = time.monotonic()
            peer.close()
            assert finish(proc, 10) == 0
            assert time.monotonic() - start < most


def test_on_stdin_eof_keep_sends_no_fin() -> None:
    server, port = _server()
    argv = [*SK, "connect", "--on-stdin-eof", "keep", "127.0.0.1", str(port)]
    with server, started(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as proc:
        peer, _ = server.accept()
        peer.settimeout(0.5)
        try:
            peer.recv(10)
            raise AssertionError("got a FIN or data")
        except TimeoutError:
            pass
        peer.sendall(b"still open\n")
        peer.close()
        assert finish(proc, 10) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == b"still open\n"


def test_crlf_hexdump_output_and_json(tmp_path: Path) -> None:
    server, port = _server()
    log = tmp_path / "session.log"
    argv = [*SK, "connect", "-C", "--hex-dump", "-", "-o", str(log), "--json",
            "127.0.0.1", str(port)]  # fmt: skip
    with server, started(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE) as proc:  # fmt: skip
        peer, _ = server.accept()
        assert proc.stdin is not None
        proc.stdin.write(b"GET / HTTP/1.0\n\n")
        proc.stdin.close()
        peer.settimeout(5)
        got = b""
        while chunk := peer.recv(100):
            got += chunk
        assert got == b"GET / HTTP/1.0\r\n\r\n"
        peer.sendall(b"HTTP/1.0 200 OK\r\n")
        peer.close()
        assert finish(proc, 10) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert log.read_bytes() == b"GET / HTTP/1.0\r\n\r\nHTTP/1.0 200 OK\r\n"
    assert "> 00000000  47 45 54" in err
    assert "< 00000000  48 54 54 50" in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    kinds = [r["event"] for r in records]
    assert kinds == ["connected", "closed"]
    closed = records[-1]
    assert closed["bytes_sent"] == 18 and closed["bytes_received"] == 17
    assert set(closed) >= {"time", "proto", "remote", "duration", "error"}


def test_listen_unix_socket_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "nc.sock"
    with started([*SK, "listen", "-U", str(path)], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE) as proc:  # fmt: skip
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b"over unix\n")
        assert finish(proc, 10) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == b"over unix\n"
    assert not path.exists()  # the listener removed its socket file


def test_source_address_and_port() -> None:
    server, port = _server()
    src_port = free_port()
    argv = [*SK, "connect", "-s", "127.0.0.2", "-p", str(src_port), "127.0.0.1", str(port)]
    with server, started(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as proc:
        peer, addr = server.accept()
        assert addr == ("127.0.0.2", src_port)
        peer.close()
        assert finish(proc, 10) == 0


def test_sh_exec_single_client() -> None:
    port = free_port()
    argv = [*SK, "listen", "-c", "tr a-z A-Z; echo done", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                time.sleep(0.02)
        with sock:
            sock.sendall(b"shout\n")
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(100):
                got += chunk
        assert got == b"SHOUT\ndone\n"
        assert finish(proc, 10) == 0
