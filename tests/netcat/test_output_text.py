"""What connect/listen print and how they read their arguments (issue 10, item 16): byte
counts of ``-e`` sessions, the peer certificate under ``--tls-insecure``, ``-U @name`` as an
abstract socket, and ``--hex-dump`` that never swallows HOST."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from .nctools import SK, Collector, finish, free_port, started, wait_bound


def _closed_events(text: str) -> list[dict[str, object]]:
    return [
        record
        for line in text.splitlines()
        if line.startswith("{") and (record := json.loads(line))["event"] == "closed"
    ]


@pytest.mark.parametrize("unix", [False, True])
@pytest.mark.parametrize("keep", [False, True])
def test_exec_session_counts_its_bytes(keep: bool, unix: bool, tmp_path: Path) -> None:
    port = free_port()
    path = str(tmp_path / "exec.sock")
    k = ["-k"] if keep else []
    where = ["-U", path] if unix else ["127.0.0.1", str(port)]
    for mode in ("-v", "--json"):
        argv = [*SK, "listen", *k, mode, "-e", "cat", *where]
        with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            wait_bound(path if unix else port)
            err = Collector(proc.stderr)
            if unix:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(10)
                sock.connect(path)
            else:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            with sock:
                sock.sendall(b"a" * 5000)
                sock.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := sock.recv(65536):
                    got += chunk
            assert got == b"a" * 5000
            if keep:
                text = err.wait_line_count(3, timeout=10).decode()  # listening, accepted, closed
            else:
                assert finish(proc, 10) == 0
                text = err.wait_for(1 << 20, timeout=2).decode()
        if mode == "-v":
            closed = [line for line in text.splitlines() if ": closed " in line]
            assert len(closed) == 1, text
            assert "sent 5000 bytes, received 5000 bytes" in closed[0], closed
        else:
            (event,) = _closed_events(text)
            assert (event["bytes_sent"], event["bytes_received"]) == (5000, 5000), event


def test_connect_exec_counts_its_bytes() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        got = bytearray()

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"q" * 3000)
                conn.shutdown(socket.SHUT_WR)
                try:
                    while chunk := conn.recv(65536):
                        got.extend(chunk)
                except ConnectionResetError:
                    pass  # the child left bytes unread: its close resets the connection

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        proc = subprocess.run(
            [
                *SK,
                "connect",
                "-v",
                "-c",
                "head -c 1000 >/dev/null; printf 1234567",
                "127.0.0.1",
                str(port),
            ],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        thread.join(10)
    assert proc.returncode == 0, proc.stderr
    assert bytes(got) == b"1234567"
    closed = [line for line in proc.stderr.decode().splitlines() if ": closed " in line]
    # head read 1000 of the 3000 bytes; what the child did not read was not received by it
    assert closed and re.search(r"sent 7 bytes, received (1000|3000) bytes", closed[0]), closed


def test_tls_insecure_shows_the_certificate_it_did_not_verify() -> None:
    port = free_port()
    argv = [*SK, "listen", "--tls", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE):
        wait_bound(port)
        proc = subprocess.run(
            [*SK, "connect", "-v", "--tls", "--tls-insecure", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    (tls_line,) = [line for line in err.splitlines() if ": TLS: " in line]
    assert "None" not in tls_line
    assert "(empty)" not in tls_line
    assert re.search(r"expires \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT", tls_line), tls_line
    assert "not verified" in tls_line


def test_tls_json_says_whether_the_certificate_was_verified() -> None:
    port = free_port()
    argv = [*SK, "listen", "--tls", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE):
        wait_bound(port)
        proc = subprocess.run(
            [*SK, "connect", "--json", "--tls", "--tls-insecure", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    (connected,) = [r for r in records if r["event"] == "connected"]
    tls = connected["tls"]
    assert tls["verified"] is False
    assert tls["peer_certificate"]["not_after"].endswith(" GMT")
    assert tls["peer_certificate"]["subject"]


def _abstract_name() -> str:
    return f"sk-test-{os.getpid()}-{threading.get_ident() % 10000}"


@pytest.mark.parametrize("udp", [False, True])
def test_listen_unix_at_name_is_abstract(tmp_path: Path, udp: bool) -> None:
    name = _abstract_name() + ("u" if udp else "s")
    u = ["-u"] if udp else []
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    argv = [*SK, "listen", *u, "-v", "-U", f"@{name}"]
    with started(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        out, err = Collector(proc.stdout), Collector(proc.stderr)
        err.wait_line_count(1)
        assert f"listening on unix:@{name}" in bytes(err.data).decode()
        assert list(tmp_path.iterdir()) == []  # no file named @name
        with socket.socket(socket.AF_UNIX, kind) as sock:
            sock.connect("\0" + name)
            if udp:
                sock.send(b"over an abstract socket\n")
            else:
                sock.sendall(b"over an abstract socket\n")
            assert out.wait_line_count(1) == b"over an abstract socket\n"


@pytest.mark.parametrize("udp", [False, True])
def test_connect_unix_at_name_is_abstract(tmp_path: Path, udp: bool) -> None:
    name = _abstract_name() + ("cu" if udp else "cs")
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    u = ["-u", "-q", "0.2"] if udp else []
    with socket.socket(socket.AF_UNIX, kind) as server:
        server.bind("\0" + name)
        if not udp:
            server.listen()
        argv = [*SK, "connect", *u, "-U", f"@{name}"]
        with started(argv, cwd=tmp_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdin is not None
            proc.stdin.write(b"hello abstract\n")
            proc.stdin.close()
            if udp:
                server.settimeout(10)
                assert server.recv(100) == b"hello abstract\n"
            else:
                server.settimeout(10)
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(10)
                    assert conn.recv(100) == b"hello abstract\n"
            assert finish(proc, 10) == 0
        assert list(tmp_path.iterdir()) == []
    # and a name nobody listens on is refused (exit 4), never a file looked up in the cwd
    proc = subprocess.run(
        [*SK, "connect", "-U", f"@{name}-nobody"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 4
    assert f"unix:@{name}-nobody" in proc.stderr


@pytest.mark.parametrize("command", ["connect", "listen"])
def test_hex_dump_never_takes_host_as_its_file(tmp_path: Path, command: str) -> None:
    """``--hex-dump`` takes a FILE, as ncat's ``-x``; a host in its place is a usage error (a
    listener would otherwise listen on every interface and write to a file named 127.0.0.1)."""
    port = free_port()
    for argv in (
        [command, "--hex-dump", "127.0.0.1", str(port)],
        [command, "--hex-dump", "::1", str(port)],
        [command, "--hex-dump", "localhost", str(port)],
        [command, "127.0.0.1", str(port), "--hex-dump"],
    ):
        proc = subprocess.run(
            [*SK, *argv],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "--hex-dump" in proc.stderr.splitlines()[0], proc.stderr
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("form", ["separate", "equals", "stderr"])
def test_hex_dump_file_is_explicit(tmp_path: Path, form: str) -> None:
    port = free_port()
    dump = tmp_path / "dump.txt"
    if form == "separate":
        option = ["--hex-dump", str(dump)]
    elif form == "equals":
        option = [f"--hex-dump={dump}"]
    else:
        option = ["--hex-dump", "-"]
    with started(
        [*SK, "listen", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    ):
        wait_bound(port)
        proc = subprocess.run(
            [*SK, "connect", *option, "127.0.0.1", str(port)],
            input=b"hex me",
            capture_output=True,
            timeout=30,
        )
    assert proc.returncode == 0, proc.stderr
    text = proc.stderr.decode() if form == "stderr" else dump.read_text()
    assert text.startswith("> 00000000  68 65 78 20 6d 65"), text


@pytest.mark.parametrize("udp", [False, True])
def test_ipv6_addresses_are_bracketed(udp: bool) -> None:
    """``listening on [::]:5301``, never ``:::5301`` (nor ``::1:5301`` for a peer)."""
    port = free_port("udp" if udp else "tcp", 6)
    u = ["-u"] if udp else []
    argv = [*SK, "listen", *u, "-v", str(port)]
    with started(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        err = Collector(proc.stderr)
        err.wait_line_count(1)
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET6, kind) as peer:
            peer.connect(("::1", port))
            peer.send(b"x")
            peer_port = peer.getsockname()[1]
            text = err.wait_line_count(2).decode()
    lines = text.splitlines()
    proto = "udp" if udp else "tcp"
    assert lines[0] == f"socketkit listen: listening on [::]:{port} ({proto})"
    assert f"[::1]:{peer_port}" in lines[1], lines
    assert ":::" not in text


def test_unix_dot_slash_at_name_is_a_file(tmp_path: Path) -> None:
    """``-U ./@x`` is the way to a file whose name starts with @."""
    argv = [*SK, "listen", "-U", "./@x"]
    with started(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as proc:
        wait_bound(str(tmp_path / "@x"))
        out = Collector(proc.stdout)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "@x"))
            sock.sendall(b"file\n")
            assert out.wait_line_count(1) == b"file\n"
