"""socketkit.aio.serve_udp on asyncio and uvloop: per-peer conversations over one socket.

Clients are plain non-blocking ``socket`` datagram sockets read through the loop, so what is
asserted is what the server put on the wire for each source address. Every test runs with the
C fast paths (``_speedups.c``: the protocol's hand-over, ``send``, ``async for``'s wait) and
with their Python definitions alone.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest
import uvloop

import socketkit.aio as skio
from socketkit import ClosedResourceError, DatagramTooLarge, ReadTimeout, _accel
from socketkit._async import udp_server

T = TypeVar("T")
PEERS = 200
PURE = bool(os.environ.get("SOCKETKIT_PURE"))
#: The methods the C extension takes over, by class.
ACCELERATED = [
    (udp_server._Protocol, "datagram_received"),
    (udp_server.Conversation, "send"),
    (udp_server.Conversation, "__anext__"),
]


@pytest.fixture(autouse=True, params=["c", "pure"] if _accel.ENABLED else ["pure"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the C fast paths ("c") or the Python methods alone ("pure")."""
    saved = [(cls, name, vars(cls)[name]) for cls, name in ACCELERATED]
    if request.param == "pure":
        for cls, name, method in saved:
            setattr(cls, name, getattr(method, "__wrapped__", method))
    try:
        yield str(request.param)
    finally:
        for cls, name, method in saved:
            setattr(cls, name, method)


@pytest.mark.parametrize(("cls", "name"), ACCELERATED)
def test_the_fast_path_is_installed(cls: type, name: str, mode: str) -> None:
    if PURE:
        assert not _accel.ENABLED
        return
    # Not a skip: CI builds the extension (tests/stream/test_speedups.py says how).
    assert _accel.ENABLED, "socketkit._speedups did not build"
    method = vars(cls)[name]
    if mode == "pure":
        assert not hasattr(method, "__wrapped__")
        return
    assert type(method).__name__ == "FastMethod"
    python = method.__wrapped__
    assert inspect.signature(getattr(cls, name)) == inspect.signature(python)
    assert getattr(cls, name).__doc__ == python.__doc__


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(main: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(main, 60))

    return runner


def _clients(stack: ExitStack, count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    out = []
    for _ in range(count):
        s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s.bind((host, 0))
        s.setblocking(False)
        out.append(s)
    return out


async def _recv(s: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(s, 65535), 10)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _grown_in_socketkit(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> int:
    """Bytes allocated (and still held) by socketkit's own code between two snapshots."""
    stats = after.compare_to(before, "filename")
    return sum(s.size_diff for s in stats if "/socketkit/" in (s.traceback[0].filename or ""))


def _me(s: socket.socket) -> str:
    return f"127.0.0.1:{s.getsockname()[1]}"


def test_200_peers_at_once_each_get_only_their_own_replies(run: Any) -> None:
    async def main() -> None:
        everyone = asyncio.Event()
        live: list[skio.Conversation] = []

        async def handler(conv: skio.Conversation) -> None:
            first = await conv.receive()
            live.append(conv)
            if len(live) == PEERS:
                everyone.set()
            await everyone.wait()  # every conversation is live at the same time
            await conv.send(b"hello " + conv.peer.encode() + b" " + first)
            async for data in conv:
                await conv.send(conv.peer.encode() + b" " + data)

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            port = server.address.port
            with ExitStack() as stack:
                socks = _clients(stack, PEERS)
                for i, s in enumerate(socks):
                    s.sendto(b"first-%d" % i, ("127.0.0.1", port))
                for i, s in enumerate(socks):
                    assert await _recv(s) == f"hello {_me(s)} first-{i}".encode()
                assert server.active_conversations == PEERS
                for round_ in range(3):
                    for i, s in enumerate(socks):
                        s.sendto(b"%d.%d" % (i, round_), ("127.0.0.1", port))
                    for i, s in enumerate(socks):
                        assert await _recv(s) == f"{_me(s)} {i}.{round_}".encode()
                assert server.peers_accepted == PEERS and server.peers_refused == 0

    run(main())


def test_a_flood_of_sources_is_bounded_by_max_peers(run: Any) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(conv: skio.Conversation) -> None:
            await release.wait()

        max_peers = 40
        async with await skio.serve_udp(handler, "127.0.0.1:0", max_peers=max_peers) as server:
            port = server.address.port
            seen: set[object] = set()
            before = None
            for i in range(3000):
                if i == 300:  # the table is full: from here on every source is refused
                    await _until(lambda: server.peers_accepted == max_peers)
                    tracemalloc.start()
                    before = tracemalloc.take_snapshot()
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((f"127.0.0.{i % 30 + 1}", 0))
                    if s.getsockname() in seen:
                        continue
                    seen.add(s.getsockname())
                    s.sendto(b"x", ("127.0.0.1", port))
                if len(seen) % 200 == 0:
                    n = len(seen)
                    await _until(lambda n=n: server.peers_accepted + server.peers_refused >= n)
            await _until(lambda: server.peers_accepted + server.peers_refused >= len(seen))
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            assert before is not None
            grown = _grown_in_socketkit(before, after)
            assert grown < 16 * 1024, f"the server grew by {grown} bytes refusing 2,700 sources"
            assert server.active_conversations == max_peers == server.peers_accepted
            assert server.peers_refused == len(seen) - max_peers
            assert len(server._table) == max_peers
            release.set()

    run(main())


def test_an_idle_peer_ends_and_comes_back_as_a_new_conversation(run: Any) -> None:
    async def main() -> None:
        ended: list[tuple[str, float]] = []

        async def handler(conv: skio.Conversation) -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            async for data in conv:
                await conv.send(data)
            ended.append((conv.peer, loop.time() - start))

        async with await skio.serve_udp(handler, "127.0.0.1:0", idle_timeout=0.3) as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"one", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"one"
                await _until(lambda: bool(ended))
                assert ended[0][0] == _me(s)
                # 1 ms under 0.3 s is uvloop's millisecond clock (its loop.time() is the time at
                # the start of the loop iteration, in whole ms); the difference of two such
                # times is compared rounded to the microsecond (0.2989999999990687 is 299 ms).
                assert 0.299 <= round(ended[0][1], 6) < 3.0
                assert server.active_conversations == 0
                s.sendto(b"two", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"two"
                assert server.peers_accepted == 2

    run(main())


def test_a_failing_handler_is_logged_and_others_go_on(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async def handler(conv: skio.Conversation) -> None:
            data = await conv.receive()
            if data == b"boom":
                raise ValueError("handler bug")
            async for more in conv:
                await conv.send(b"ok " + more)

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            port = server.address.port
            with ExitStack() as stack:
                bad, good = _clients(stack, 2)
                bad.sendto(b"boom", ("127.0.0.1", port))
                await _until(lambda: server.peers_accepted == 1 == 1 + server.active_conversations)
                good.sendto(b"hi", ("127.0.0.1", port))
                good.sendto(b"1", ("127.0.0.1", port))
                assert await _recv(good) == b"ok 1"
                bad.sendto(b"x", ("127.0.0.1", port))
                bad.sendto(b"again", ("127.0.0.1", port))
                assert await _recv(bad) == b"ok again"
                records = [
                    r for r in caplog.records if r.getMessage() == f"handler for {_me(bad)} raised"
                ]
                assert len(records) == 1 and records[0].exc_info is not None
                assert "ValueError: handler bug" in caplog.text

    with caplog.at_level(logging.INFO, "socketkit.server"):
        run(main())


def test_a_full_queue_drops_the_newest_and_counts_them(run: Any) -> None:
    async def main() -> None:
        go = asyncio.Event()
        got: list[bytes] = []
        convs: list[skio.Conversation] = []

        async def handler(conv: skio.Conversation) -> None:
            convs.append(conv)
            await go.wait()
            for _ in range(8):
                got.append(await conv.receive(timeout=5))

        async with await skio.serve_udp(handler, "127.0.0.1:0", max_queue=8) as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                for i in range(30):
                    s.sendto(b"%d" % i, ("127.0.0.1", server.address.port))
                await _until(lambda: bool(convs) and convs[0].received + convs[0].dropped == 30)
                go.set()
                await _until(lambda: len(got) == 8)
                assert got == [b"%d" % i for i in range(8)]
                assert convs[0].dropped == 22 == server.datagrams_dropped

    run(main())


def test_receive_timeout_close_and_a_last_reply(run: Any) -> None:
    async def main() -> None:
        outcome: list[str] = []

        async def handler(conv: skio.Conversation) -> None:
            await conv.receive()
            try:
                await conv.receive(timeout=0.1)
            except ReadTimeout as exc:
                outcome.append(str(exc))
            conv.close()
            try:
                await conv.receive()
            except ClosedResourceError as exc:
                outcome.append(str(exc))
            await conv.send(b"bye")

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"hi", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"bye"
                assert outcome == [
                    f"receive from {_me(s)}: no datagram within 0.1 s",
                    f"the conversation with {_me(s)} has ended",
                ]

    run(main())


def test_close_ends_waiting_handlers(run: Any) -> None:
    async def main() -> None:
        ended = asyncio.Event()

        async def handler(conv: skio.Conversation) -> None:
            async for _ in conv:
                pass
            ended.set()

        server = await skio.serve_udp(handler, "127.0.0.1:0")
        with ExitStack() as stack:
            (s,) = _clients(stack, 1)
            s.sendto(b"x", ("127.0.0.1", server.address.port))
            await _until(lambda: server.active_conversations == 1)
            await asyncio.wait_for(server.aclose(), 2)
            assert ended.is_set()
            await server.aclose()  # idempotent

    run(main())


def test_a_handler_receiving_from_another_task(run: Any) -> None:
    # Not the driven path: the receive waits on a future the protocol completes.
    async def main() -> None:
        async def handler(conv: skio.Conversation) -> None:
            async def reader() -> bytes:
                return await conv.receive()

            data = await asyncio.create_task(reader())
            data2 = await asyncio.create_task(reader())
            await conv.send(data + data2)

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"a", ("127.0.0.1", server.address.port))
                await asyncio.sleep(0.05)
                s.sendto(b"b", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"ab"

    run(main())


def test_too_large_a_reply_says_the_limit_and_unix_peers_are_served(
    run: Any, tmp_path: Any
) -> None:
    async def main() -> None:
        errors: list[DatagramTooLarge] = []

        async def handler(conv: skio.Conversation) -> None:
            async for data in conv:
                if data == b"big":
                    try:
                        await conv.send(b"x" * 70000)
                    except DatagramTooLarge as exc:
                        errors.append(exc)
                await conv.send(data.upper())

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"big", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"BIG"
        assert len(errors) == 1 and (errors[0].size, errors[0].limit) == (70000, 65507)
        path = f"{tmp_path}/aio.sock"
        async with await skio.serve_udp(handler, f"unix:{path}"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
                c.bind(f"{tmp_path}/c.sock")
                c.setblocking(False)
                c.sendto(b"unix", path)
                assert await _recv(c) == b"UNIX"
        assert not os.path.exists(path)

    run(main())


def test_close_cancels_handlers_that_outlive_the_grace(run: Any) -> None:
    async def main() -> None:
        outcome: list[str] = []

        async def stubborn(conv: skio.Conversation) -> None:
            await conv.receive()
            try:
                await asyncio.sleep(100)  # ignores the end of its conversation
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

        server = await skio.serve_udp(stubborn, "127.0.0.1:0")
        with ExitStack() as stack:
            (s,) = _clients(stack, 1)
            s.sendto(b"x", ("127.0.0.1", server.address.port))
            await _until(lambda: server.active_conversations == 1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await server.aclose(grace=0.1)
            assert loop.time() - t0 < 2.0
        assert outcome == ["cancelled"]
        assert server.active_conversations == 0

    run(main())


def test_a_cancelled_receive_consumes_nothing(run: Any) -> None:
    async def main() -> None:
        async def handler(conv: skio.Conversation) -> None:
            await conv.receive()
            for _ in range(2):
                try:
                    async with asyncio.timeout(0.05):  # cancels the driven wait
                        await conv.receive()
                except TimeoutError:
                    pass
                try:
                    async with asyncio.timeout(0.05):  # ... and the iteration's
                        await anext(conv)  # type: ignore[arg-type]
                except TimeoutError:
                    pass
            await conv.send(b"ready")
            await conv.send(await conv.receive())

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"start", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"ready"
                s.sendto(b"after", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"after"

    run(main())


def test_send_waits_while_the_transport_has_paused_writing(run: Any) -> None:
    # The transport calls pause_writing/resume_writing around its own buffer (a full socket
    # buffer); they are called here by hand, as a loaded host would.
    async def main() -> None:
        waited: list[float] = []

        async def handler(conv: skio.Conversation) -> None:
            loop = asyncio.get_running_loop()
            protocol = conv._protocol
            await conv.receive()
            protocol.pause_writing()
            loop.call_later(0.2, protocol.resume_writing)
            t0 = loop.time()
            await conv.send(b"late")
            waited.append(loop.time() - t0)

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"go", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"late"
        assert 0.19 <= waited[0] < 2.0

    run(main())


def test_send_hands_the_datagram_over_in_the_call(run: Any) -> None:
    async def main() -> None:
        async def handler(conv: skio.Conversation) -> None:
            await conv.receive()
            pending = conv.send(b"now")  # not awaited yet
            assert conv.sent == 1
            assert await pending is None

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                s.sendto(b"go", ("127.0.0.1", server.address.port))
                assert await _recv(s) == b"now"

    run(main())


def test_a_busy_peer_stays_one_conversation_and_counts_its_datagrams(run: Any) -> None:
    """Each datagram moves its peer's idle clock on (the hand-over touches the peer), so a
    peer that talks more often than ``idle_timeout`` stays one conversation, and the
    conversation's counters hold what went each way."""

    async def main() -> None:
        counts: list[tuple[int, int]] = []

        async def handler(conv: skio.Conversation) -> None:
            async for data in conv:
                await conv.send(data.upper())
            counts.append((conv.received, conv.sent))

        async with await skio.serve_udp(handler, "127.0.0.1:0", idle_timeout=1.0) as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                for i in range(12):  # 2.4 s: more than twice the idle timeout
                    s.sendto(b"n%d" % i, ("127.0.0.1", server.address.port))
                    assert await _recv(s) == b"N%d" % i
                    await asyncio.sleep(0.2)
                assert server.peers_accepted == 1 and server.active_conversations == 1
                await _until(lambda: bool(counts))
        assert counts == [(12, 12)]

    run(main())


def test_a_handler_that_rebinds_a_counter_loses_no_datagram(run: Any) -> None:
    """The C hand-over takes only the everyday case; a counter that is no longer a plain
    int (or is huge) goes through the Python methods, and every datagram still arrives."""

    async def main() -> None:
        async def handler(conv: skio.Conversation) -> None:
            async for data in conv:
                conv.received = True if data == b"a" else 10**30  # type: ignore[assignment]
                conv.sent = 10**30
                await conv.send(data)

        async with await skio.serve_udp(handler, "127.0.0.1:0") as server:
            with ExitStack() as stack:
                (s,) = _clients(stack, 1)
                for data in (b"a", b"b", b"c"):
                    s.sendto(data, ("127.0.0.1", server.address.port))
                    assert await _recv(s) == data

    run(main())
