"""One data stream of a test: its counters and the thread that moves its bytes.

Movers run in threads over blocking sockets: the kernel does the waiting, the GIL is released
in every send/recv, and there is no event-loop overhead on the hot path. A mover is stopped by
setting ``stop`` (checked between blocks) and, if it is blocked in the kernel, by shutting its
socket down, which wakes the blocked call (Linux ``inet_shutdown`` wakes waiters even on an
unconnected UDP socket).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from .._errors import SocketkitError, translate_os_error
from ..proto.bench_udp import UdpReceiveStats

__all__ = ["Limits", "Mover", "StreamStats"]

log = logging.getLogger("socketkit.bench")


@dataclass(slots=True)
class Limits:
    """When the senders of one test stop: any limit reached (0 = no such limit).

    ``total_bytes``/``total_blocks`` are shared by every sending stream of the test, as
    iperf3's ``-n``/``-k`` are.
    """

    total_bytes: int = 0
    total_blocks: int = 0
    streams: list[StreamStats] = field(default_factory=list)

    def reached(self) -> bool:
        if self.total_bytes and sum(s.bytes for s in self.streams) >= self.total_bytes:
            return True
        return bool(self.total_blocks and sum(s.blocks for s in self.streams) >= self.total_blocks)


@dataclass(slots=True)
class StreamStats:
    """Counters of one stream, written by its mover thread only (readers may lag a block)."""

    id: int
    sender: bool
    protocol: str
    bytes: int = 0
    blocks: int = 0
    packets: int = 0
    udp: UdpReceiveStats | None = None
    start_time: float = 0.0  # monotonic
    end_time: float = 0.0
    last_rx: float = 0.0  # monotonic time of the last received byte (receivers)
    base_bytes: int = 0  # counters at the end of the omitted (-O) warm-up
    base_packets: int = 0
    base_errors: int = 0
    error: str = ""
    rtt_us: int = 0  # TCP_INFO at the end of the test
    retransmits: int = -1
    kernel_drops: int = -1  # UDP receive-queue drops the kernel counted (/proc/net/udp)
    gso: bool = False

    def mark_omit_end(self) -> None:
        self.base_bytes = self.bytes
        self.base_packets = self.packets
        if self.udp is not None:
            self.base_packets = self.udp.packet_count
            self.base_errors = self.udp.errors

    @property
    def measured_bytes(self) -> int:
        return self.bytes - self.base_bytes


class Mover:
    """Base of the data movers: a thread, a stop flag and a socket to shut down."""

    def __init__(self, sock: socket.socket, stats: StreamStats) -> None:
        self.sock = sock
        self.stats = stats
        self.stop = False
        #: Monotonic time at which a sender stops by itself (a timed test's end), so a
        #: sender thread or a main thread that gets the CPU late does not send past it.
        self.stop_at = float("inf")
        self._thread = threading.Thread(
            target=self._main, name=f"bench-stream-{stats.id}", daemon=True
        )

    def start(self) -> None:
        self.stats.start_time = time.monotonic()
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
        except OSError as exc:
            if not self.stop:
                self.stats.error = str(translate_os_error(exc, f"stream {self.stats.id}"))
                log.debug("stream %d: %s", self.stats.id, exc)
        except Exception as exc:  # a bug must not vanish with the thread
            if isinstance(exc, SocketkitError):
                self.stats.error = f"stream {self.stats.id}: {exc}"
            else:
                self.stats.error = (
                    f"stream {self.stats.id}: {type(exc).__name__}: {exc} (a bug in socketkit)"
                )
            log.exception("stream %d failed", self.stats.id)
        finally:
            self.stats.end_time = time.monotonic()

    def run(self) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        self.stop = True

    def wake(self) -> None:
        """Shut the socket down so a call blocked in the kernel returns."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True if it ended."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
