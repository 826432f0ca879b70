"""Echo server with socketkit: every byte a client sends comes back.

python examples/echo_server.py 127.0.0.1:7000      (port 0 picks a free port)
"""

import contextlib
import sys

import socketkit


def echo(stream: socketkit.Stream) -> None:
    # receive_some returns b"" only at end of stream; each client runs in its own thread.
    for chunk in iter(stream.receive_some, b""):
        stream.send_all(chunk)


address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"
# Ctrl-C: leaving the with block closes the server; suppress() makes the exit quiet.
with contextlib.suppress(KeyboardInterrupt), socketkit.serve(echo, address) as server:
    print(f"listening on {server.address}", flush=True)
    server.serve_forever()
