"""The blocking side of the control connection: a socket, a sans-I/O machine, a deadline."""

from __future__ import annotations

import select
import socket
import time

from .._errors import (
    AccessDenied,
    RemoteProtocolError,
    SocketkitError,
    SocketkitTimeout,
    translate_os_error,
)
from ..proto.iperf3 import (
    NEED_DATA,
    BenchParams,
    ClientConnection,
    CookieReceived,
    Event,
    JsonReceived,
    ServerConnection,
    ServerErrorReceived,
    State,
    StateReceived,
)
from .server_errors import describe_server_error

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


def unexpected(event: Event, waiting_for: str) -> SocketkitError:
    """The error for an event that is not the one awaited, in words (never a repr).

    A peer that ends the test (SERVER_TERMINATE / CLIENT_TERMINATE, e.g. ``iperf3 -s`` on
    Ctrl-C), refuses it or reports an error did not break the protocol: those are plain
    failures (exit 1) or a refusal (exit 7), as iperf3 reports them.
    """
    if isinstance(event, StateReceived):
        state = event.state
        if state is State.SERVER_TERMINATE:
            return SocketkitError("the server terminated the test")
        if state is State.CLIENT_TERMINATE:
            return SocketkitError("the client terminated the test")
        if state is State.ACCESS_DENIED:
            return AccessDenied("the server is busy running a test (ACCESS_DENIED)")
        what = f"{state.name} ({int(state)})"
    elif isinstance(event, ServerErrorReceived):
        return SocketkitError(
            f"the server reported an error: {describe_server_error(event.i_errno)}"
            + (f" (errno {event.errno})" if event.errno else "")
        )
    elif isinstance(event, JsonReceived):
        what = "parameters" if isinstance(event.value, BenchParams) else "results"
    elif isinstance(event, CookieReceived):
        what = "a cookie"
    else:  # pragma: no cover - Event is a closed union
        what = type(event).__name__
    return RemoteProtocolError(f"iperf3 control: got {what} while waiting for {waiting_for}")
