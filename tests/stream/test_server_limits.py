"""The servers' default limits (total and per source IP), and a session that cannot be started
never ends a server (docs/design.md "Servers"; README "Servers")."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

import socketkit
import socketkit.aio as skio
from socketkit._server_common import PerIPCounter

from .peers import run_async

LOOPS = ["asyncio", "uvloop"]


def echo_once(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Send one line on ``sock``; what comes back before the line end or EOF/reset."""
    sock.settimeout(timeout)
    try:
        sock.sendall(b"hi\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = sock.recv(100)
            if not chunk:
                break
            got += chunk
        return got
    except ConnectionResetError:
        return b""


@contextlib.contextmanager
def clients(count: int, port: int, source: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", port))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_per_ip_key_counts_mapped_ipv4_as_ipv4() -> None:
    assert PerIPCounter.key(("::ffff:10.1.1.1", 5, 0, 0)) == "10.1.1.1"
    assert PerIPCounter.key(("10.1.1.1", 5)) == "10.1.1.1"
    assert PerIPCounter.key(("::1", 5, 0, 0)) == "::1"
    assert PerIPCounter.key("/tmp/x.sock") is None  # Unix peers are not counted
    counter = PerIPCounter(1)
    assert counter.admit(PerIPCounter.key(("10.1.1.1", 5)))
    assert not counter.admit(PerIPCounter.key(("::ffff:10.1.1.1", 6, 0, 0)))
    counter.release("10.1.1.1")
    assert counter.admit("10.1.1.1")


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_limits_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="max_connections_per_ip"):
        socketkit.serve(lambda s: None, "127.0.0.1:0", max_connections_per_ip=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_connections"):
        run_async("asyncio", skio.serve(lambda s: None, "127.0.0.1:0", max_connections=bad))  # type: ignore[arg-type,arg-type,return-value]


def test_sync_default_limits_per_ip_then_total() -> None:
    """Defaults: 256 connections per source IP (the 257th is closed unserved), 512 in all (the
    513th waits in the backlog until one ends)."""
    release = threading.Event()

    def hold(stream: socketkit.Stream) -> None:
        line = stream.receive_line(timeout=30)
        stream.send_all(line + b"\n")
        release.wait(30)

    with socketkit.serve(hold, "127.0.0.1:0") as server:
        port = server.address.port
        assert port is not None
        try:
            with clients(256, port, "127.0.0.1") as first:
                assert all(echo_once(s) == b"hi\n" for s in first)
                with clients(1, port, "127.0.0.1") as (extra,):
                    assert echo_once(extra) == b""  # closed at once, never served
                assert server.connections_refused == 1
                with clients(256, port, "127.0.0.2") as second:  # another source: served
                    assert all(echo_once(s) == b"hi\n" for s in second)
                    assert server.active_connections == 512
                    with clients(1, port, "127.0.0.3") as (waiting,):
                        waiting.sendall(b"late\n")
                        waiting.settimeout(0.5)
                        with pytest.raises(TimeoutError):
                            waiting.recv(10)  # in the backlog: no handler yet
                        first[0].close()  # one leaves...
                        release.set()  # ...and the handlers return: slots free up
                        waiting.settimeout(10)
                        assert waiting.recv(10) == b"late\n"
        finally:
            release.set()


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_default_per_ip_limit(loop: str) -> None:
    """Default: 1,000 connections per source IP; the 1,001st is aborted before its handler
    runs, while another source is still served."""
    handled = 0

    async def hold(stream: skio.Stream) -> None:
        nonlocal handled
        handled += 1
        line = await stream.receive_line(timeout=30)
        await stream.send_all(line + b"\n")
        await asyncio.sleep(30)

    async def main() -> None:
        async with await skio.serve(hold, "127.0.0.1:0", grace=0) as server:
            port = server.address.port
            assert port is not None

            def blocking_part() -> None:
                with clients(1000, port) as first:
                    assert all(echo_once(s) == b"hi\n" for s in first)
                    with clients(1, port) as (extra,):
                        assert echo_once(extra) == b""
                    with clients(1, port, "127.0.0.2") as (other,):
                        assert echo_once(other) == b"hi\n"

            await asyncio.to_thread(blocking_part)
            assert server.connections_refused == 1
            assert handled == 1001

    run_async(loop, main())


def test_default_limits_are_the_documented_values() -> None:
    # The total limit's behaviour on asyncio is the contract test test_max_connections; its
    # default of 10,000 connections is more than a test should open.
    import inspect

    params = inspect.signature(skio.serve).parameters
    assert params["max_connections"].default == 10_000
    assert params["max_connections_per_ip"].default == 1_000
    params = inspect.signature(socketkit.serve).parameters
    assert params["max_connections"].default == 512
    assert params["max_connections_per_ip"].default == 256


def test_sync_failed_thread_start_does_not_end_the_server() -> None:
    """No thread to be had (the address space is full): that client is closed, its slot is
    freed, and the server serves the next one."""
    script = textwrap.dedent(
        """
        import resource, socket, threading, socketkit

        def echo(stream):
            stream.send_all(stream.receive_line(timeout=10) + b"\\n")

        def ask(port):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"hi\\n")
                try:
                    return s.recv(10)
                except ConnectionResetError:
                    return b""

        with socketkit.serve(echo, "127.0.0.1:0", max_connections=1) as server:
            port = server.address.port
            print("before", ask(port), flush=True)
            # Thread stacks of 1 GiB in an address space capped 256 MiB above what is used:
            # pthread_create fails, as it does when memory or threads run out.
            used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (used + (256 << 20), resource.RLIM_INFINITY))
            threading.stack_size(1 << 30)
            print("starved", ask(port), flush=True)
            threading.stack_size(0)
            print("after", ask(port), flush=True)
            print("accepted", server.connections_accepted, flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "before b'hi\\n'",
        "starved b''",
        "after b'hi\\n'",  # the slot of max_connections=1 was not leaked
        "accepted 3",
    ]
    assert "can't start new thread" in proc.stderr
