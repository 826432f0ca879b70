"""UDP echo, server and client, with plain sockets (socketkit's UDP API is not built yet).

    python examples/udp_echo.py server 127.0.0.1 7000
    python examples/udp_echo.py client 127.0.0.1 7000 one two three

Each message is one datagram and comes back whole; UDP may lose one, so the client waits at
most a second per reply and says so when one is missing (exit status 1).
"""

import socket
import sys


def serve(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))  # no listen(), no accept(): datagrams just arrive
        bound = sock.getsockname()
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        while True:
            data, sender = sock.recvfrom(65535)  # one call = one whole datagram
            sock.sendto(data, sender)  # reply to whoever sent it


def client(host: str, port: int, messages: list[str]) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lost = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        for text in messages:
            sock.sendto(text.encode(), (host, port))
            try:
                data, _server = sock.recvfrom(65535)
                print(data.decode())
            except TimeoutError:
                print(f"no reply to {text!r} within 1 s (lost?)", file=sys.stderr)
                lost += 1
    return 1 if lost else 0


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "server":
        serve(host, port)
    else:
        sys.exit(client(host, port, sys.argv[4:] or ["hello, udp"]))
