"""Sync stream, one thread reading while another writes, each with its own timeout: the
deadlines are per call, not one socket timeout that each call sets for both (issue: the
full-duplex TLS contract test once failed under load in the pure-Python run with EAGAIN
surfacing as a ``SocketkitError``; a writer could also wait with the reader's short timeout,
and the reader with the writer's long one).

Thousands of rounds under CPU load (busy-loop processes, bounded in time), plain TCP and TLS,
with the C fast paths and with their pure-Python twins: no byte lost, no spurious error, and
every timeout honoured within reason.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import socketkit
from socketkit import ReadTimeout

from .aio_helpers import accel
from .contract import TLSFiles

__all__ = ["accel"]  # the fixture, used by name

ROUNDS = 5000
#: How late a timed-out receive may return (seconds), with every core busy.
LATE = 1.0
#: The whole exchange; a hang is a failure.
LIMIT = 60.0


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """One busy-loop process per core, each ending by itself after LIMIT seconds."""
    code = f"import time\nend = time.monotonic() + {LIMIT}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)


def small_buffers(sock: socket.socket) -> None:
    """Fixed kernel buffers (no autotuning to megabytes), so that sends wait for a slow
    reader; not below loopback's 64 KiB segments, where TCP stalls on window updates."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)


def _chunks(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([1, 100, 400, 1000])) for _ in range(ROUNDS)]


@pytest.mark.parametrize("writer_timeout", [None, 30.0], ids=["writer-no-timeout", "writer-30s"])
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_reader_and_writer_threads_keep_their_own_deadlines(
    tls: bool, writer_timeout: float | None, accel: str, cpu_load: None, tls_files: TLSFiles
) -> None:
    seed = random.randrange(1 << 30)
    upstream = _chunks(seed)  # client -> server
    downstream = _chunks(seed + 1)  # server -> client, with pauses: the reader times out
    received_by_server = bytearray()
    errors: list[str] = []
    server_done = threading.Event()

    def handler(stream: socketkit.Stream) -> None:
        small_buffers(stream.socket)

        def send_down() -> None:
            rng = random.Random(seed)
            try:
                for chunk in downstream:
                    stream.send_all(chunk)
                    if rng.random() < 0.05:
                        time.sleep(0.003)
            except Exception as exc:  # reported below, with the test's other errors
                errors.append(f"server send: {exc!r}")

        sender = threading.Thread(target=send_down, daemon=True)
        sender.start()
        try:
            rng = random.Random(seed + 3)
            while data := stream.receive_some(1024, timeout=LIMIT):
                received_by_server.extend(data)
                if rng.random() < 0.8:
                    time.sleep(0.0005)  # a slow reader: the client's sends wait
        except Exception as exc:
            errors.append(f"server receive: {exc!r}")
        sender.join(LIMIT)
        server_done.set()

    server_tls: Any = False
    client_tls: Any = False
    if tls:
        server_tls = socketkit.server_context(
            cert_file=tls_files.cert_file, key_file=tls_files.key_file
        )
        client_tls = socketkit.client_context(ca_file=tls_files.ca_file)
    server = socketkit.serve(handler, "127.0.0.1:0", tls=server_tls)
    try:
        stream = socketkit.connect(f"127.0.0.1:{server.address.port}", tls=client_tls)
        small_buffers(stream.socket)
        received = bytearray()
        lateness: list[float] = []
        timeouts = 0

        def read() -> None:
            nonlocal timeouts
            rng = random.Random(seed + 2)
            want = sum(map(len, downstream))
            end = time.monotonic() + LIMIT
            try:
                while len(received) < want and time.monotonic() < end:
                    timeout = rng.choice([0.0005, 0.002, 0.01])
                    start = time.monotonic()
                    try:
                        received.extend(stream.receive_some(timeout=timeout))
                    except ReadTimeout:
                        timeouts += 1
                        lateness.append(time.monotonic() - start - timeout)
            except Exception as exc:
                errors.append(f"client receive: {exc!r}")

        def write() -> None:
            try:
                for chunk in upstream:
                    stream.send_all(chunk, timeout=writer_timeout)
                stream.send_eof()
            except Exception as exc:
                errors.append(f"client send: {exc!r}")

        threads = [threading.Thread(target=read), threading.Thread(target=write)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(LIMIT)
        assert not any(thread.is_alive() for thread in threads), "the exchange hung"
        assert server_done.wait(LIMIT)
        stream.close()
    finally:
        server.close(grace=5)

    assert not errors, f"seed {seed}: {errors}"
    assert bytes(received_by_server) == b"".join(upstream), f"seed {seed}"
    assert bytes(received) == b"".join(downstream), f"seed {seed}"
    assert timeouts >= 10, f"the reader never had to wait ({timeouts} timeouts)"
    assert max(lateness) < LATE, f"a receive timed out {max(lateness):.3f} s late"


def test_the_socket_stays_blocking_and_timeouts_are_per_call() -> None:
    """The stream never sets the socket's own timeout (shared by every thread): a call with a
    timeout waits with its own deadline."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = socketkit.connect(f"127.0.0.1:{listener.getsockname()[1]}", timeout=5)
        peer, _ = listener.accept()
        with peer, stream:
            assert stream.socket.gettimeout() is None
            with pytest.raises(ReadTimeout):
                stream.receive_some(timeout=0.01)
            assert stream.socket.gettimeout() is None
            stream.send_all(b"x", timeout=5)
            assert stream.socket.gettimeout() is None
            assert peer.recv(10) == b"x"
