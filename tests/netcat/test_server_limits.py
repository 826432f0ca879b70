"""``listen -k``: safe default limits and sessions that fail alone (issue 10, item 10).

Defaults: at most 100 clients (UDP peers) at once, as ncat's ``--max-conns``, and at most 32
from one source address. A session that cannot start (its program is missing, the process is
out of file descriptors) is reported and ends alone; the listener keeps serving."""

from __future__ import annotations

import resource
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from socketkit.netcat import hub as hub_module

from .nctools import SK, Collector, free_port, started, wait_bound
from .nctools import json_events as _events


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _settle(collector: Collector, names: tuple[str, ...], total: int) -> None:
    _wait(lambda: sum(len(_events(collector, n)) for n in names) >= total, f"{total} {names}")
    time.sleep(0.3)  # nothing more may come


def _children(pid: int) -> int:
    out = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True, check=False
    )
    return len(out.stdout.split())


def test_help_documents_the_default_limits() -> None:
    text = subprocess.run(
        [*SK, "listen", "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    flat = " ".join(text.split())
    assert "-m N, --max-conns N" in flat
    assert "(default 100" in flat
    assert "--max-conns-per-source N" in flat
    assert "(default 32" in flat


def test_udp_exec_defaults_limit_programs_per_source() -> None:
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "-e", "cat", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as listener:
        wait_bound(port, "udp")
        err = Collector(listener.stderr)
        peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
        try:
            for sock in peers:
                sock.sendto(b"hi\n", ("127.0.0.1", port))
            _settle(err, ("accepted", "rejected"), 40)
            assert len(_events(err, "accepted")) == 32
            rejected = _events(err, "rejected")
            assert len(rejected) == 8
            assert all("per-source" in str(r.get("reason")) for r in rejected), rejected
            assert _children(listener.pid) == 32
            # the admitted ones are served
            peers[0].settimeout(10)
            assert peers[0].recv(100) == b"hi\n"
        finally:
            for sock in peers:
                sock.close()
        assert listener.poll() is None


def test_udp_default_total_limit_is_100() -> None:
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as listener:
        wait_bound(port, "udp")
        err = Collector(listener.stderr)
        peers = []
        try:
            for host in range(1, 6):  # 5 sources x 25 ports: under the per-source limit
                for _ in range(25):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    peers.append(sock)
                    sock.bind((f"127.0.0.{host}", 0))
                    sock.sendto(b"x", ("127.0.0.1", port))
            _settle(err, ("accepted", "rejected"), 125)
            assert len(_events(err, "accepted")) == 100
            assert len(_events(err, "rejected")) == 25
        finally:
            for sock in peers:
                sock.close()
        assert listener.poll() is None


def test_tcp_exec_defaults_limit_programs_per_source() -> None:
    port = free_port()
    argv = [*SK, "listen", "-k", "--json", "-e", "cat", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as listener:
        wait_bound(port)
        err = Collector(listener.stderr)
        socks = []
        try:
            for _ in range(40):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            _settle(err, ("accepted", "rejected"), 40)
            assert len(_events(err, "accepted")) == 32
            assert len(_events(err, "rejected")) == 8
            assert _children(listener.pid) == 32
            socks[0].sendall(b"echo\n")
            socks[0].settimeout(10)
            assert socks[0].recv(100) == b"echo\n"
        finally:
            for sock in socks:
                sock.close()
        assert listener.poll() is None


def test_tcp_keep_open_default_total_limit_is_100() -> None:
    port = free_port()
    argv = [*SK, "listen", "-k", "--json", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as listener:
        wait_bound(port)
        err = Collector(listener.stderr)
        socks = []
        try:
            for host in range(1, 6):  # 5 sources x 21 clients
                for _ in range(21):
                    socks.append(
                        socket.create_connection(
                            ("127.0.0.1", port), timeout=10, source_address=(f"127.0.0.{host}", 0)
                        )
                    )
            _settle(err, ("accepted", "rejected"), 105)
            assert len(_events(err, "accepted")) == 100
            assert len(_events(err, "rejected")) == 5
        finally:
            for sock in socks:
                sock.close()
        assert listener.poll() is None


@pytest.mark.parametrize("udp", [False, True])
def test_a_program_that_cannot_start_ends_only_its_session(udp: bool, tmp_path: Path) -> None:
    """The program is there when the server starts (it is checked), then removed."""
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\nexec cat\n")
    program.chmod(0o755)
    port = free_port("udp" if udp else "tcp")
    u = ["-u"] if udp else []
    argv = [*SK, "listen", *u, "-k", "--json", "-e", str(program)]
    argv += ["127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as listener:
        wait_bound(port, "udp" if udp else "tcp")
        program.unlink()
        err = Collector(listener.stderr)
        for index in range(3):
            if udp:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(b"x", ("127.0.0.1", port))
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.settimeout(10)
                    assert sock.recv(10) == b""  # closed: no program to talk to
            _wait(lambda i=index: len(_events(err, "warning")) > i, "a warning")  # type: ignore[misc]
        assert listener.poll() is None, bytes(err.data)
        warnings = [str(w["message"]) for w in _events(err, "warning")]
        assert all(f"cannot run {program}: No such file" in w for w in warnings), warnings
        assert len(_events(err, "closed")) == 3


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))


@pytest.mark.parametrize("udp", [False, True])
def test_running_out_of_descriptors_never_ends_the_listener(udp: bool) -> None:
    """With 24 descriptors, some sessions cannot start (EMFILE): they are refused with a
    warning; the listener stays up, keeps serving the ones it has, and serves new ones once
    descriptors are free again."""
    port = free_port("udp" if udp else "tcp")
    u = ["-u", "--udp-session-idle", "2"] if udp else []
    argv = [*SK, "listen", *u, "-k", "--json", "-e", "cat", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_low_fd_limit
    ) as listener:
        wait_bound(port, "udp" if udp else "tcp")
        err = Collector(listener.stderr)
        began = time.monotonic()
        peers: list[socket.socket] = []
        try:
            # One peer at a time until one is not served: the first ones get their program.
            served = 0
            for _ in range(40):
                if udp:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.connect(("127.0.0.1", port))
                    peers.append(sock)
                else:
                    peers.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                if not _echoes(peers[-1], udp):
                    break
                served += 1
            assert 1 <= served < 40
            _wait(lambda: len(_events(err, "warning")) > 0, "an EMFILE warning")
            time.sleep(0.5)
            assert listener.poll() is None, bytes(err.data)
            warnings = " ".join(str(w["message"]) for w in _events(err, "warning"))
            assert "Too many open files" in warnings, warnings
            assert _echoes(peers[0], udp)  # the sessions it has are still served
            # a listener out of descriptors neither spins nor floods: one warning a second
            accept_failures = [w for w in warnings.split("; ") if "accept failed" in w]
            assert len(accept_failures) <= 2 + time.monotonic() - began, len(accept_failures)
        finally:
            for sock in peers:
                sock.close()
        # once the sessions are gone, a new peer is served again
        if not udp:
            _wait(lambda: _children(listener.pid) == 0, "programs reaped")
        else:
            _wait(lambda: _children(listener.pid) == 0, "idle sessions ended", timeout=30)
        if udp:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
                again.settimeout(10)
                again.sendto(b"again\n", ("127.0.0.1", port))
                assert again.recv(100) == b"again\n"
        else:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
                again.settimeout(10)
                again.sendall(b"again\n")
                assert again.recv(100) == b"again\n"
        assert listener.poll() is None


def _echoes(sock: socket.socket, udp: bool) -> bool:
    """True if the session behind ``sock`` answers (its ``cat`` runs)."""
    sock.settimeout(5)
    try:
        sock.sendall(b"still here\n")
        return sock.recv(100) == b"still here\n"
    except OSError:  # reset, or (UDP) no answer: that session could not start
        return False


def test_a_thread_that_cannot_start_frees_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """``-k -e``: when a session's thread cannot start, its socket is closed, its slot is
    free again, and the accept loop goes on."""
    from socketkit.netcat.access import AccessList
    from socketkit.netcat.options import NetcatOptions
    from socketkit.netcat.report import Reporter
    from socketkit.netcat.tap import Tap

    lines: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    opts = NetcatOptions(exec_argv=("cat",), keep_open=True)
    server = hub_module._ExecServer(
        [],
        opts=opts,
        reporter=Reporter("t", verbose=True, stream=Stream()),  # type: ignore[arg-type]
        access=AccessList(),
        tap=Tap(),
        ctx=None,
    )

    def refuse(self: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(hub_module.threading.Thread, "start", refuse)
    a, b = socket.socketpair()
    with a:
        assert server.slots.take("peer") is None
        assert server._count() == 1
        server._start(b, "peer:1", "peer")
        assert server._count() == 0
        assert b.fileno() == -1  # closed
        assert any("can't start new thread" in line for line in lines), lines


def test_slots_count_both_ipv4_spellings_as_one_source() -> None:
    from socketkit.netcat.limits import Slots, source_of

    assert source_of(("::ffff:10.1.2.3", 5, 0, 0)) == source_of(("10.1.2.3", 9)) == "10.1.2.3"
    assert source_of("/run/x.sock") is None
    slots = Slots(total=3, per_source=2)
    assert slots.take(source_of(("10.1.2.3", 1))) is None
    assert slots.take(source_of(("::ffff:10.1.2.3", 2, 0, 0))) is None
    assert slots.take("10.1.2.3") == "--max-conns-per-source 2 reached for 10.1.2.3"
    assert slots.take(None) is None  # Unix peers count only towards the total
    assert slots.take("10.9.9.9") == "--max-conns 3 reached"
    slots.give("10.1.2.3")
    assert slots.take("10.1.2.3") is None


def test_hub_out_of_descriptors_keeps_serving_without_spinning() -> None:
    """``listen -k`` (no program): when accept() fails with EMFILE the hub warns once a
    second, rests between tries (no busy loop, no flood), serves the clients it has, and
    accepts again once descriptors are free."""
    port = free_port()
    argv = [*SK, "listen", "-k", "--json", "127.0.0.1", str(port)]
    with started(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_low_fd_limit,
    ) as hub:
        assert hub.stdin is not None
        wait_bound(port)
        out, err = Collector(hub.stdout), Collector(hub.stderr)
        socks = []
        try:
            for _ in range(30):  # more than 24 descriptors: the backlog holds the rest
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            _wait(lambda: len(_events(err, "warning")) > 0, "an accept warning")
            began = time.monotonic()
            time.sleep(1.5)
            warnings = [str(w["message"]) for w in _events(err, "warning")]
            assert all("accept failed: Too many open files" in w for w in warnings), warnings
            assert len(warnings) <= 2 + time.monotonic() - began, len(warnings)
            hub.stdin.write(b"to everyone\n")
            hub.stdin.flush()
            socks[0].settimeout(10)
            assert socks[0].recv(100) == b"to everyone\n"
        finally:
            for sock in socks:
                sock.close()
        _wait(lambda: len(_events(err, "closed")) >= 30, "every client closed")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
            again.sendall(b"again\n")
            assert out.wait_line_count(1) == b"again\n"
        assert hub.poll() is None
