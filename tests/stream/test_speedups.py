"""The C fast paths (``src/socketkit/_speedups.c``, ``_accel.py``): built and in use, the same
API as the Python methods they stand in front of, and the same behaviour at every edge they
handle themselves (EOF, reset, a socket made non-blocking, large sends, awaits from elsewhere).
The pure-Python twin of the hot path runs the stream contract suite in a subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import socketkit
import socketkit.aio as skio
from socketkit import _accel
from socketkit._async.driver import HandlerDriver
from socketkit._async.protocol import StreamProtocol
from socketkit._async.stream import DrivenStream
from socketkit._async.stream import Stream as AioStream

from .peers import run_async

PURE = bool(os.environ.get("SOCKETKIT_PURE"))
ROOT = Path(__file__).resolve().parents[2]
ACCELERATED = [
    (socketkit.Stream, "receive_some"),
    (socketkit.Stream, "send_all"),
    (AioStream, "send_all"),
    (AioStream, "receive_into"),
    (DrivenStream, "receive_some"),
    (StreamProtocol, "data_received"),
    (HandlerDriver, "_step"),
]


def test_the_extension_is_built_and_used() -> None:
    if PURE:
        assert not _accel.ENABLED
        return
    # Not a skip: CI installs gcc (scripts/debian-packages.txt) and must test the C paths.
    assert _accel.ENABLED, (
        "socketkit._speedups did not build: install gcc and the Python headers, "
        "then pip install -e . again"
    )
    for cls, name in ACCELERATED:
        assert type(vars(cls)[name]).__name__ == "FastMethod", (cls, name)


@pytest.mark.parametrize(("cls", "name"), ACCELERATED)
def test_fast_methods_keep_the_python_signature_and_docs(cls: type, name: str) -> None:
    method = vars(cls)[name]
    python = getattr(method, "__wrapped__", method)
    assert inspect.isfunction(python)
    assert inspect.signature(getattr(cls, name)) == inspect.signature(python)
    assert getattr(cls, name).__doc__ == python.__doc__
    assert getattr(cls, name).__name__ == name


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socketkit.Stream, socket.socket]]:
    """A socketkit Stream and the plain socket at the other end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
    stream = socketkit.Stream(client)
    try:
        yield stream, peer
    finally:
        stream.close()
        peer.close()


def test_sync_receive_some_respects_max_bytes_and_reports_eof_twice(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    stream, peer = tcp_pair
    peer.sendall(b"0123456789abcdef")
    peer.shutdown(socket.SHUT_WR)
    got = stream.receive_some(10)
    assert got == b"0123456789"
    assert stream.receive_some(10) == b"abcdef"
    assert stream.receive_some() == b""
    assert stream.receive_some() == b""  # after EOF: the Python path, same answer


def test_sync_receive_some_small_and_bulk_reads_in_turn(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    """Small reads go through the thread's scratch buffer, a bulk reader's straight into the
    result (``_speedups.c``): switching between the two in one thread loses or mixes up no
    byte, whatever max_bytes is."""
    stream, peer = tcp_pair
    # (bytes sent, max_bytes of each receive)
    turns = [(3, 65_536), (70_000, 65_536), (10, 100), (1 << 20, 1 << 21), (1, 65_536),
             (65_536, 65_536), (5000, 8), (2, 65_536)]  # fmt: skip
    for size, max_bytes in turns:
        chunk = os.urandom(size)
        sender = threading.Thread(target=peer.sendall, args=(chunk,))
        sender.start()
        got = bytearray()
        while len(got) < len(chunk):
            data = stream.receive_some(max_bytes)
            assert 0 < len(data) <= max_bytes
            got += data
        sender.join()
        assert bytes(got) == chunk


def test_sync_socket_closed_behind_the_streams_back_is_an_error_not_another_socket(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    """The fast paths ask the socket for its fd on every call: after ``stream.socket.close()``
    the number may already belong to another socket, which must never be read or written."""
    stream, _peer = tcp_pair
    fd = stream.fileno()
    mine, other_end = socket.socketpair()  # before the close: numbers of their own
    stream.socket.close()
    os.dup2(mine.fileno(), fd)  # another socket now has the stream's old number
    other_end.setblocking(False)
    try:
        with pytest.raises(socketkit.ClosedResourceError):
            stream.send_all(b"not for this socket")
        with pytest.raises(socketkit.ClosedResourceError):
            stream.receive_some()
        with pytest.raises(BlockingIOError):
            other_end.recv(100)  # nothing went to the other socket
    finally:
        os.close(fd)
        mine.close()
        other_end.close()


def test_sync_reset_is_a_broken_stream_chained_to_the_os_error(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    stream, peer = tcp_pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    peer.close()
    time.sleep(0.05)
    with pytest.raises(socketkit.BrokenStreamError, match="receive") as info:
        stream.receive_some()
    assert isinstance(info.value.__cause__, ConnectionResetError)
    with pytest.raises(socketkit.SocketkitError) as sent:
        for _ in range(100):  # the first send may still be accepted by the kernel
            stream.send_all(b"x" * 1024)
    assert isinstance(sent.value.__cause__, OSError)


def test_sync_paths_wait_on_a_socket_made_non_blocking_behind_their_back(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    stream, peer = tcp_pair
    os.set_blocking(stream.fileno(), False)  # not via settimeout: the stream stays direct
    timer = threading.Timer(0.2, peer.sendall, (b"late",))
    timer.start()
    try:
        assert stream.receive_some() == b"late"  # polled, not EAGAIN
    finally:
        timer.join()
    big = os.urandom(8 << 20)  # more than the socket buffers hold: send must wait too
    got = bytearray()
    reader = threading.Thread(target=_read_n, args=(peer, len(big), got))
    reader.start()
    stream.send_all(big)
    reader.join(30)
    assert bytes(got) == big


def _read_n(sock: socket.socket, n: int, into: bytearray) -> None:
    while len(into) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        into += chunk


class _Alarm(Exception):
    pass


def _raise_alarm(signum: int, frame: object) -> None:
    raise _Alarm


def _alarm_main_thread_in(seconds: float) -> threading.Timer:
    """SIGALRM to the main thread itself (a process-wide signal may go to any thread, and only
    the thread that takes it sees EINTR)."""
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGALRM))
    timer.start()
    return timer


@pytest.mark.parametrize("blocking", [True, False])
def test_sync_paths_run_signal_handlers_while_they_wait(
    tcp_pair: tuple[socketkit.Stream, socket.socket], blocking: bool
) -> None:
    """A signal that arrives while receive_some or send_all waits (in recv/send, or in the
    poll of a socket made non-blocking) runs its handler, and what the handler raises comes
    out (Ctrl-C is not lost); a handler that returns lets the wait go on."""
    assert threading.current_thread() is threading.main_thread()
    stream, peer = tcp_pair
    os.set_blocking(stream.fileno(), blocking)
    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    timers = []
    try:
        timers.append(_alarm_main_thread_in(0.2))
        with pytest.raises(_Alarm):
            stream.receive_some()
        timers.append(_alarm_main_thread_in(0.2))
        with pytest.raises(_Alarm):
            stream.send_all(b"x" * (64 << 20))  # nobody reads: it waits until the alarm
        # A handler that returns: the receive goes on and gets the bytes sent later.
        signal.signal(signal.SIGALRM, lambda signum, frame: None)
        timers.append(_alarm_main_thread_in(0.1))
        timers.append(threading.Timer(0.3, peer.sendall, (b"after",)))
        timers[-1].start()
        assert stream.receive_some() == b"after"
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        signal.signal(signal.SIGALRM, previous)


def test_sync_large_send_lets_other_threads_run(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    """A 32 MiB send_all releases the GIL while it waits: a reader thread in this process
    drains it (were the GIL held, this would deadlock until the timeout)."""
    stream, peer = tcp_pair
    data = os.urandom(32 << 20)
    got = bytearray()
    reader = threading.Thread(target=_read_n, args=(peer, len(data), got), daemon=True)
    reader.start()
    stream.send_all(memoryview(data))
    reader.join(30)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_sync_send_of_a_non_contiguous_buffer_fails_as_in_python(
    tcp_pair: tuple[socketkit.Stream, socket.socket],
) -> None:
    stream, _peer = tcp_pair
    python: Callable[..., Any] = getattr(vars(socketkit.Stream)["send_all"], "__wrapped__", None)
    view = memoryview(b"abcdef")[::2]
    with pytest.raises((TypeError, BufferError)) as fast:
        stream.send_all(view)
    if python is not None:
        with pytest.raises((TypeError, BufferError)) as slow:
            python(stream, view)
        assert type(fast.value) is type(slow.value)


async def _serve_once(handler: Callable[[skio.Stream], Any], send: list[bytes]) -> bytes:
    server = await skio.serve(handler, "127.0.0.1:0")
    try:
        stream = await skio.connect(f"127.0.0.1:{server.address.port}")
        try:
            for chunk in send:
                await stream.send_all(chunk)
                await asyncio.sleep(0.05)
            await stream.send_eof()
            out = b""
            while chunk := await asyncio.wait_for(stream.receive_some(), 10):
                out += chunk
            return out
        finally:
            await stream.aclose()
    finally:
        await server.aclose(grace=2)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aio_receive_some_awaited_later_by_a_task_or_gather(loop: str) -> None:
    """The driven awaitable decides when it is awaited, not when receive_some is called: by
    the handler itself it waits DRIVEN; in a Task (create_task, gather) it is the ordinary
    receive; a cancelled one consumes nothing."""

    async def handler(stream: skio.Stream) -> None:
        pending = stream.receive_some()  # called now, awaited after another await
        await asyncio.sleep(0.01)
        first = await pending
        second = await asyncio.create_task(stream.receive_some())  # type: ignore[arg-type]
        (third,) = await asyncio.gather(stream.receive_some())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.receive_some(), 0.01)
        rest = await stream.receive_some()
        await stream.send_all(b"|".join([first, second, third, rest]))

    out = run_async(loop, _serve_once(handler, [b"a", b"b", b"c", b"d"]))
    assert out == b"a|b|c|d"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aio_send_all_after_send_eof_is_the_python_error(loop: str) -> None:
    async def handler(stream: skio.Stream) -> None:
        await stream.receive_some()
        await stream.send_all(b"bye")
        await stream.send_eof()
        with pytest.raises(socketkit.ClosedResourceError, match="send_eof"):
            await stream.send_all(b"more")

    assert run_async(loop, _serve_once(handler, [b"hi"])) == b"bye"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aio_bulk_reader_spins_briefly_then_sleeps(loop: str) -> None:
    """receive_into with a bulk-sized buffer tries a few loop iterations before it sleeps in
    epoll (docs/design.md): bounded, so an idle connection costs no CPU; and every byte still
    arrives, in order, whether a read lands during the tries or after the sleep."""

    async def main() -> tuple[float, bytes]:
        got = bytearray()
        idle_cpu = asyncio.get_running_loop().create_future()

        async def handler(stream: skio.Stream) -> None:
            buf = bytearray(256 * 1024)
            while n := await stream.receive_into(buf):
                got.extend(buf[:n])
                if len(got) == 3 and not idle_cpu.done():
                    # Now idle: the client waits before sending more.
                    start = time.process_time()
                    n = await stream.receive_into(buf)
                    idle_cpu.set_result(time.process_time() - start)
                    got.extend(buf[:n])
            await stream.send_all(b"done")

        server = await skio.serve(handler, "127.0.0.1:0")
        try:
            stream = await skio.connect(f"127.0.0.1:{server.address.port}")
            await stream.send_all(b"abc")
            await asyncio.sleep(0.5)
            bulk = os.urandom(8 << 20)
            await stream.send_all(b"d" + bulk)
            await stream.send_eof()
            assert await asyncio.wait_for(stream.receive_some(), 10) == b"done"
            await stream.aclose()
            return await idle_cpu, bytes(got) == b"abcd" + bulk
        finally:
            await server.aclose(grace=2)

    cpu, intact = run_async(loop, main())
    assert intact
    assert cpu < 0.1, f"{cpu:.3f} s of CPU while idle for 0.5 s: the wait spins"


@pytest.mark.skipif(PURE, reason="this run is the pure one (run without SOCKETKIT_PURE)")
def test_pure_python_twin_passes_the_stream_contract() -> None:
    """The same suite, with SOCKETKIT_PURE=1: where the extension does not build, socketkit
    runs these Python paths, so they must stay correct. The child leaves this test out (it
    is the child); it was an early return that counted as a pass there."""
    tests = ["tests/stream/test_contract.py", "tests/stream/test_handler_driver.py"]
    this = "tests/stream/test_speedups.py::test_pure_python_twin_passes_the_stream_contract"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests,
         "tests/stream/test_speedups.py", "--deselect", this],
        cwd=ROOT, env=os.environ | {"SOCKETKIT_PURE": "1"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-500:]
