"""Request/response latency streams (``--latency``): the client times round trips.

The client sends ``size`` bytes and waits for all of them to come back; the server echoes
what it reads. Each round trip is recorded in a :class:`LatencyHistogram` (nanoseconds).
"""

from __future__ import annotations

import select
import socket
import time

from .histogram import LatencyHistogram
from .streams import Mover, StreamStats
from .tcp_movers import aligned_buffer

__all__ = ["GREETING", "EchoResponder", "LatencyRequester", "read_greeting"]

#: What a socketkit server sends on each latency stream before TEST_START: it confirms that
#: the server understood ``socketkit_latency`` (a plain iperf3 server ignores the key, runs a
#: throughput test, and would never echo).
GREETING = b"socketkit-echo\n"
#: How long the client waits for the greetings once TEST_START has arrived. The server sent
#: them before TEST_START, so they are normally there already.
GREETING_WAIT = 2.0


def read_greeting(sock: socket.socket, deadline: float) -> bool:
    """Read GREETING from ``sock`` by ``deadline`` (monotonic); False if it did not come."""
    got = b""
    while len(got) < len(GREETING):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            return False
        chunk = sock.recv(len(GREETING) - len(got))
        if not chunk:
            return False
        got += chunk
    return got == GREETING


class LatencyRequester(Mover):
    """One outstanding request at a time on this stream; ``-P N`` gives N in flight."""

    def __init__(self, sock: socket.socket, stats: StreamStats, *, size: int) -> None:
        super().__init__(sock, stats)
        self.size = size
        self.histogram = LatencyHistogram()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self) -> None:
        size = self.size
        request = bytes(size)
        buf = aligned_buffer(size)
        sock = self.sock
        sendall, recv_into = sock.sendall, sock.recv_into
        clock = time.perf_counter_ns
        record = self.histogram.record
        stats = self.stats
        while not self.stop:
            t0 = clock()
            sendall(request)
            got = 0
            while got < size:
                n = recv_into(buf[got:size])
                if not n:
                    return
                got += n
            record(clock() - t0)
            stats.bytes += size
            stats.packets += 1


class EchoResponder(Mover):
    """Echoes every byte back until EOF."""

    def __init__(self, sock: socket.socket, stats: StreamStats, *, size: int) -> None:
        super().__init__(sock, stats)
        self.buffer = aligned_buffer(max(size, 65536))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self) -> None:
        buf = self.buffer
        sendall, recv_into = self.sock.sendall, self.sock.recv_into
        stats = self.stats
        while True:
            n = recv_into(buf)
            if not n:
                return
            sendall(buf[:n])
            stats.bytes += n
