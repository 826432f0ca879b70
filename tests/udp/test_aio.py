"""socketkit.aio.udp on asyncio's loop and on uvloop: send/receive, timeouts, cancellation that
loses no datagram, concurrent receivers, close waking waiters, iteration, Unix datagrams."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import socketkit
import socketkit.aio as skio

LOOPS = ["asyncio", "uvloop"]


def run(loop: str, coro: Any, timeout: float = 60.0) -> Any:
    """Run ``coro`` on a new ``loop`` ("asyncio" or "uvloop"); a hang is a failure."""
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def plain4() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def test_exports() -> None:
    assert skio.DatagramSocket.__module__ == "socketkit._async.udp"
    assert asyncio.iscoroutinefunction(skio.udp)


def test_round_trip_ipv4(loop: str, plain4: socket.socket) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0") as sock:
            port = sock.socket.getsockname()[1]
            assert sock.local == f"127.0.0.1:{port}" and not sock.socket.getblocking()
            assert await sock.send(b"ping", plain4.getsockname()) == 4
            data, address = plain4.recvfrom(100)
            assert (data, address) == (b"ping", ("127.0.0.1", port))
            plain4.sendto(b"pong", address)
            got = await sock.receive(timeout=10)
            assert got == socketkit.Datagram(b"pong", plain4.getsockname(), False, 0)

    run(loop, main())


def test_ipv6_and_connected(loop: str) -> None:
    async def main() -> None:
        server = await skio.udp("[::1]:0")
        async with server, await skio.udp(remote=server.local) as client:
            assert client.remote == server.local and client.family == socket.AF_INET6
            await client.send(b"six")
            got = await server.receive(timeout=10)
            assert got.data == b"six" and got.peer == client.local
            await server.send(b"back", got.address)
            assert (await client.receive(timeout=10)).data == b"back"

    run(loop, main())


def test_receive_waits_for_a_datagram(loop: str, plain4: socket.socket) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0") as sock:
            task = asyncio.ensure_future(sock.receive())
            await asyncio.sleep(0.1)
            assert not task.done()
            plain4.sendto(b"later", sock.socket.getsockname())
            assert (await asyncio.wait_for(task, 10)).data == b"later"

    run(loop, main())


def test_timeout_takes_nothing(loop: str, plain4: socket.socket) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0", default_timeout=0.1) as sock:
            with pytest.raises(socketkit.ReadTimeout, match="receive timed out"):
                await sock.receive()
            with pytest.raises(socketkit.ReadTimeout):
                await sock.receive(timeout=0.05)
            plain4.sendto(b"kept", sock.socket.getsockname())
            assert (await sock.receive(timeout=10)).data == b"kept"

    run(loop, main())


@pytest.mark.parametrize("how", ["cancel", "wait_for", "asyncio.timeout"])
def test_cancelled_receive_loses_no_datagram(loop: str, how: str, plain4: socket.socket) -> None:
    """The datagram that makes the socket readable in the same loop iteration as the
    cancellation stays queued for the next receive."""

    async def main() -> None:
        async with await skio.udp("127.0.0.1:0") as sock:
            target = sock.socket.getsockname()
            if how == "cancel":
                task = asyncio.ensure_future(sock.receive())
                await asyncio.sleep(0.05)
                # The datagram is queued before the cancel: the wake-up and the
                # cancellation meet in one iteration.
                plain4.sendto(b"one", target)
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            elif how == "wait_for":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(sock.receive(), 0.05)
                plain4.sendto(b"one", target)
            else:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await sock.receive()
                plain4.sendto(b"one", target)
            plain4.sendto(b"two", target)
            first = await sock.receive(timeout=10)
            second = await sock.receive(timeout=10)
            assert [first.data, second.data] == [b"one", b"two"]

    run(loop, main())


def test_many_receivers_each_get_one(loop: str, plain4: socket.socket) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0") as sock:
            tasks = [asyncio.ensure_future(sock.receive(timeout=10)) for _ in range(5)]
            await asyncio.sleep(0.05)
            for n in range(5):
                plain4.sendto(b"%d" % n, sock.socket.getsockname())
            got = await asyncio.gather(*tasks)
            assert sorted(d.data for d in got) == [b"0", b"1", b"2", b"3", b"4"]

    run(loop, main())


def test_close_wakes_waiters_and_ends_iteration(loop: str, plain4: socket.socket) -> None:
    async def main() -> None:
        sock = await skio.udp("127.0.0.1:0")
        seen: list[bytes] = []

        async def consume() -> None:
            async for datagram in sock:
                seen.append(datagram.data)

        consumer = asyncio.ensure_future(consume())
        waiter = asyncio.ensure_future(sock.receive())
        await asyncio.sleep(0.05)
        plain4.sendto(b"a", sock.socket.getsockname())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if seen or waiter.done():
                break
        sock.close()
        sock.close()  # idempotent
        await asyncio.wait_for(consumer, 10)
        results = await asyncio.gather(waiter, return_exceptions=True)
        # "a" went to one of the two; the other was woken by close
        got = seen + [r.data for r in results if isinstance(r, socketkit.Datagram)]
        assert got == [b"a"]
        if not isinstance(results[0], socketkit.Datagram):
            assert isinstance(results[0], socketkit.ClosedResourceError)
        with pytest.raises(socketkit.ClosedResourceError):
            await sock.receive()
        with pytest.raises(socketkit.ClosedResourceError):
            await sock.send(b"x", "127.0.0.1:9")

    run(loop, main())


def test_receive_into_and_truncation(loop: str, plain4: socket.socket) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0", max_size=4) as sock:
            target = sock.socket.getsockname()
            plain4.sendto(b"0123456789", target)
            got = await sock.receive(timeout=10)
            assert (got.data, got.truncated) == (b"0123", True)
            buffer = bytearray(16)
            task = asyncio.ensure_future(sock.receive_into(buffer, timeout=10))
            await asyncio.sleep(0.05)
            plain4.sendto(b"into", target)
            count, address, truncated = await task
            assert (bytes(buffer[:count]), truncated) == (b"into", False)
            assert address == plain4.getsockname()
            with pytest.raises(socketkit.ReadTimeout):
                await sock.receive_into(buffer, timeout=0.05)

    run(loop, main())


def test_unix_datagrams(loop: str, tmp_path: Path) -> None:
    path = tmp_path / "aio.sock"

    async def main() -> None:
        server = await skio.udp(f"unix:{path}")
        async with server, await skio.udp(remote=f"unix:{path}") as client:
            assert client.local.startswith("unix:@")
            await client.send(b"hello")
            got = await server.receive(timeout=10)
            assert got.data == b"hello" and got.peer == client.local
            await server.send(b"reply", got.address)
            assert (await client.receive(timeout=10)).data == b"reply"
        assert not path.exists()

    run(loop, main())


def test_send_errors(loop: str) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0") as sock:
            with pytest.raises(socketkit.AddressError, match="no destination"):
                await sock.send(b"x")
            with pytest.raises(socketkit.DatagramTooLarge) as info:
                await sock.send(b"x" * 65508, sock.local)
            assert (info.value.size, info.value.limit) == (65508, 65507)

    run(loop, main())


def test_name_lookup_runs_in_the_executor(loop: str, plain4: socket.socket) -> None:
    """A host name (not numeric) is looked up off the loop, in the default executor."""
    calls: list[object] = []

    async def main() -> None:
        running = asyncio.get_running_loop()
        original = running.run_in_executor

        def spy(executor: Any, func: Any, *args: Any) -> Any:
            calls.append(func)
            return original(executor, func, *args)

        running.run_in_executor = spy  # type: ignore[method-assign]
        port = plain4.getsockname()[1]
        async with await skio.udp(remote=f"127.0.0.1:{port}") as sock:
            assert calls == []  # numeric: no executor
            await sock.send(b"numeric")
        async with await skio.udp("127.0.0.1:0") as sock:
            await sock.send(b"named", f"localhost:{port}")
            assert len(calls) == 1
            await sock.send(b"cached", f"localhost:{port}")
            assert len(calls) == 1  # resolved once, then from the socket's cache
        async with await skio.udp(remote=f"localhost:{port}", family=socket.AF_INET) as sock:
            assert len(calls) == 2
            await sock.send(b"connected by name")
        assert [plain4.recv(100) for _ in range(4)] == [
            b"numeric",
            b"named",
            b"cached",
            b"connected by name",
        ]

    run(loop, main())


def test_send_many_and_receive_many(loop: str) -> None:
    async def main() -> None:
        rx = await skio.udp("127.0.0.1:0")
        async with rx, await skio.udp(remote=rx.local) as tx:
            sizes = [5, 1400, 1400, 0, 3]
            assert await tx.send_many([b"y" * n for n in sizes]) == 5
            got: list[socketkit.Datagram] = []
            while len(got) < len(sizes):
                got += await rx.receive_many(timeout=10)
            assert [len(d.data) for d in got] == sizes
            with pytest.raises(socketkit.ReadTimeout):
                await rx.receive_many(timeout=0.05)
            # a cancelled receive_many took nothing
            task = asyncio.ensure_future(rx.receive_many())
            await asyncio.sleep(0.05)
            await tx.send(b"kept")
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert [d.data for d in await rx.receive_many(timeout=10)] == [b"kept"]

    run(loop, main())


def test_join_and_leave_on_loopback(loop: str) -> None:
    group = "239.255.42.98"

    async def main() -> None:
        member = await skio.udp(":0", family=socket.AF_INET)
        async with member, await skio.udp("127.0.0.1:0") as sender:
            port = member.socket.getsockname()[1]
            await member.join(group, interface="lo")
            await sender.set_multicast(loopback=True, interface="lo")
            await sender.send(b"group", f"{group}:{port}")
            assert (await member.receive(timeout=10)).data == b"group"
            await member.leave(group, interface="lo")
            await sender.send(b"gone", f"{group}:{port}")
            with pytest.raises(socketkit.ReadTimeout):
                await member.receive(timeout=0.3)

    run(loop, main())


def test_send_waits_while_a_unix_receiver_is_full(loop: str, tmp_path: Path) -> None:
    """A Unix datagram sender waits while the receiver's queue is full: WriteTimeout after
    the call's timeout (that datagram was not sent), and close() wakes a waiting send."""
    path = tmp_path / "full.sock"

    async def main() -> None:
        server = await skio.udp(f"unix:{path}")
        async with server, await skio.udp(remote=f"unix:{path}") as client:
            sent = 0
            with pytest.raises(socketkit.WriteTimeout, match="send buffer stayed full") as info:
                for _ in range(10_000):
                    await client.send(b"%d" % sent, timeout=0.2)
                    sent += 1
            assert info.value.sent == 0 and sent > 0
            waiting = asyncio.ensure_future(client.send(b"never"))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            client.close()
            with pytest.raises(socketkit.ClosedResourceError):
                await asyncio.wait_for(waiting, 10)
            got = [await server.receive(timeout=10) for _ in range(sent)]
            assert [d.data for d in got] == [b"%d" % n for n in range(sent)]
            with pytest.raises(socketkit.ReadTimeout):
                await server.receive(timeout=0.1)

    run(loop, main())
