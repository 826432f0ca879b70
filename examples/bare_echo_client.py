"""The echo client with the bare socket module, for comparison with echo_client.py.

python examples/bare_echo_client.py 127.0.0.1 7000 "hello, echo"
"""

import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7000
message = (sys.argv[3] if len(sys.argv) > 3 else "hello, echo").encode()

with socket.create_connection((host, port), timeout=5) as sock:
    sock.sendall(message)
    sock.shutdown(socket.SHUT_WR)  # half-close: "no more from me"
    received = b""
    while len(received) < len(message):  # recv() returns whatever has arrived, maybe less
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit(f"the server closed after {len(received)} of {len(message)} bytes")
        received += chunk
    print(received.decode())
