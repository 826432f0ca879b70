"""socketkit.serve_udp (threads): per-peer conversations over one socket, with bounds.

Clients are plain ``socket`` datagram sockets on loopback, so what is asserted is what the
server put on the wire for each source address.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

import socketkit
from socketkit import ClosedResourceError, ReadTimeout
from socketkit._sync.udp_server import Conversation

PEERS = 200


def _port(server: socketkit.UDPServer) -> int:
    port = server.address.port
    assert port is not None
    return port


@contextmanager
def clients(count: int, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            s.bind((host, 0))
            s.settimeout(10)
            socks.append(s)
        yield socks


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_200_peers_at_once_each_get_only_their_own_replies() -> None:
    barrier = threading.Barrier(PEERS, timeout=20)

    def handler(conv: Conversation) -> None:
        first = conv.receive(timeout=20)
        barrier.wait()  # every conversation is live at the same time
        conv.send(b"hello " + conv.peer.encode() + b" " + first)
        for data in conv:
            conv.send(conv.peer.encode() + b" " + data)

    with socketkit.serve_udp(handler, "127.0.0.1:0") as server, clients(PEERS) as socks:
        port = _port(server)
        for i, s in enumerate(socks):
            s.sendto(b"first-%d" % i, ("127.0.0.1", port))
        for i, s in enumerate(socks):
            me = f"127.0.0.1:{s.getsockname()[1]}"
            data, src = s.recvfrom(65535)
            assert src == ("127.0.0.1", port)
            assert data == f"hello {me} first-{i}".encode()
        assert server.active_conversations == PEERS
        for round_ in range(3):
            for i, s in enumerate(socks):
                s.sendto(b"%d.%d" % (i, round_), ("127.0.0.1", port))
            for i, s in enumerate(socks):
                me = f"127.0.0.1:{s.getsockname()[1]}"
                assert s.recvfrom(65535)[0] == f"{me} {i}.{round_}".encode()
        assert server.peers_accepted == PEERS
        assert server.peers_refused == 0


def test_a_flood_of_sources_is_bounded_by_max_peers() -> None:
    release = threading.Event()

    def handler(conv: Conversation) -> None:
        release.wait(30)

    max_peers = 40
    sources = 3000
    server = socketkit.serve_udp(handler, "127.0.0.1:0", max_peers=max_peers)
    try:
        port = _port(server)
        seen = set()
        before = None
        # Thousands of source addresses: one fresh socket (a fresh port) per datagram, spread
        # over 127.0.0.1-127.0.0.30 so the per-IP bound is not what stops them.
        for i in range(sources):
            if i == 300:  # the table is full: from here on every source is refused
                _wait_for(lambda: server.peers_accepted == max_peers)
                tracemalloc.start()
                before = tracemalloc.take_snapshot()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((f"127.0.0.{i % 30 + 1}", 0))
                if s.getsockname() in seen:
                    continue  # the kernel gave a port out again: one datagram per source
                seen.add(s.getsockname())
                s.sendto(b"x", ("127.0.0.1", port))
            if len(seen) % 200 == 0:
                # Let the receiver keep up (the kernel's queue is not under test here).
                n = len(seen)
                _wait_for(lambda n=n: server.peers_accepted + server.peers_refused >= n)
        _wait_for(lambda: server.peers_accepted + server.peers_refused >= len(seen))
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        assert before is not None
        stats = after.compare_to(before, "filename")
        grown = sum(s.size_diff for s in stats if "/socketkit/" in s.traceback[0].filename)
        assert grown < 16 * 1024, f"the server grew by {grown} bytes refusing 2,700 sources"
        assert server.active_conversations == max_peers
        assert server.peers_accepted == max_peers
        assert server.peers_refused == len(seen) - max_peers
        assert len(server._table) == max_peers
        assert len(server._threads) <= max_peers  # one thread per admitted peer, no more
        handlers = [t for t in threading.enumerate() if t.name.startswith("socketkit-udp-conv")]
        assert len(handlers) == max_peers
    finally:
        release.set()
        server.close()


def test_max_peers_per_ip_counts_one_source() -> None:
    release = threading.Event()
    server = socketkit.serve_udp(
        lambda conv: release.wait(30), "127.0.0.1:0", max_peers=100, max_peers_per_ip=3
    )
    try:
        with clients(5) as socks, clients(2, "127.0.0.2") as others:
            for s in socks + others:
                s.sendto(b"x", ("127.0.0.1", _port(server)))
            _wait_for(lambda: server.peers_accepted + server.peers_refused == 7)
            assert server.peers_accepted == 5  # 3 from 127.0.0.1, 2 from 127.0.0.2
            assert server.peers_refused == 2
    finally:
        release.set()
        server.close()


def test_an_idle_peer_ends_and_comes_back_as_a_new_conversation() -> None:
    ended: list[tuple[str, float]] = []

    def handler(conv: Conversation) -> None:
        for data in conv:
            conv.send(data)
        ended.append((conv.peer, time.monotonic()))  # iteration stopped: it expired

    with (
        socketkit.serve_udp(handler, "127.0.0.1:0", idle_timeout=0.3) as server,
        clients(1) as (s,),
    ):
        sent = time.monotonic()
        s.sendto(b"one", ("127.0.0.1", _port(server)))
        assert s.recv(100) == b"one"
        _wait_for(lambda: bool(ended))
        assert ended[0][0] == f"127.0.0.1:{s.getsockname()[1]}"
        assert 0.3 <= ended[0][1] - sent < 3.0  # silent from its only datagram on
        _wait_for(lambda: server.active_conversations == 0)
        s.sendto(b"two", ("127.0.0.1", _port(server)))
        assert s.recv(100) == b"two"
        assert server.peers_accepted == 2


def test_a_failing_handler_is_logged_and_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    def handler(conv: Conversation) -> None:
        data = conv.receive()
        if data == b"boom":
            raise ValueError("handler bug")
        conv.send(b"ok " + data)
        for more in conv:
            conv.send(b"ok " + more)

    with (
        caplog.at_level(logging.INFO, "socketkit.server"),
        socketkit.serve_udp(handler, "127.0.0.1:0") as server,
        clients(2) as (bad, good),
    ):
        port = _port(server)
        bad_peer = f"127.0.0.1:{bad.getsockname()[1]}"
        bad.sendto(b"boom", ("127.0.0.1", port))
        _wait_for(lambda: server.peers_accepted == 1 and server.active_conversations == 0)
        good.sendto(b"1", ("127.0.0.1", port))
        assert good.recv(100) == b"ok 1"
        bad.sendto(b"again", ("127.0.0.1", port))  # a new conversation for it
        assert bad.recv(100) == b"ok again"
    records = [r for r in caplog.records if r.getMessage() == f"handler for {bad_peer} raised"]
    assert len(records) == 1 and records[0].exc_info is not None
    assert "ValueError: handler bug" in caplog.text


def test_a_full_queue_drops_the_newest_and_counts_them() -> None:
    go = threading.Event()
    got: list[bytes] = []
    convs: list[Conversation] = []

    def handler(conv: Conversation) -> None:
        convs.append(conv)
        go.wait(30)
        got.extend(conv.receive(timeout=5) for _ in range(8))

    with socketkit.serve_udp(handler, "127.0.0.1:0", max_queue=8) as server, clients(1) as (s,):
        for i in range(30):
            s.sendto(b"%d" % i, ("127.0.0.1", _port(server)))
        _wait_for(lambda: bool(convs) and convs[0].received + convs[0].dropped == 30)
        go.set()
        _wait_for(lambda: len(got) == 8)
        assert got == [b"%d" % i for i in range(8)]
        assert convs[0].dropped == 22
        assert server.datagrams_dropped == 22


def test_receive_timeout_and_closed_conversation() -> None:
    outcome: list[str] = []

    def handler(conv: Conversation) -> None:
        conv.receive()
        try:
            conv.receive(timeout=0.1)
        except ReadTimeout as exc:
            outcome.append(str(exc))
        conv.close()
        try:
            conv.receive()
        except ClosedResourceError as exc:
            outcome.append(str(exc))
        conv.send(b"bye")  # a last reply after the end still goes out

    with socketkit.serve_udp(handler, "127.0.0.1:0") as server, clients(1) as (s,):
        s.sendto(b"hi", ("127.0.0.1", _port(server)))
        assert s.recv(100) == b"bye"
        me = f"127.0.0.1:{s.getsockname()[1]}"
        assert outcome == [
            f"receive from {me}: no datagram within 0.1 s",
            f"the conversation with {me} has ended",
        ]


def test_unix_datagram_peers(tmp_path: object) -> None:
    path = f"{tmp_path}/srv.sock"

    def handler(conv: Conversation) -> None:
        for data in conv:
            conv.send(data.upper())

    with socketkit.serve_udp(handler, f"unix:{path}") as server:
        assert server.address.path == path
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            c.bind(f"{tmp_path}/c.sock")
            c.settimeout(10)
            c.sendto(b"abc", path)
            assert c.recv(100) == b"ABC"
    import os

    assert not os.path.exists(path)  # the server's socket file is removed on close


def test_close_ends_waiting_handlers_and_the_server_stays_closed() -> None:
    ended = threading.Event()

    def handler(conv: Conversation) -> None:
        for _ in conv:
            pass
        ended.set()

    server = socketkit.serve_udp(handler, "127.0.0.1:0")
    with clients(1) as (s,):
        s.sendto(b"x", ("127.0.0.1", _port(server)))
        _wait_for(lambda: server.active_conversations == 1)
        t0 = time.monotonic()
        server.close()
        assert ended.is_set() and time.monotonic() - t0 < 2.0
        server.close()  # idempotent
    with pytest.raises(ValueError, match="max_queue must be a positive int"):
        socketkit.serve_udp(handler, "127.0.0.1:0", max_queue=0)


def test_too_large_a_reply_says_the_limit_and_ipv6_peers_are_served() -> None:
    errors: list[socketkit.DatagramTooLarge] = []

    def handler(conv: Conversation) -> None:
        for data in conv:
            try:
                conv.send(b"x" * 70000)
            except socketkit.DatagramTooLarge as exc:
                errors.append(exc)
            conv.send(data)

    with (
        socketkit.serve_udp(handler, "[::1]:0") as server,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c,
    ):
        c.settimeout(10)
        c.sendto(b"six", ("::1", _port(server)))
        assert c.recvfrom(100) == (b"six", ("::1", _port(server), 0, 0))
    assert len(errors) == 1
    assert (errors[0].size, errors[0].limit) == (70000, 65527)
    assert "70000 bytes" in str(errors[0]) and "65527" in str(errors[0])


def test_queued_datagrams_outlive_the_end_and_replies_do_not_keep_a_peer_alive() -> None:
    after_end: list[object] = []
    ticks = 0

    def handler(conv: Conversation) -> None:
        nonlocal ticks
        conv.receive()
        while True:
            try:
                conv.receive(timeout=0.05)
            except ReadTimeout:
                conv.send(b"tick")  # replies only: the peer stays silent
                ticks += 1
            except ClosedResourceError:
                break
        after_end.append(time.monotonic())

    with (
        socketkit.serve_udp(handler, "127.0.0.1:0", idle_timeout=0.3) as server,
        clients(1) as (s,),
    ):
        sent = time.monotonic()
        s.sendto(b"only", ("127.0.0.1", _port(server)))
        _wait_for(lambda: bool(after_end))
        assert 0.3 <= after_end[0] - sent < 3.0 and ticks >= 3
        assert s.recv(100) == b"tick"

    queued: list[object] = []
    gate = threading.Event()

    def closer(conv: Conversation) -> None:
        gate.wait(10)
        conv.close()
        try:
            while True:
                queued.append(conv.receive())
        except ClosedResourceError as exc:
            queued.append(type(exc))

    with socketkit.serve_udp(closer, "127.0.0.1:0") as server, clients(1) as (s,):
        for i in range(3):
            s.sendto(b"%d" % i, ("127.0.0.1", _port(server)))
        _wait_for(lambda: server.active_conversations == 1)
        conv_received = lambda: server._table.get(s.getsockname()).value.received  # noqa: E731
        _wait_for(lambda: conv_received() == 3)
        gate.set()
        _wait_for(lambda: len(queued) == 4)
    assert queued == [b"0", b"1", b"2", ClosedResourceError]


def test_an_ended_conversation_holds_its_address_until_the_handler_returns() -> None:
    ended = threading.Event()
    leave = threading.Event()
    started: list[str] = []

    def handler(conv: Conversation) -> None:
        started.append(conv.peer)
        conv.receive()
        conv.close()
        ended.set()
        leave.wait(10)  # still running after the end

    with socketkit.serve_udp(handler, "127.0.0.1:0") as server, clients(1) as (s,):
        port = _port(server)
        s.sendto(b"a", ("127.0.0.1", port))
        ended.wait(10)
        s.sendto(b"b", ("127.0.0.1", port))  # its conversation has ended: dropped, counted
        _wait_for(lambda: server.datagrams_dropped == 1)
        assert server.peers_accepted == 1
        leave.set()
        _wait_for(lambda: server.active_conversations == 0)
        s.sendto(b"c", ("127.0.0.1", port))  # now a new conversation
        _wait_for(lambda: server.peers_accepted == 2)
    assert len(started) == 2


def test_a_socketkit_error_is_one_warning_and_refusals_are_logged_at_most_every_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(conv: Conversation) -> None:
        conv.receive()
        raise socketkit.SocketkitError("the peer spoke nonsense")

    release = threading.Event()
    with caplog.at_level(logging.INFO, "socketkit.server"):
        with socketkit.serve_udp(handler, "127.0.0.1:0") as server, clients(1) as (s,):
            me = f"127.0.0.1:{s.getsockname()[1]}"
            s.sendto(b"x", ("127.0.0.1", _port(server)))
            _wait_for(lambda: server.active_conversations == 0 and server.peers_accepted == 1)
        assert [r.getMessage() for r in caplog.records] == [
            f"conversation with {me} failed: the peer spoke nonsense"
        ]
        assert caplog.records[0].levelno == logging.WARNING
        assert caplog.records[0].exc_info is None
        caplog.clear()
        server = socketkit.serve_udp(lambda c: release.wait(30), "127.0.0.1:0", max_peers=1)
        try:
            with clients(6) as socks:
                first = f"127.0.0.1:{socks[1].getsockname()[1]}"
                for s in socks:
                    s.sendto(b"x", ("127.0.0.1", _port(server)))
                _wait_for(lambda: server.peers_refused == 5)
        finally:
            release.set()
            server.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"datagrams from {first} dropped: max_peers 1 reached (1 new peers refused so far)"
    ]


def test_documented_defaults() -> None:
    import inspect

    import socketkit.aio as skio

    sync = inspect.signature(socketkit.serve_udp).parameters
    aio = inspect.signature(skio.serve_udp).parameters
    assert (sync["idle_timeout"].default, aio["idle_timeout"].default) == (60.0, 60.0)
    assert (sync["max_peers"].default, aio["max_peers"].default) == (512, 5000)
    assert (sync["max_peers_per_ip"].default, aio["max_peers_per_ip"].default) == (256, 1000)
    assert (sync["max_queue"].default, aio["max_queue"].default) == (64, 64)
    from socketkit._sync.udp_server import MAX_QUEUED_BYTES

    assert MAX_QUEUED_BYTES == 32 * 1024 * 1024
