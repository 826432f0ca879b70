"""Echo server on asyncio (uvloop when installed): each client handled concurrently.

python examples/echo_server_async.py 127.0.0.1:7000
"""

import contextlib
import sys

import socketkit.aio as skio


async def echo(stream: skio.Stream) -> None:
    while data := await stream.receive_some():  # b"" only at end of stream
        await stream.send_all(data)


async def main(address: str) -> None:
    async with await skio.serve(echo, address) as server:
        print(f"listening on {server.address}", flush=True)
        await server.serve_forever()


with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server closes, exit quietly
    skio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"))
