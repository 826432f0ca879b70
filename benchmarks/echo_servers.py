"""Echo servers for bench_echo.py, one per process: ``python echo_servers.py KIND``.

Prints the listening port on stdout, then serves 127.0.0.1 until killed.
KIND: sk-aio (socketkit.aio on uvloop), sk-aio-asyncio (socketkit.aio on the default loop),
uvloop-protocol (bare asyncio.Protocol on uvloop), asyncio-streams (default loop),
sk-sync (socketkit threaded server), socketserver (ThreadingTCPServer); for context:
uvloop-task-floor (a Protocol waking one task per message), uvloop-driven-floor (a Protocol
resuming one coroutine per message itself), uvloop-buffered (a bare BufferedProtocol).
"""

from __future__ import annotations

import asyncio
import socketserver
import sys


def announce(port: int) -> None:
    print(port, flush=True)


async def sk_aio() -> None:
    import socketkit.aio as skio

    async def echo(stream: skio.Stream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)

    # No connection limits: the anchors have none, and the idle-memory run opens 10,000.
    server = await skio.serve(
        echo, "127.0.0.1:0", max_connections=None, max_connections_per_ip=None
    )
    announce(server.address.port)
    await server.serve_forever()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def bare_protocol() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=4096)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


class WakeProtocol(asyncio.Protocol):
    """The floor of any task-per-connection design: a bare Protocol that hands each chunk to
    its connection's task through one future, and the task writes it back."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self.run())

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)
        else:
            self.pending += data

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(b"")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.pending:
                data, self.pending = self.pending, b""
            else:
                self.waiter = loop.create_future()
                data = await self.waiter
            if not data:
                return
            self.transport.write(data)


class _Wait:
    __slots__ = ()

    def __await__(self):  # type: ignore[no-untyped-def]
        return (yield self)


_WAIT = _Wait()


class DrivenProtocol(asyncio.Protocol):
    """Driven floor: the protocol steps the handler coroutine itself (no Task, no future)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.coro = self.run()
        self.coro.send(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.coro.send(data)
        except StopIteration:
            pass

    async def run(self) -> None:
        write = self.transport.write
        while True:
            data = await _WAIT
            write(data)


class BufEcho(asyncio.BufferedProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = bytearray(65536)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.transport.write(self.buf[:nbytes])


async def buffered_floor() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BufEcho, "127.0.0.1", 0, backlog=4096)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


async def driven_floor() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(DrivenProtocol, "127.0.0.1", 0, backlog=4096)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


async def task_floor() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(WakeProtocol, "127.0.0.1", 0, backlog=4096)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


async def asyncio_streams() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def sk_sync() -> None:
    import socketkit

    def echo(stream: socketkit.Stream) -> None:
        while data := stream.receive_some():
            stream.send_all(data)

    # No connection limits: ThreadingTCPServer has none.
    server = socketkit.serve(echo, "127.0.0.1:0", max_connections=None, max_connections_per_ip=None)
    announce(server.address.port)
    server.serve_forever()


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def plain_socketserver() -> None:
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.request_queue_size = 4096
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler) as server:
        announce(server.server_address[1])
        server.serve_forever()


def raise_nofile() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    raise_nofile()
    kind = sys.argv[1]
    if kind == "sk-aio":
        import uvloop

        uvloop.run(sk_aio())
    elif kind == "sk-aio-asyncio":
        asyncio.run(sk_aio())
    elif kind == "uvloop-protocol":
        import uvloop

        uvloop.run(bare_protocol())
    elif kind == "uvloop-task-floor":
        import uvloop

        uvloop.run(task_floor())
    elif kind == "uvloop-buffered":
        import uvloop

        uvloop.run(buffered_floor())
    elif kind == "uvloop-driven-floor":
        import uvloop

        uvloop.run(driven_floor())
    elif kind == "asyncio-protocol":
        asyncio.run(bare_protocol())
    elif kind == "asyncio-streams":
        asyncio.run(asyncio_streams())
    elif kind == "sk-sync":
        sk_sync()
    elif kind == "socketserver":
        plain_socketserver()
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    main()
