"""serve_udp's documented bounds and switches, each driven for real (docs/serve_udp.md):
the 32 MiB cap on all queues together, refusal log lines at most every 10 s (on a clock the
test steps), ``close(grace=)``, ``idle_timeout=None``, aio ``max_peers_per_ip`` and
``Conversation.sent``. Clients are plain ``socket`` datagram sockets on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import types
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import pytest
import uvloop

import socketkit
import socketkit.aio as skio
from socketkit import ReadTimeout
from socketkit._sync import udp_server as sync_server
from socketkit._sync.udp_server import MAX_QUEUED_BYTES, Conversation

T = TypeVar("T")

#: Datagrams this large fill the 32 MiB cap after 559 of them, while 10 peers with the default
#: max_queue of 64 could hold 640: what is dropped past 559 is the byte cap's doing.
BIG = 60_000
CAP_PEERS = 10
CAP_SENT = CAP_PEERS * 64
CAP_FITS = MAX_QUEUED_BYTES // BIG


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(main: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(main, 90))

    return runner


@contextmanager
def clients(count: int, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            s.bind((host, 0))
            socks.append(s)
        yield socks


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.0005)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.0005)


def _big(i: int) -> bytes:
    return b"%05d" % i + bytes(BIG - 5)


def _seen(server: Any) -> int:
    """Datagrams the server has taken from its socket and queued or dropped."""
    return sum(p.value.received + p.value.dropped for p in server._table if p.value is not None)


# -- 32 MiB for all queues together ------------------------------------------------------------


def test_sync_the_32_mib_cap_on_all_queues_drops_and_counts_the_excess() -> None:
    release = threading.Event()
    drained: dict[str, list[int]] = {}
    convs: list[Conversation] = []

    def handler(conv: Conversation) -> None:
        convs.append(conv)
        release.wait(60)  # never reads until released: its queue only fills
        got = drained.setdefault(conv.peer, [])
        while True:
            try:
                got.append(int(conv.receive(timeout=0)[:5]))
            except ReadTimeout:
                return

    with (
        socketkit.serve_udp(handler, "127.0.0.1:0", idle_timeout=None) as server,
        clients(CAP_PEERS) as socks,
    ):
        port = server.address.port
        try:
            # Lock-step: the server has taken each datagram before the next leaves, so the
            # kernel's queue never drops one and every count below is exact.
            for i in range(CAP_SENT):
                socks[i % CAP_PEERS].sendto(_big(i), ("127.0.0.1", port))
                _wait_for(lambda i=i: _seen(server) == i + 1)
            assert server._queued_bytes == CAP_FITS * BIG <= MAX_QUEUED_BYTES
            assert sum(c.received for c in convs) == CAP_FITS == 559
            assert server.datagrams_dropped == CAP_SENT - CAP_FITS == 81
            assert sum(c.dropped for c in convs) == 81
            # No queue reached max_queue (64): every drop was the byte cap's.
            assert all(c.received + c.dropped == 64 for c in convs)
            assert max(c.received for c in convs) < 64
        finally:
            release.set()
        _wait_for(lambda: server.active_conversations == 0)
        # What was kept is the oldest 559, each handed to its own peer's handler.
        assert sorted(i for got in drained.values() for i in got) == list(range(CAP_FITS))
        assert server._queued_bytes == 0


def test_aio_the_32_mib_cap_on_all_queues_drops_and_counts_the_excess(run: Any) -> None:
    async def main() -> None:
        release = asyncio.Event()
        drained: list[int] = []
        convs: list[skio.Conversation] = []

        async def handler(conv: skio.Conversation) -> None:
            convs.append(conv)
            await release.wait()  # never reads until released: its queue only fills
            while True:
                try:
                    drained.append(int((await conv.receive(timeout=0))[:5]))
                except ReadTimeout:
                    return

        async with await skio.serve_udp(handler, "127.0.0.1:0", idle_timeout=None) as server:
            port = server.address.port
            with clients(CAP_PEERS) as socks:
                for s in socks:
                    s.setblocking(False)
                for i in range(CAP_SENT):
                    socks[i % CAP_PEERS].sendto(_big(i), ("127.0.0.1", port))
                    await _until(lambda i=i: _seen(server) == i + 1)
                assert server._queued_bytes == CAP_FITS * BIG <= MAX_QUEUED_BYTES
                assert sum(c.received for c in convs) == CAP_FITS == 559
                assert server.datagrams_dropped == sum(c.dropped for c in convs) == 81
                assert all(c.received + c.dropped == 64 for c in convs)
                assert max(c.received for c in convs) < 64
                release.set()
                await _until(lambda: server.active_conversations == 0)
                assert sorted(drained) == list(range(CAP_FITS))
                assert server._queued_bytes == 0

    run(main())


# -- refusals logged at most every 10 s, with the count so far ----------------------------------

#: (seconds after the first refusal, whether that refusal is logged). 9.9 s after a line:
#: nothing; at 10 s: a line with the count so far.
REFUSAL_STEPS = [(0.0, True), (0.0, False), (9.9, False), (10.0, True), (15.0, False), (20.0, True)]


def _refusal_lines(
    port_of: Callable[[socket.socket], str], socks: list[socket.socket]
) -> list[str]:
    lines = []
    for n, (_, logged) in enumerate(REFUSAL_STEPS, start=1):
        if logged:
            who = port_of(socks[n])
            lines.append(
                f"datagrams from {who} dropped: max_peers 1 reached ({n} new peers refused so far)"
            )
    return lines


def test_sync_refusals_are_logged_at_most_every_10_s_with_the_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(sync_server, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    release = threading.Event()
    server = socketkit.serve_udp(
        lambda conv: release.wait(30), "127.0.0.1:0", max_peers=1, idle_timeout=None
    )
    try:
        with caplog.at_level(logging.INFO, "socketkit.server"), clients(7) as socks:
            port = server.address.port
            socks[0].sendto(b"x", ("127.0.0.1", port))  # takes the one slot
            _wait_for(lambda: server.peers_accepted == 1)
            for n, (after, _) in enumerate(REFUSAL_STEPS, start=1):
                now[0] = 1000.0 + after
                socks[n].sendto(b"x", ("127.0.0.1", port))
                _wait_for(lambda n=n: server.peers_refused == n)
            expected = _refusal_lines(lambda s: f"127.0.0.1:{s.getsockname()[1]}", socks)
    finally:
        release.set()
        server.close()
    assert [r.getMessage() for r in caplog.records] == expected
    assert len(expected) == 3


def test_aio_refusals_are_logged_at_most_every_10_s_with_the_count(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> list[str]:
        release = asyncio.Event()

        async def handler(conv: skio.Conversation) -> None:
            await release.wait()

        now = [1000.0]
        async with await skio.serve_udp(
            handler, "127.0.0.1:0", max_peers=1, idle_timeout=None
        ) as server:
            server._clock = lambda: now[0]
            port = server.address.port
            with clients(7) as socks:
                socks[0].sendto(b"x", ("127.0.0.1", port))
                await _until(lambda: server.peers_accepted == 1)
                for n, (after, _) in enumerate(REFUSAL_STEPS, start=1):
                    now[0] = 1000.0 + after
                    socks[n].sendto(b"x", ("127.0.0.1", port))
                    await _until(lambda n=n: server.peers_refused == n)
                release.set()
                return _refusal_lines(lambda s: f"127.0.0.1:{s.getsockname()[1]}", socks)

    with caplog.at_level(logging.INFO, "socketkit.server"):
        expected = run(main())
    assert [r.getMessage() for r in caplog.records] == expected
    assert len(expected) == 3


# -- close(grace=), idle_timeout=None, aio max_peers_per_ip, conv.sent --------------------------


def test_sync_close_grace_overrides_the_servers_grace() -> None:
    for server_grace, close_grace, waited in ((30.0, 0.3, 0.3), (0.3, None, 0.3)):
        hold = threading.Event()
        started = threading.Event()

        def stubborn(
            conv: Conversation, hold: threading.Event = hold, started: threading.Event = started
        ) -> None:
            started.set()
            hold.wait(30)  # ignores the end of its conversation

        server = socketkit.serve_udp(stubborn, "127.0.0.1:0", grace=server_grace)
        try:
            with clients(1) as (s,):
                s.sendto(b"x", ("127.0.0.1", server.address.port))
                assert started.wait(10)
                t0 = time.monotonic()
                server.close(grace=close_grace)
                took = time.monotonic() - t0
            assert waited <= took < waited + 3.0, (server_grace, close_grace, took)
            assert server.active_conversations == 1  # the handler outlived the grace
        finally:
            hold.set()
            server.close()


@pytest.mark.parametrize(("idle_timeout", "expires"), [(None, False), (60.0, True)])
def test_sync_idle_timeout_none_never_expires(
    monkeypatch: pytest.MonkeyPatch, idle_timeout: float | None, expires: bool
) -> None:
    """A day passes on the server's clock: with ``idle_timeout=None`` the silent peer's
    conversation lives on (with 60 s, the same steps end it: the test can tell)."""
    now = [1000.0]
    monkeypatch.setattr(sync_server, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    convs: dict[str, Conversation] = {}

    def handler(conv: Conversation) -> None:
        convs[conv.peer] = conv
        for _ in conv:
            pass

    server = socketkit.serve_udp(handler, "127.0.0.1:0", idle_timeout=idle_timeout)
    try:
        with clients(2) as (silent, other):
            port = server.address.port
            silent.sendto(b"x", ("127.0.0.1", port))
            _wait_for(lambda: len(convs) == 1)
            now[0] += 86400.0
            # Two datagrams from another peer: the receiver has gone round its loop (and its
            # expiry scan) at least once on the new time when the second is counted.
            other.sendto(b"1", ("127.0.0.1", port))
            other.sendto(b"2", ("127.0.0.1", port))
            _wait_for(lambda: len(convs) == 2)
            _wait_for(lambda: convs[f"127.0.0.1:{other.getsockname()[1]}"].received == 2)
            first = convs[f"127.0.0.1:{silent.getsockname()[1]}"]
            if expires:
                _wait_for(lambda: server.active_conversations == 1)
            assert first.closed is expires
            assert server.active_conversations == (1 if expires else 2)
    finally:
        server.close(grace=1)


def test_aio_max_peers_per_ip_counts_one_source(run: Any) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(conv: skio.Conversation) -> None:
            await release.wait()

        async with await skio.serve_udp(
            handler, "127.0.0.1:0", max_peers=100, max_peers_per_ip=3
        ) as server:
            port = server.address.port
            with clients(5) as socks, clients(2, "127.0.0.2") as others:
                for s in socks + others:
                    s.sendto(b"x", ("127.0.0.1", port))
                await _until(lambda: server.peers_accepted + server.peers_refused == 7)
                assert server.peers_accepted == 5  # 3 from 127.0.0.1, 2 from 127.0.0.2
                assert server.peers_refused == 2
                assert (
                    sorted(p.source for p in server._table) == ["127.0.0.1"] * 3 + ["127.0.0.2"] * 2
                )
                release.set()

    run(main())


def test_sync_conversation_sent_counts_datagrams_that_left() -> None:
    counts: list[tuple[int, int]] = []

    def handler(conv: Conversation) -> None:
        for data in conv:
            for _ in range(int(data)):
                conv.send(b"r")
            try:
                conv.send(bytes(70_000))  # refused by the kernel: not counted
            except socketkit.DatagramTooLarge:
                pass
            counts.append((conv.received, conv.sent))

    with socketkit.serve_udp(handler, "127.0.0.1:0") as server, clients(1) as (s,):
        s.settimeout(10)
        for k, n in enumerate((3, 0, 2), start=1):
            s.sendto(b"%d" % n, ("127.0.0.1", server.address.port))
            for _ in range(n):
                assert s.recv(100) == b"r"
            _wait_for(lambda k=k: len(counts) == k)
    assert counts == [(1, 3), (2, 3), (3, 5)]


# -- never cut: a Unix datagram longer than the servers take is dropped and counted -------------


def _unix_sender(path: str) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    c.bind(path)
    return c


def test_sync_a_unix_datagram_too_long_is_dropped_and_counted_never_cut(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[int] = []

    def handler(conv: Conversation) -> None:
        got.extend(len(data) for data in conv)

    path = f"{tmp_path}/srv.sock"
    limit = sync_server.MAX_UNIX_DATAGRAM
    with (
        caplog.at_level(logging.INFO, "socketkit.server"),
        socketkit.serve_udp(handler, f"unix:{path}", idle_timeout=None) as server,
        _unix_sender(f"{tmp_path}/c.sock") as c,
    ):
        for n in (70_000, limit, limit + 1, 300_000, 10):
            c.sendto(bytes(n), path)
        _wait_for(lambda: len(got) == 3 and server.datagrams_truncated == 2)
        assert got == [70_000, limit, 10]  # whole, a default Unix sender's largest too
    assert limit >= 212_992 - 32
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"datagram of {n} bytes from unix:{tmp_path}/c.sock dropped: longer than {limit}"
        for n in (limit + 1, 300_000)
    ]


def test_aio_a_unix_datagram_too_long_is_dropped_and_counted_never_cut(
    run: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        got: list[int] = []

        async def handler(conv: skio.Conversation) -> None:
            async for data in conv:
                got.append(len(data))

        path = f"{tmp_path}/srv.sock"
        limit = sync_server.MAX_UNIX_DATAGRAM
        async with await skio.serve_udp(handler, f"unix:{path}", idle_timeout=None) as server:
            with _unix_sender(f"{tmp_path}/c.sock") as c:
                for n in (70_000, limit, limit + 1, 300_000, 10):
                    c.sendto(bytes(n), path)
                await _until(lambda: len(got) == 3 and server.datagrams_truncated == 2)
                assert got == [70_000, limit, 10]

    with caplog.at_level(logging.INFO, "socketkit.server"):
        run(main())
    limit = sync_server.MAX_UNIX_DATAGRAM
    # The event loop reads at most its buffer (asyncio 256 KiB, uvloop 256,000 bytes): what
    # is longer than the limit is reported as at least limit + 1 bytes.
    lines = [r.getMessage() for r in caplog.records]
    assert (
        lines
        == [
            f"datagram of more than {limit} bytes from unix:{tmp_path}/c.sock dropped",
        ]
        * 2
    )
