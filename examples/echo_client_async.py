"""Echo client on asyncio: send a message, half-close, read the echo back.

python examples/echo_client_async.py 127.0.0.1:7000 "hello, echo"
"""

import sys

import socketkit.aio as skio


async def main(address: str, message: bytes) -> None:
    async with await skio.connect(address, timeout=5) as stream:
        await stream.send_all(message)
        await stream.send_eof()
        print((await stream.receive_exactly(len(message), timeout=5)).decode())


address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"
skio.run(main(address, (sys.argv[2] if len(sys.argv) > 2 else "hello, echo").encode()))
