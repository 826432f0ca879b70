"""``listen -u`` reads its socket through the batch layer (``socketkit._udp_batch``'s
``receive_many``, recvmmsg where the kernel has it), not a receive loop of its own: one call
takes a burst of queued datagrams, each still handled whole, by source, and a datagram longer
than the receive buffer is reported and dropped, not cut."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from socketkit.netcat import udp_server
from socketkit.netcat.access import AccessList
from socketkit.netcat.options import NetcatOptions
from socketkit.netcat.report import Reporter
from socketkit.netcat.tap import Tap


def _server(sock: socket.socket, stream: io.StringIO) -> udp_server.UdpServer:
    opts = NetcatOptions(udp=True, keep_open=True, recv_only=True)
    reporter = Reporter("socketkit listen", json_lines=False, stream=stream)
    return udp_server.UdpServer(sock, opts, reporter, AccessList(), Tap())


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Every ``receive_many`` call listen -u makes: (max_count, max_size, datagrams got)."""
    calls: list[tuple[int, int, int]] = []
    real = udp_server.receive_many

    def spying(sock: socket.socket, max_count: int, max_size: int, **kw: Any) -> Any:
        got = real(sock, max_count, max_size, **kw)
        calls.append((max_count, max_size, len(got)))
        return got

    monkeypatch.setattr(udp_server, "receive_many", spying)
    return calls


def test_a_burst_of_datagrams_is_one_receive_many_call(
    spy: list[tuple[int, int, int]], capfd: pytest.CaptureFixture[bytes]
) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        stream = io.StringIO()
        server = _server(sock, stream)
        for peer, data in ((a, b"one."), (b, b"two."), (a, b"three.")):
            peer.sendto(data, sock.getsockname())
        server._on_datagram(time.monotonic())
        assert spy == [(64, udp_server.MAX_DATAGRAM, 3)]
        assert capfd.readouterr().out == "one.two.three."
        assert sorted(s.shown for s in server.sessions) == sorted(
            f"127.0.0.1:{p.getsockname()[1]}" for p in (a, b)
        )
        assert sorted(s.received for s in server.sessions) == [4, 4 + 6]
        server._on_datagram(time.monotonic())  # nothing queued: one call, no error
        assert spy[1:] == []


def test_a_datagram_longer_than_the_buffer_is_reported_and_dropped(
    spy: list[tuple[int, int, int]], capfd: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    path = str(tmp_path / "l.sock")
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as peer,
    ):
        sock.bind(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        peer.bind(str(tmp_path / "p.sock"))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        stream = io.StringIO()
        server = _server(sock, stream)
        long = udp_server.MAX_UNIX_DATAGRAM + 1000
        peer.sendto(b"before", path)
        peer.sendto(bytes(long), path)
        peer.sendto(b"after", path)
        server._on_datagram(time.monotonic())
        assert spy == [(64, udp_server.MAX_UNIX_DATAGRAM, 3)]
        assert capfd.readouterr().out == "beforeafter"  # nothing of the long one
        assert stream.getvalue() == (
            f"socketkit listen: warning: a datagram from unix:{tmp_path}/p.sock was longer "
            f"than {udp_server.MAX_UNIX_DATAGRAM} bytes: it is dropped\n"
        )
        (session,) = server.sessions
        assert session.received == len(b"beforeafter")


def test_the_largest_ipv6_datagram_is_taken_whole(
    spy: list[tuple[int, int, int]], capfd: pytest.CaptureFixture[bytes]
) -> None:
    """65,527 bytes, the largest UDP payload over IPv6 (20 more than over IPv4)."""
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer,
    ):
        sock.bind(("::1", 0))
        sock.setblocking(False)
        stream = io.StringIO()
        server = _server(sock, stream)
        peer.sendto(b"6" * 65527, sock.getsockname()[:2])
        server._on_datagram(time.monotonic())
        assert capfd.readouterr().out == "6" * 65527
        assert stream.getvalue() == ""
        assert spy == [(64, 65527, 1)]
