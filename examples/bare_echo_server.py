"""The echo server with the bare socket module, for comparison with echo_server.py.

What socketkit does for you is written out here: address parsing, SO_REUSEADDR, a thread per
client, looping until recv() returns b"" (end of stream), sendall() instead of send(), and
closing every socket.

    python examples/bare_echo_server.py 127.0.0.1 7000
"""

import contextlib
import socket
import sys
import threading


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):  # b"" = the client closed its side
            conn.sendall(data)  # send() may send only part of the data


host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 7000
family = socket.AF_INET6 if ":" in host else socket.AF_INET
# Ctrl-C: leaving the with block closes the socket; suppress() makes the exit quiet.
with contextlib.suppress(KeyboardInterrupt), socket.socket(family, socket.SOCK_STREAM) as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart without waiting
    server.bind((host, port))
    server.listen()
    bound = server.getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    while True:
        conn, peer = server.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()
