"""The blocking side of the control connection: a socket, a sans-I/O machine, a deadline."""

from __future__ import annotations

import select
import socket
import time

from .._errors import RemoteProtocolError, SocketkitTimeout, translate_os_error
from ..proto.iperf3 import NEED_DATA, ClientConnection, Event, ServerConnection

__all__ = ["ControlChannel"]

#: Bytes read from the control socket at a time; control messages are small.
READ_SIZE = 16 * 1024


class ControlChannel:
    """Sends bytes and waits for the next control event, never longer than a deadline."""

    def __init__(self, sock: socket.socket, conn: ClientConnection | ServerConnection) -> None:
        self.sock = sock
        self.conn = conn

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise translate_os_error(exc, "send on the control connection") from exc

    def poll(self, timeout: float) -> Event | None:
        """The next event if one arrives within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event  # type: ignore[return-value]
            # poll(0) still looks at the socket once: a peer that closed or sent a message
            # must be seen without waiting (select with a zero timeout does not block).
            remaining = max(0.0, deadline - time.monotonic())
            try:
                ready, _, _ = select.select([self.sock], [], [], remaining)
                if not ready:
                    return None
                data = self.sock.recv(READ_SIZE)
            except OSError as exc:
                raise translate_os_error(exc, "receive on the control connection") from exc
            self.conn.receive_data(data)

    def next(self, timeout: float, waiting_for: str) -> Event:
        """The next event; SocketkitTimeout after ``timeout`` seconds of silence."""
        event = self.poll(timeout)
        if event is None:
            raise SocketkitTimeout(f"iperf3 control: no {waiting_for} within {timeout:g} s")
        return event

    def close(self) -> None:
        self.sock.close()


def unexpected(event: Event, waiting_for: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"iperf3 control: got {event!r} while waiting for {waiting_for}")
