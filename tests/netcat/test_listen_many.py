"""``listen -k``: 100+ concurrent clients, ``--broker`` and ``--chat`` robustness,
``--exec cat`` for 50 concurrent clients (children reaped), ``--max-conns``, ``--allow/--deny``."""

from __future__ import annotations

import socket
import struct
import subprocess
import time

from .nctools import SK, Collector, free_port, started, wait_bound
from .nctools import json_events as events


def wait_events(collector: Collector, name: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(events(collector, name)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"only {len(events(collector, name))} {name!r} events, wanted {count}")


def connect_many(port: int, count: int, per_source: int = 30) -> list[socket.socket]:
    """``count`` clients, at most ``per_source`` from each of 127.0.0.1, 127.0.0.2, ... (the
    listener admits at most 32 from one source address by default)."""
    socks = []
    for index in range(count):
        source = f"127.0.0.{1 + index // per_source}"
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        socks.append(sock)
    return socks


def recv_lines(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    sock.settimeout(timeout)
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.splitlines()


def test_keep_open_serves_100_clients_at_once() -> None:
    port = free_port()
    # 120 is above the default --max-conns (100, as ncat): raise it.
    argv = [*SK, "listen", "-k", "-m", "120", "--json", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as hub:
        wait_bound(port)
        out, err = Collector(hub.stdout), Collector(hub.stderr)
        socks = connect_many(port, 120)
        try:
            wait_events(err, "accepted", 120)
            # All 120 are connected at the same moment: stdin reaches every one of them.
            assert hub.stdin is not None
            hub.stdin.write(b"hello everyone\n")
            hub.stdin.flush()
            for sock in socks:
                assert recv_lines(sock, 1) == [b"hello everyone"]
            for index, sock in enumerate(socks):
                sock.sendall(f"client {index}\n".encode())
            lines = out.wait_line_count(120).splitlines()
            assert sorted(lines) == sorted(f"client {i}".encode() for i in range(120))
        finally:
            for sock in socks:
                sock.close()
        wait_events(err, "closed", 120)
        assert hub.poll() is None  # still serving
        closed = events(err, "closed")
        assert all(record["bytes_sent"] == len(b"hello everyone\n") for record in closed)


def test_broker_delivers_every_message_to_every_other_client() -> None:
    port = free_port()
    argv = [*SK, "listen", "--broker", "--json", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as hub:
        wait_bound(port)
        err = Collector(hub.stderr)
        socks = connect_many(port, 20)
        try:
            wait_events(err, "accepted", 20)
            for index, sock in enumerate(socks):
                sock.sendall(f"message from {index}\n".encode())
            for index, sock in enumerate(socks):
                got = sorted(recv_lines(sock, 19))
                want = sorted(f"message from {i}".encode() for i in range(20) if i != index)
                assert got == want
            # One client vanishes mid-message (half a line, then a TCP reset), another
            # closes mid-message normally: nothing crashes, the rest keep talking.
            socks[0].sendall(b"half a mess")
            socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socks[0].close()
            socks[1].sendall(b"another half")
            socks[1].close()
            wait_events(err, "closed", 2)
            for sock in socks[2:]:
                sock.settimeout(5)
                # Whatever partial bytes were relayed, drain them before the next round.
                time.sleep(0.05)
                sock.setblocking(False)
                try:
                    while sock.recv(65536):
                        pass
                except BlockingIOError:
                    pass
                sock.setblocking(True)
            socks[2].sendall(b"still alive\n")
            for sock in socks[3:]:
                assert recv_lines(sock, 1) == [b"still alive"]
            assert hub.poll() is None
        finally:
            for sock in socks:
                sock.close()


def test_chat_prefixes_nicknames() -> None:
    port = free_port()
    argv = [*SK, "listen", "--chat", "--json", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as hub:
        wait_bound(port)
        err = Collector(hub.stderr)
        socks = connect_many(port, 3)
        try:
            wait_events(err, "accepted", 3)
            for sock in socks:
                sock.settimeout(5)
            time.sleep(0.2)
            for sock in socks:  # drop the join announcements
                sock.setblocking(False)
                try:
                    while sock.recv(65536):
                        pass
                except BlockingIOError:
                    pass
                sock.setblocking(True)
            socks[0].sendall(b"hi th")
            socks[0].sendall(b"ere\n")
            for sock in socks[1:]:
                assert recv_lines(sock, 1) == [b"<user1> hi there"]
        finally:
            for sock in socks:
                sock.close()


def _children(pid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid=,stat=,comm="], capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_exec_cat_echoes_for_50_concurrent_clients_and_reaps_them() -> None:
    port = free_port()
    argv = [*SK, "listen", "-k", "--json", "-e", "cat", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as hub:
        wait_bound(port)
        err = Collector(hub.stderr)
        socks = connect_many(port, 50)
        try:
            wait_events(err, "accepted", 50)
            deadline = time.monotonic() + 10
            while len(_children(hub.pid)) < 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_children(hub.pid)) == 50  # 50 programs running at once
            payloads = [bytes([i]) * 10000 + f"end {i}".encode() for i in range(50)]
            for sock, payload in zip(socks, payloads, strict=True):
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            for sock, payload in zip(socks, payloads, strict=True):
                sock.settimeout(10)
                got = b""
                while chunk := sock.recv(65536):
                    got += chunk
                assert got == payload
        finally:
            for sock in socks:
                sock.close()
        wait_events(err, "closed", 50)
        deadline = time.monotonic() + 5
        while _children(hub.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children(hub.pid) == []  # every cat was reaped: no zombies
        assert hub.poll() is None


def test_max_conns_rejects_extra_clients() -> None:
    port = free_port()
    argv = [*SK, "listen", "-k", "-m", "2", "--json", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as hub:
        wait_bound(port)
        err = Collector(hub.stderr)
        socks = connect_many(port, 2)
        try:
            wait_events(err, "accepted", 2)
            extra = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(extra)
            wait_events(err, "rejected", 1)
            extra.settimeout(5)
            assert extra.recv(10) == b""  # closed at once
            socks[0].close()
            wait_events(err, "closed", 1)
            again = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(again)
            wait_events(err, "accepted", 3)  # a slot was free again
        finally:
            for sock in socks:
                sock.close()


def test_allow_and_deny_before_reading_a_byte(tmp_path: object) -> None:
    port = free_port()
    argv = [*SK, "listen", "-k", "--json", "--allow", "127.0.0.2/32", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as hub:
        wait_bound(port)
        out, err = Collector(hub.stdout), Collector(hub.stderr)
        denied = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=("127.0.0.1", 0)
        )
        denied.sendall(b"secret from a denied peer\n")
        wait_events(err, "denied", 1)
        denied.settimeout(5)
        try:
            assert denied.recv(10) == b""
        except ConnectionResetError:
            pass
        denied.close()
        allowed = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0)
        )
        allowed.sendall(b"hello from an allowed peer\n")
        assert out.wait_line_count(1) == b"hello from an allowed peer\n"
        allowed.close()
        assert b"secret" not in bytes(out.data)
        assert events(err, "denied")[0]["remote"].startswith("127.0.0.1:")  # type: ignore[union-attr]


def test_deny_file_in_single_client_mode(tmp_path: object) -> None:
    from pathlib import Path

    deny = Path(str(tmp_path)) / "deny.txt"
    deny.write_text("# local test peers\n127.0.0.0/30\n")
    port = free_port()
    argv = [*SK, "listen", "--json", "--deny", f"@{deny}", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as hub:
        wait_bound(port)
        out, err = Collector(hub.stdout), Collector(hub.stderr)
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        first.sendall(b"denied bytes\n")
        wait_events(err, "denied", 1)
        first.close()
        ok = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=("127.0.0.9", 0)
        )
        ok.sendall(b"admitted\n")
        ok.shutdown(socket.SHUT_WR)
        assert hub.wait(10) == 0
        ok.close()
        assert out.wait_for(9) == b"admitted\n"


def test_idle_clients_are_disconnected_with_k() -> None:
    port = free_port()
    argv = [*SK, "listen", "-k", "-i", "0.5", "--json", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as hub:
        wait_bound(port)
        err = Collector(hub.stderr)
        quiet = socket.create_connection(("127.0.0.1", port), timeout=5)
        wait_events(err, "accepted", 1)
        quiet.settimeout(5)
        assert quiet.recv(10) == b""  # closed by the hub after 0.5 s of silence
        wait_events(err, "closed", 1)
        assert "idle timeout" in str(events(err, "closed")[0]["error"])
        assert hub.poll() is None
        quiet.close()


def test_sigterm_removes_the_unix_socket_and_exits_143(tmp_path: object) -> None:
    import signal
    from pathlib import Path

    path = Path(str(tmp_path)) / "hub.sock"
    with started([*SK, "listen", "-k", "-U", str(path)], stdin=subprocess.PIPE) as hub:
        wait_bound(str(path))
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(10) == 143
    assert not path.exists()
