"""Bulk-transfer peers for bench_stream_bulk.py: ``python bulk_peers.py ROLE ...``.

recv-KIND: listen on 127.0.0.1:0, print the port, receive until EOF into a page-aligned buffer,
           print "<bytes> <seconds>" (timed from the first byte to EOF).
send-KIND PORT TOTAL: connect and send TOTAL bytes in CHUNK-sized writes, then EOF.
KIND: plain (socket sendall / recv_into), sk (socketkit.Stream), aio (socketkit.aio on uvloop).
Both sides use the same buffer size (CHUNK) so only the API layer differs.
"""

from __future__ import annotations

import mmap
import socket
import sys
import time

CHUNK = 256 * 1024


def aligned(size: int) -> memoryview:
    # Page-aligned: a 256 KiB bytearray would sit at page offset 16 and halve recv_into speed
    # (docs/design.md, measured trap 1). Both sides get the same kind of buffer.
    return memoryview(mmap.mmap(-1, size))


def recv_plain() -> None:
    lsock = socket.create_server(("127.0.0.1", 0))
    print(lsock.getsockname()[1], flush=True)
    conn, _ = lsock.accept()
    buf = aligned(CHUNK)
    total = conn.recv_into(buf)
    start = time.perf_counter()
    while n := conn.recv_into(buf):
        total += n
    print(total, time.perf_counter() - start, flush=True)


def recv_sk() -> None:
    import socketkit

    lsock = socket.create_server(("127.0.0.1", 0))
    print(lsock.getsockname()[1], flush=True)
    conn, _ = lsock.accept()
    stream = socketkit.Stream(conn)
    buf = aligned(CHUNK)
    total = stream.receive_into(buf)
    start = time.perf_counter()
    while n := stream.receive_into(buf):
        total += n
    print(total, time.perf_counter() - start, flush=True)


def recv_aio() -> None:
    import asyncio

    import socketkit.aio as skio

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handler(stream: skio.Stream) -> None:
            buf = aligned(CHUNK)
            total = await stream.receive_into(buf)
            start = time.perf_counter()
            while n := await stream.receive_into(buf):
                total += n
            print(total, time.perf_counter() - start, flush=True)
            done.set_result(None)

        server = await skio.serve(handler, "127.0.0.1:0")
        print(server.address.port, flush=True)
        await done
        await server.aclose()

    skio.run(main())


def send_plain(port: int, total: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    data = aligned(CHUNK)
    for _ in range(total // CHUNK):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)


def send_sk(port: int, total: int) -> None:
    import socketkit

    with socketkit.connect(f"127.0.0.1:{port}") as stream:
        data = aligned(CHUNK)
        for _ in range(total // CHUNK):
            stream.send_all(data)
        stream.send_eof()
        stream.receive_some()


def send_aio(port: int, total: int) -> None:
    import socketkit.aio as skio

    async def main() -> None:
        stream = await skio.connect(f"127.0.0.1:{port}")
        data = aligned(CHUNK)
        for _ in range(total // CHUNK):
            await stream.send_all(data)
        await stream.send_eof()
        await stream.receive_some()
        await stream.aclose()

    skio.run(main())


if __name__ == "__main__":
    role = sys.argv[1]
    if role.startswith("recv-"):
        {"plain": recv_plain, "sk": recv_sk, "aio": recv_aio}[role[5:]]()
    else:
        port, total = int(sys.argv[2]), int(sys.argv[3])
        {"plain": send_plain, "sk": send_sk, "aio": send_aio}[role[5:]](port, total)
