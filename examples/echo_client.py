"""Echo client with socketkit: send a message, half-close, read the echo back.

python examples/echo_client.py 127.0.0.1:7000 "hello, echo"
"""

import sys

import socketkit

address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"
message = (sys.argv[2] if len(sys.argv) > 2 else "hello, echo").encode()

with socketkit.connect(address, timeout=5) as stream:
    stream.send_all(message)
    stream.send_eof()  # "no more from me"; the echo still comes back
    print(stream.receive_exactly(len(message), timeout=5).decode())
