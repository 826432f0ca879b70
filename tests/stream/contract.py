"""The stream contract harness: every stream implementation behind one async interface.

A contract test is written once, as a coroutine, against :class:`AStream` and :class:`AServer`.
Async streams are awaited directly; sync streams run in worker threads (``asyncio.to_thread``),
and a sync server's handler runs the same coroutine on the test's loop. So one test body covers
sync plain/TLS/Unix, asyncio on the default loop and on uvloop, plain/TLS/Unix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

import socketkit
import socketkit.aio as skio
from socketkit.proto.framing import Framer

T = TypeVar("T")

#: Worker threads for sync streams: a concurrency test runs 200 clients plus 200 handlers.
EXECUTOR_THREADS = 640
#: No contract test may take longer than this (a hang is a failure, not a CI timeout).
TEST_DEADLINE = 90.0


@dataclass(frozen=True)
class Impl:
    """One stream implementation under test."""

    name: str
    api: str  # "sync" or "aio"
    loop: str  # "asyncio" or "uvloop" (the loop the test body runs on)
    tls: bool = False
    unix: str | None = None  # None, "path" or "abstract"

    @property
    def sync(self) -> bool:
        return self.api == "sync"


IMPLS = [
    Impl("sync-tcp", "sync", "asyncio"),
    Impl("sync-tls", "sync", "asyncio", tls=True),
    Impl("sync-unix", "sync", "asyncio", unix="path"),
    Impl("asyncio-tcp", "aio", "asyncio"),
    Impl("uvloop-tcp", "aio", "uvloop"),
    Impl("asyncio-tls", "aio", "asyncio", tls=True),
    Impl("uvloop-tls", "aio", "uvloop", tls=True),
    Impl("asyncio-unix", "aio", "asyncio", unix="abstract"),
    Impl("uvloop-unix", "aio", "uvloop", unix="path"),
]


@dataclass(frozen=True)
class TLSFiles:
    """A test CA and a server certificate for localhost, 127.0.0.1 and ::1 (trustme)."""

    ca_file: str
    cert_file: str
    key_file: str


class AStream:
    """An awaitable view of a sync or async stream, with the same method names."""

    def __init__(self, stream: Any, *, sync: bool) -> None:
        self.raw = stream
        self.sync = sync

    async def _call(self, name: str, *args: Any, **kw: Any) -> Any:
        method = getattr(self.raw, name)
        if self.sync:
            return await asyncio.to_thread(method, *args, **kw)
        return await method(*args, **kw)

    async def send_all(self, data: bytes | bytearray | memoryview, **kw: Any) -> None:
        await self._call("send_all", data, **kw)

    async def send_message(self, message: bytes, framer: Framer, **kw: Any) -> None:
        await self._call("send_message", message, framer, **kw)

    async def send_eof(self) -> None:
        await self._call("send_eof")

    async def receive_some(self, max_bytes: int = 65536, **kw: Any) -> bytes:
        data: bytes = await self._call("receive_some", max_bytes, **kw)
        return data

    async def receive_exactly(self, count: int, **kw: Any) -> bytes:
        data: bytes = await self._call("receive_exactly", count, **kw)
        return data

    async def receive_until(self, delimiter: bytes = b"\n", **kw: Any) -> bytes:
        data: bytes = await self._call("receive_until", delimiter, **kw)
        return data

    async def receive_line(self, **kw: Any) -> bytes:
        data: bytes = await self._call("receive_line", **kw)
        return data

    async def receive_into(self, buffer: bytearray | memoryview, **kw: Any) -> int:
        count: int = await self._call("receive_into", buffer, **kw)
        return count

    async def receive_to_eof(self, limit: int = 1 << 30) -> bytes:
        """Everything until EOF (at most ``limit`` bytes)."""
        chunks = []
        total = 0
        while total < limit:
            data = await self.receive_some()
            if not data:
                break
            chunks.append(data)
            total += len(data)
        return b"".join(chunks)

    async def messages(self, framer: Framer | None = None, **kw: Any) -> list[bytes]:
        """Every message until EOF, through ``iter_messages`` (or plain iteration)."""
        if self.sync:
            if framer is None and not kw:
                return await asyncio.to_thread(list, self.raw)
            return await asyncio.to_thread(list, self.raw.iter_messages(framer, **kw))
        if framer is None and not kw:
            return [m async for m in self.raw]
        return [m async for m in self.raw.iter_messages(framer, **kw)]

    async def aclose(self) -> None:
        if self.sync:
            self.raw.close()
        else:
            await self.raw.aclose()

    def abort(self) -> None:
        self.raw.abort()

    @property
    def tls(self) -> Any:
        return self.raw.tls


class AServer:
    """An awaitable view of a sync or async server."""

    def __init__(self, server: Any, *, sync: bool, target: str) -> None:
        self.raw = server
        self.sync = sync
        #: What a client passes to connect.
        self.target = target

    async def aclose(self, grace: float | None = None) -> None:
        if self.sync:
            await asyncio.to_thread(self.raw.close, grace)
        else:
            await self.raw.aclose(grace)


Handler = Callable[[AStream], Awaitable[object]]


class Harness:
    """Starts servers and clients of one implementation; runs a test body on its loop."""

    def __init__(self, impl: Impl, tls_files: TLSFiles) -> None:
        self.impl = impl
        self.tls_files = tls_files
        self._tmp = tempfile.mkdtemp(prefix="skc-")  # short: AF_UNIX paths are <= 107 bytes

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            for entry in Path(self._tmp).iterdir():
                entry.unlink()
            os.rmdir(self._tmp)

    # -- running ----------------------------------------------------------------------------

    def run(self, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``body()`` on this implementation's loop, with a large thread pool; then check
        that no server thread or task outlived the test."""
        factory = uvloop.new_event_loop if self.impl.loop == "uvloop" else asyncio.new_event_loop
        executor = ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="contract")
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.get_loop().set_default_executor(executor)
            result = runner.run(self._guarded(body))
        leftover = [t.name for t in threading.enumerate() if t.name.startswith("socketkit-")]
        assert not leftover, f"server threads still running after the test: {leftover}"
        return result

    async def _guarded(self, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
        result = await asyncio.wait_for(body(), TEST_DEADLINE)
        current = asyncio.current_task()
        await asyncio.sleep(0)
        others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not others, f"tasks still running after the test: {others}"
        return result

    # -- addresses and TLS ------------------------------------------------------------------

    def listen_address(self) -> str:
        if self.impl.unix == "path":
            return f"unix:{self._tmp}/{uuid.uuid4().hex[:8]}.sock"
        if self.impl.unix == "abstract":
            return f"unix:@socketkit-test-{uuid.uuid4().hex}"
        return "127.0.0.1:0"

    def server_tls(self) -> Any:
        if not self.impl.tls:
            return False
        files = self.tls_files
        return socketkit.server_context(cert_file=files.cert_file, key_file=files.key_file)

    def client_tls(self) -> Any:
        if not self.impl.tls:
            return False
        return socketkit.client_context(ca_file=self.tls_files.ca_file)

    # -- servers and clients ----------------------------------------------------------------

    async def serve(self, handler: Handler, **kw: Any) -> AServer:
        """Start a server of this implementation whose handler is the coroutine ``handler``."""
        address = kw.pop("address", None) or self.listen_address()
        kw.setdefault("tls", self.server_tls())
        if not self.impl.sync:

            async def async_handler(stream: skio.Stream) -> None:
                await handler(AStream(stream, sync=False))

            server: Any = await skio.serve(async_handler, address, **kw)
        else:
            loop = asyncio.get_running_loop()

            def sync_handler(stream: socketkit.Stream) -> None:
                # Runs in the server's connection thread: the test body's coroutine runs on
                # the test loop; its exceptions reach the server as a sync handler's would.
                coro = handler(AStream(stream, sync=True))
                asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]

            server = await asyncio.to_thread(socketkit.serve, sync_handler, address, **kw)
        bound = server.address
        target = address if address.startswith("unix:") else f"{bound.host}:{bound.port}"
        return AServer(server, sync=self.impl.sync, target=target)

    async def connect(self, target: str, **kw: Any) -> AStream:
        kw.setdefault("tls", self.client_tls())
        if self.impl.sync:
            stream = await asyncio.to_thread(socketkit.connect, target, **kw)
            return AStream(stream, sync=True)
        return AStream(await skio.connect(target, **kw), sync=False)

    @contextlib.asynccontextmanager
    async def pair(self, **serve_kw: Any) -> AsyncIterator[tuple[AStream, AStream]]:
        """A connected (client, server-side) pair; both closed, the server too, on exit."""
        accepted: asyncio.Queue[AStream] = asyncio.Queue()
        finished = asyncio.Event()

        async def handler(stream: AStream) -> None:
            await accepted.put(stream)
            await finished.wait()

        server = await self.serve(handler, **serve_kw)
        try:
            client = await self.connect(server.target)
            try:
                peer = await asyncio.wait_for(accepted.get(), 10)
                yield client, peer
            finally:
                client.abort()
        finally:
            finished.set()
            await server.aclose(grace=5)
