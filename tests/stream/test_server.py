"""``serve`` (sync and asyncio): bound addresses, Unix socket files, listen backlog, handler
errors, serve_forever and close."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

import socketkit
import socketkit.aio as skio
from socketkit import AddressError, SocketkitError

from .peers import echo_lines, exchange, run_async

LOOPS = ["asyncio", "uvloop"]


async def aecho(stream: skio.Stream) -> None:
    async for line in stream:
        await stream.send_all(line + b"\n")


def fill_backlog(target: str, count: int) -> int:
    """Open ``count`` non-blocking Unix connections at once; how many were refused with
    EAGAIN (a full accept queue)."""
    socks = [socket.socket(socket.AF_UNIX) for _ in range(count)]
    try:
        for sock in socks:
            sock.setblocking(False)
        codes = [sock.connect_ex("\0" + target.removeprefix("unix:@")) for sock in socks]
        return sum(code == errno.EAGAIN for code in codes)
    finally:
        for sock in socks:
            sock.close()


def test_sync_listen_backlog_is_large() -> None:
    target = f"unix:@socketkit-test-{uuid.uuid4().hex}"
    gate = threading.Event()

    def stuck(stream: socketkit.Stream) -> None:
        gate.wait(10)

    with socketkit.serve(stuck, target, max_connections=1):
        try:
            # One handler runs; the rest wait in the kernel's queue: none refused.
            assert fill_backlog(target, 300) == 0
        finally:
            gate.set()


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_listen_backlog_is_large(loop: str) -> None:
    target = f"unix:@socketkit-test-{uuid.uuid4().hex}"

    async def body() -> int:
        server = await skio.serve(aecho, target)
        try:
            return fill_backlog(target, 300)  # the loop does not run: nothing is accepted
        finally:
            await server.aclose(grace=1)

    assert run_async(loop, body()) == 0


def test_sync_bound_addresses(tmp_path: Path) -> None:
    with socketkit.serve(echo_lines, "127.0.0.1:0") as server:
        assert server.address.host == "127.0.0.1" and server.address.port > 0
        exchange("sync", str(server.address))
    with socketkit.serve(echo_lines, "[::1]:0") as server:
        assert server.address.host == "::1"
        exchange("sync", str(server.address))
    with socketkit.serve(echo_lines, "localhost:0") as server:
        ports = {a.port for a in server.addresses}
        assert len(ports) == 1  # every family on the same port
        exchange("sync", f"localhost:{server.address.port}")
    with socketkit.serve(echo_lines, ":0") as server:  # every address, IPv4 too
        port = server.address.port
        exchange("sync", f"127.0.0.1:{port}")
        exchange("sync", f"[::1]:{port}")


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_bound_addresses(loop: str) -> None:
    async def body() -> None:
        async with await skio.serve(aecho, "127.0.0.1:0") as server:
            assert server.address.port > 0
            stream = await skio.connect(str(server.address))
            await stream.send_all(b"hi\n")
            assert await stream.receive_line(timeout=5) == b"hi"
            await stream.aclose()
        async with await skio.serve(aecho, ":0") as server:
            for host in ("127.0.0.1", "[::1]"):
                stream = await skio.connect(f"{host}:{server.address.port}")
                await stream.send_all(b"hi\n")
                assert await stream.receive_line(timeout=5) == b"hi"
                await stream.aclose()

    run_async(loop, body())


def test_unix_socket_file_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socketkit.serve(echo_lines, f"unix:{path}") as server:
        assert path.exists()
        assert server.address.path == str(path)
        exchange("sync", f"unix:{path}")
        with pytest.raises(SocketkitError, match="another server"):
            socketkit.serve(echo_lines, f"unix:{path}")
    assert not path.exists()  # removed on close

    # A stale socket file (its server died) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    with socketkit.serve(echo_lines, f"unix:{path}"):
        exchange("sync", f"unix:{path}")

    regular = tmp_path / "not-a-socket"
    regular.write_text("data")
    with pytest.raises(AddressError, match="not a socket"):
        socketkit.serve(echo_lines, f"unix:{regular}")
    assert regular.read_text() == "data"  # never deleted


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_unix_socket_file_removed(loop: str, tmp_path: Path) -> None:
    path = tmp_path / "a.sock"

    async def body() -> None:
        async with await skio.serve(aecho, f"unix:{path}"):
            assert path.exists()
            stream = await skio.connect(f"unix:{path}")
            await stream.send_all(b"x\n")
            assert await stream.receive_line(timeout=5) == b"x"
            await stream.aclose()

    run_async(loop, body())
    assert not path.exists()


def test_address_in_use() -> None:
    with (
        socketkit.serve(echo_lines, "127.0.0.1:0") as server,
        pytest.raises(SocketkitError, match="already in use"),
    ):
        socketkit.serve(echo_lines, f"127.0.0.1:{server.address.port}")
    with pytest.raises(AddressError, match="not an address of this machine"):
        socketkit.serve(echo_lines, "192.0.2.1:0")  # TEST-NET-1: not local, nothing is sent


def test_sync_handler_errors_are_logged_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(stream: socketkit.Stream) -> None:
        line = stream.receive_line(timeout=5)
        if line == b"boom":
            raise RuntimeError("handler bug")
        stream.send_all(line + b"\n")

    with (
        caplog.at_level(logging.INFO, logger="socketkit.server"),
        socketkit.serve(handler, "127.0.0.1:0") as server,
    ):
        with socketkit.connect(str(server.address)) as stream:
            stream.send_all(b"boom\n")
            assert stream.receive_some(timeout=5) == b""  # closed by the server
        exchange("sync", str(server.address))
        assert server.connections_accepted == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "handler bug" in str(errors[0].exc_info)


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_handler_errors_are_logged_and_serving_goes_on(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(stream: skio.Stream) -> None:
        line = await stream.receive_line(timeout=5)
        if line == b"boom":
            raise RuntimeError("handler bug")
        await stream.send_all(line + b"\n")

    async def body() -> None:
        async with await skio.serve(handler, "127.0.0.1:0") as server:
            stream = await skio.connect(str(server.address))
            await stream.send_all(b"boom\n")
            assert await stream.receive_some(timeout=5) == b""
            await stream.aclose()
            stream = await skio.connect(str(server.address))
            await stream.send_all(b"fine\n")
            assert await stream.receive_line(timeout=5) == b"fine"
            await stream.aclose()

    with caplog.at_level(logging.INFO, logger="socketkit.server"):
        run_async(loop, body())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "handler bug" in str(errors[0].exc_info)


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_handler_timeout_is_not_called_a_tls_handshake(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(stream: skio.Stream) -> None:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(10)

    async def body() -> None:
        async with await skio.serve(handler, "127.0.0.1:0") as server:
            stream = await skio.connect(str(server.address))
            assert await stream.receive_some(timeout=5) == b""
            await stream.aclose()

    with caplog.at_level(logging.INFO, logger="socketkit.server"):
        run_async(loop, body())
    assert not any("TLS" in r.getMessage() for r in caplog.records)


def test_sync_serve_forever_returns_after_close() -> None:
    server = socketkit.serve(echo_lines, "127.0.0.1:0")
    closer = threading.Timer(0.3, server.close)
    closer.start()
    started = time.monotonic()
    server.serve_forever()
    assert time.monotonic() - started < 5
    closer.join()
    server.close()  # idempotent


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_cancelling_serve_forever_closes(loop: str) -> None:
    async def body() -> None:
        server = await skio.serve(aecho, "127.0.0.1:0")
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.1)
        target = str(server.address)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(SocketkitError):
            await skio.connect(target, timeout=2)
        await server.aclose()  # idempotent

    run_async(loop, body())


def test_sync_close_grace_lets_a_handler_finish() -> None:
    finished = threading.Event()

    def slow(stream: socketkit.Stream) -> None:
        stream.receive_some(timeout=5)
        time.sleep(0.3)  # still working when close() is called
        stream.send_all(b"done")
        finished.set()

    server = socketkit.serve(slow, "127.0.0.1:0")
    with socketkit.connect(str(server.address)) as stream:
        stream.send_all(b"go")
        time.sleep(0.1)
        server.close(grace=5)
        assert finished.is_set()
        assert stream.receive_exactly(4, timeout=5) == b"done"


def test_no_leftover_threads() -> None:
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        with socketkit.serve(echo_lines, "127.0.0.1:0") as server:
            exchange("sync", str(server.address))
    after = [t for t in threading.enumerate() if t.ident not in before]
    assert not after, after
    assert os.getpid()  # the process is still whole


def test_sync_address_after_close() -> None:
    server = socketkit.serve(echo_lines, "127.0.0.1:0")
    address = server.address
    server.close()
    assert server.address == address
    assert str(address) in repr(server)


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_address_after_close(loop: str) -> None:
    async def body() -> None:
        server = await skio.serve(aecho, "127.0.0.1:0")
        address = server.address
        await server.aclose()
        assert server.address == address

    run_async(loop, body())
