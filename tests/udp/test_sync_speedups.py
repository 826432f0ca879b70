"""DatagramSocket.receive's C fast path (``_speedups.c``, sync_dgram_receive) against its
Python definition: the same Datagram (data, address of every family, truncated,
dropped_before), the same errors, and close() waking it; each test runs both ways."""

from __future__ import annotations

import array
import inspect
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import socketkit
from socketkit import DatagramSocket, _accel

PURE = bool(os.environ.get("SOCKETKIT_PURE"))
MODES = ["c", "pure"] if _accel.ENABLED else ["pure"]


ACCELERATED = ["receive", "send"]


@pytest.mark.parametrize("name", ACCELERATED)
def test_the_fast_path_is_installed(name: str) -> None:
    if PURE:
        assert not _accel.ENABLED
        return
    # Not a skip: CI builds the extension (tests/stream/test_speedups.py says how).
    assert _accel.ENABLED, "socketkit._speedups did not build"
    method = vars(DatagramSocket)[name]
    assert type(method).__name__ == "FastMethod"
    python = method.__wrapped__
    assert inspect.signature(getattr(DatagramSocket, name)) == inspect.signature(python)
    assert getattr(DatagramSocket, name).__doc__ == python.__doc__


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the C fast paths ("c") or the Python methods alone ("pure")."""
    saved = {name: vars(DatagramSocket)[name] for name in ACCELERATED}
    if request.param == "pure":
        for name, method in saved.items():
            setattr(DatagramSocket, name, getattr(method, "__wrapped__", method))
    try:
        yield str(request.param)
    finally:
        for name, method in saved.items():
            setattr(DatagramSocket, name, method)


@pytest.mark.usefixtures("mode")
def test_datagrams_of_every_family(tmp_path: Path) -> None:
    with socketkit.udp("127.0.0.1:0") as rx, socketkit.udp(remote=rx.local) as tx:
        tx.send(b"four")
        assert rx.receive() == socketkit.Datagram(b"four", tx.socket.getsockname(), False, 0)
        tx.send(b"")
        assert rx.receive().data == b""  # an empty datagram is a datagram, not a close
    with socketkit.udp("[::1]:0") as rx, socketkit.udp(remote=rx.local) as tx:
        tx.send(b"six")
        got = rx.receive()
        assert got.address == tx.socket.getsockname() and len(got.address) == 4
    path = tmp_path / "rx.sock"
    with socketkit.udp(f"unix:{path}") as rx:
        with socketkit.udp(f"unix:{tmp_path}/tx.sock", remote=f"unix:{path}") as tx:
            tx.send(b"path")
            assert rx.receive() == socketkit.Datagram(b"path", f"{tmp_path}/tx.sock", False, 0)
        with socketkit.udp(remote=f"unix:{path}") as tx:
            tx.send(b"abstract")
            got = rx.receive()
            assert isinstance(got.address, bytes) and got.peer == tx.local
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anonymous:
            anonymous.sendto(b"unbound", str(path))
        assert rx.receive() == socketkit.Datagram(b"unbound", None, False, 0)


@pytest.mark.usefixtures("mode")
def test_sizes_small_and_large_and_truncated() -> None:
    rx = socketkit.udp("127.0.0.1:0", receive_buffer=1 << 20)
    with rx, socketkit.udp(remote=rx.local) as tx:
        for size in (1, 5000, 65507, 3, 65507, 10):  # the scratch buffer, then bytes objects
            tx.send(bytes([size % 256]) * size)
            got = rx.receive()
            assert (len(got.data), got.truncated) == (size, False)
            assert got.data == bytes([size % 256]) * size
    with socketkit.udp("127.0.0.1:0", max_size=100) as rx, socketkit.udp(remote=rx.local) as tx:
        tx.send(b"y" * 101)
        got = rx.receive()
        assert (got.data, got.truncated) == (b"y" * 100, True)
        tx.send(b"z" * 100)
        got = rx.receive()
        assert (got.data, got.truncated) == (b"z" * 100, False)


@pytest.mark.usefixtures("mode")
def test_drops_counted() -> None:
    with socketkit.udp("127.0.0.1:0", receive_buffer=1) as rx:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for n in range(200):
                tx.sendto(b"%d" % n + b"." * 1000, rx.socket.getsockname())
            got = []
            while True:
                try:
                    got.append(rx.receive(timeout=0.2))  # the Python path drains...
                except socketkit.ReadTimeout:
                    break
            markers = 0
            while True:  # ... the fast path (no timeout) reads the markers
                tx.sendto(b"marker", rx.socket.getsockname())
                markers += 1
                last = rx.receive()
                got.append(last)
                if last.data == b"marker":
                    break
        assert sum(d.dropped_before or 0 for d in got) == 200 + markers - len(got) == rx.drops
        assert rx.drops > 0


@pytest.mark.usefixtures("mode")
def test_errors_are_translated_and_chained() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socketkit.udp(remote=f"127.0.0.1:{port}") as sock:
        sock.send(b"anyone?")
        with pytest.raises(socketkit.ConnectionRefused, match="ICMP port unreachable") as info:
            sock.receive()
        assert isinstance(info.value.__cause__, ConnectionRefusedError)


@pytest.mark.usefixtures("mode")
def test_close_wakes_a_blocked_receive() -> None:
    sock = socketkit.udp("127.0.0.1:0")
    outcome: list[object] = []

    def receiver() -> None:
        try:
            outcome.append(sock.receive())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    time.sleep(0.2)
    sock.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], socketkit.ClosedResourceError)
    with pytest.raises(socketkit.ClosedResourceError):
        sock.receive()


@pytest.mark.usefixtures("mode")
def test_send_on_a_connected_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(10)
        with socketkit.udp(remote=f"127.0.0.1:{peer.getsockname()[1]}") as sock:
            assert sock.send(b"bytes") == 5
            assert sock.send(bytearray(b"bytearray")) == 9
            assert sock.send(memoryview(b"..view..")[2:6]) == 4
            assert sock.send(array.array("i", [1, 2])) == 8  # not bytes-shaped: Python's path
            assert sock.send(b"") == 0
            assert sock.send(b"y" * 65507) == 65507
            got = [peer.recv(70000) for _ in range(6)]
            assert got == [b"bytes", b"bytearray", b"view", array.array("i", [1, 2]).tobytes(),
                           b"", b"y" * 65507]  # fmt: skip
            with pytest.raises(socketkit.DatagramTooLarge) as info:
                sock.send(b"z" * 65508)
            assert (info.value.size, info.value.limit) == (65508, 65507)
            assert isinstance(info.value.__cause__, OSError)
            sock.close()
            with pytest.raises(socketkit.ClosedResourceError):
                sock.send(b"closed")


@pytest.mark.usefixtures("mode")
def test_send_reports_port_unreachable_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socketkit.udp(remote=f"127.0.0.1:{port}") as sock:
        sock.send(b"first")
        deadline = time.monotonic() + 10
        with pytest.raises(socketkit.ConnectionRefused, match=r"^send: 127\.0\.0\.1:") as info:
            while time.monotonic() < deadline:
                sock.send(b"again")
                time.sleep(0.01)
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
