"""socketkit.aio runs each handler without an asyncio Task (``_async/driver.py``): the protocol
resumes it. These tests hold the promise that a handler is still ordinary asyncio code:
current_task, asyncio.timeout, TaskGroup, wait_for and child tasks reading the stream,
contextvars isolation, cancellation on close, bare yields, and errors."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import socketkit.aio as skio
from socketkit._async.driver import HandlerDriver

from .peers import run_async

LOOPS = ["asyncio", "uvloop"]
Handler = Callable[[skio.Stream], Awaitable[object]]


async def _talk(handler: Handler, client: Callable[[skio.Stream], Awaitable[Any]]) -> Any:
    server = await skio.serve(handler, "127.0.0.1:0")
    try:
        stream = await skio.connect(f"127.0.0.1:{server.address.port}")
        try:
            return await asyncio.wait_for(client(stream), 10)
        finally:
            await stream.aclose()
    finally:
        await server.aclose(grace=2)


@pytest.mark.parametrize("loop", LOOPS)
def test_current_task_and_asyncio_timeout_inside_a_handler(loop: str) -> None:
    async def handler(stream: skio.Stream) -> None:
        task = asyncio.current_task()
        assert isinstance(task, HandlerDriver)
        try:
            async with asyncio.timeout(0.2):
                await stream.receive_some()  # the client sends nothing yet
        except TimeoutError:
            await stream.send_all(b"timed out\n")
        # The stream still works after the cancelled read, and nothing was consumed.
        line = await stream.receive_line()
        await stream.send_all(b"then " + line + b"\n")

    async def client(stream: skio.Stream) -> tuple[bytes, bytes]:
        first = await stream.receive_line()
        await stream.send_all(b"hello\n")
        return first, await stream.receive_line()

    assert run_async(loop, _talk(handler, client)) == (b"timed out", b"then hello")


@pytest.mark.parametrize("loop", LOOPS)
def test_reads_after_a_cancelled_read_get_every_byte(loop: str) -> None:
    async def handler(stream: skio.Stream) -> None:
        for _ in range(3):  # three cancelled reads in a row, each with nothing consumed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await stream.receive_some()
        await stream.send_all(b"go")
        got = b""
        while len(got) < 6:
            got += await stream.receive_some()
        await stream.send_all(got)

    async def client(stream: skio.Stream) -> bytes:
        assert await stream.receive_exactly(2) == b"go"
        await stream.send_all(b"abc")
        await asyncio.sleep(0.05)
        await stream.send_all(b"def")
        return await stream.receive_exactly(6)

    assert run_async(loop, _talk(handler, client)) == b"abcdef"


@pytest.mark.parametrize("loop", LOOPS)
def test_wait_for_task_group_and_child_tasks_reading_the_stream(loop: str) -> None:
    async def handler(stream: skio.Stream) -> None:
        # Awaited through wait_for (a Task of its own), not by the handler itself.
        first = await asyncio.wait_for(stream.receive_some(), 5)
        async with asyncio.TaskGroup() as group:
            child = group.create_task(stream.receive_exactly(5))
        await stream.send_all(first + b"|" + child.result())
        await asyncio.sleep(0)  # a bare yield
        await stream.send_eof()

    async def client(stream: skio.Stream) -> bytes:
        await stream.send_all(b"one")
        await asyncio.sleep(0.1)
        await stream.send_all(b"two22")
        out = b""
        while chunk := await stream.receive_some():
            out += chunk
        return out

    assert run_async(loop, _talk(handler, client)) == b"one|two22"


@pytest.mark.parametrize("loop", LOOPS)
def test_contextvars_do_not_leak_between_handlers(loop: str) -> None:
    var: contextvars.ContextVar[bytes] = contextvars.ContextVar("var", default=b"unset")

    async def handler(stream: skio.Stream) -> None:
        seen = var.get()
        name = await stream.receive_line()
        var.set(name)
        await asyncio.sleep(0.05)
        await stream.send_all(seen + b" " + var.get() + b"\n")

    async def body() -> list[bytes]:
        server = await skio.serve(handler, "127.0.0.1:0")
        try:

            async def one(name: bytes) -> bytes:
                stream = await skio.connect(f"127.0.0.1:{server.address.port}")
                try:
                    await stream.send_all(name + b"\n")
                    return await stream.receive_line(timeout=5)
                finally:
                    await stream.aclose()

            return list(await asyncio.gather(*(one(b"c%d" % i) for i in range(5))))
        finally:
            await server.aclose(grace=2)

    assert run_async(loop, body()) == [b"unset c%d" % i for i in range(5)]


@pytest.mark.parametrize("loop", LOOPS)
def test_close_cancels_a_handler_waiting_to_receive(loop: str) -> None:
    events: list[str] = []

    async def handler(stream: skio.Stream) -> None:
        try:
            await stream.receive_some()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def body() -> None:
        server = await skio.serve(handler, "127.0.0.1:0")
        stream = await skio.connect(f"127.0.0.1:{server.address.port}")
        try:
            for _ in range(100):
                if server.active_connections:
                    break
                await asyncio.sleep(0.01)
            await server.aclose(grace=0.1)
            assert server.active_connections == 0
        finally:
            await stream.aclose()

    run_async(loop, body())
    assert events == ["cancelled"]


@pytest.mark.parametrize("loop", LOOPS)
def test_handler_closing_its_own_server(loop: str) -> None:
    async def handler(stream: skio.Stream) -> None:
        await stream.receive_line()
        await stream.send_all(b"bye\n")
        await holder[0].aclose(grace=1)

    holder: list[skio.Server] = []

    async def body() -> bytes:
        server = await skio.serve(handler, "127.0.0.1:0")
        holder.append(server)
        stream = await skio.connect(f"127.0.0.1:{server.address.port}")
        try:
            await stream.send_all(b"x\n")
            line = await stream.receive_line(timeout=5)
            await asyncio.wait_for(server.serve_forever(), 5)
            return line
        finally:
            await stream.aclose()

    assert run_async(loop, body()) == b"bye"


def test_driver_task_surface() -> None:
    """The Task methods asyncio's helpers call, on a finished and on a failed handler."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        done: list[HandlerDriver] = []

        class Owner:
            _read_waiter: object = None

            def cancel_driven_read(self) -> None:
                pass

            def handler_done(self, driver: HandlerDriver) -> None:
                done.append(driver)

        async def ok() -> int:
            await asyncio.sleep(0)
            return 7

        async def bad() -> None:
            raise ValueError("boom")

        for coro in (ok(), bad()):
            driver = HandlerDriver(coro, Owner(), loop, contextvars.copy_context())
            called = loop.create_future()
            driver.add_done_callback(lambda d, f=called: f.set_result(d))
            driver.start()
            assert await asyncio.wait_for(called, 5) is driver
        first, second = done
        assert first.done() and not first.cancelled() and first.result() == 7
        assert first.exception() is None
        assert isinstance(second.exception(), ValueError)
        with pytest.raises(ValueError):
            second.result()
        assert first.cancel() is False  # already finished
        assert first.get_name() == "socketkit.aio handler"

    run_async("asyncio", body())
