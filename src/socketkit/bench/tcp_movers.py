"""TCP data movers: ``send`` a reused buffer (or ``sendfile``), ``recv_into`` an aligned one.

A page-aligned (``mmap``) receive buffer matters: a ``bytearray`` of 128 KiB or more sits at
page offset 16 and halves ``recv_into`` speed (measured; see docs/bench.md). ``os.sendfile`` from
an in-memory file is offered as ``-Z`` (iperf3's ``--zerocopy``) but is not the default: on this
project's kernel (6.18, loopback) it measured 20-30 % *slower* than ``send`` from a reused
buffer, for iperf3's own ``-Z`` as well (see docs/bench.md).
"""

from __future__ import annotations

import mmap
import os
import socket
import threading
import time
from collections.abc import Callable

from .pacing import Pacer
from .streams import Limits, Mover, StreamStats

__all__ = ["TcpReceiver", "TcpSender", "aligned_buffer", "payload_bytes", "payload_fd"]

#: Bytes one send/sendfile call may move when no rate or count limit applies.
SEND_CHUNK = 1024 * 1024
#: Receive buffer: large reads amortise the syscall; 256 KiB measured best here.
RECV_BUFFER = 256 * 1024


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned, zeroed buffer (anonymous mmap), as a writable memoryview."""
    return memoryview(mmap.mmap(-1, max(size, mmap.PAGESIZE)))


def payload_bytes(length: int) -> bytes:
    """``length`` bytes of payload (a repeating 0..255 pattern, like iperf3's default)."""
    return (bytes(range(256)) * (length // 256 + 1))[:length]


def payload_fd(length: int) -> int:
    """An in-memory file holding ``length`` bytes of payload, for ``os.sendfile``."""
    fd = os.memfd_create("socketkit-bench", os.MFD_CLOEXEC)
    os.write(fd, payload_bytes(length))
    return fd


class TcpSender(Mover):
    """Sends blocks of ``length`` bytes until stopped or the test's limits are reached.

    Each send call moves one block (``exact``), or, for the default block size when ``-l``
    was not given, up to SEND_CHUNK bytes of whole blocks at once.

    ``zerocopy`` (iperf3 ``-Z``): ``os.sendfile`` from an in-memory file instead of ``send``
    from a reused page-aligned buffer.
    """

    def __init__(
        self,
        sock: socket.socket,
        stats: StreamStats,
        *,
        length: int,
        limits: Limits,
        rate: int,
        zerocopy: bool = False,
        exact: bool = True,
    ) -> None:
        super().__init__(sock, stats)
        self.length = length
        self.limits = limits
        self.rate = rate
        self.zerocopy = zerocopy
        #: One block per send call, as iperf3 (``-l``); False lets one call move up to
        #: SEND_CHUNK bytes of whole blocks (the default block's fast path).
        self.exact = exact
        # The payload holds several blocks so that one call moves up to SEND_CHUNK bytes;
        # block boundaries stay at multiples of ``length``.
        self.span = length * max(1, SEND_CHUNK // length)

    def run(self) -> None:
        if self.zerocopy:
            fd = payload_fd(self.span)
            try:
                out = self.sock.fileno()
                self._loop(lambda off, n: os.sendfile(out, fd, off, n))
            finally:
                os.close(fd)
        else:
            buf = aligned_buffer(self.span)
            buf[: self.span] = payload_bytes(self.span)
            send = self.sock.send
            self._loop(lambda off, n: send(buf[off : off + n]))

    def _loop(self, write: Callable[[int, int], int]) -> None:
        stats = self.stats
        length, span = self.length, self.span
        limits = self.limits
        check_limits = bool(limits.total_bytes or limits.total_blocks)
        pacer = Pacer(self.rate) if self.rate else None
        # One block per call when asked (-l), and with a limit or a rate so that neither
        # overshoots; otherwise as many whole blocks as fit in SEND_CHUNK.
        step = length if (self.exact or check_limits or pacer is not None) else span
        offset = 0
        clock = time.monotonic
        # Stop only between whole blocks: iperf3's receiver reads whole blocks with a blocking
        # loop (Nread), so a partial last block would leave it waiting for the rest.
        while offset % length or not self.stop:
            if not offset % length:
                if check_limits and limits.reached():
                    break
                if clock() >= self.stop_at:  # set after the start: read each time
                    break
                if pacer is not None:
                    pacer.wait(stats.bytes)
            end = min(span, (offset // step + 1) * step)
            sent = write(offset, end - offset)
            if sent == 0:
                break
            stats.bytes += sent
            offset += sent
            stats.blocks = stats.bytes // length
            if offset >= span:
                offset = 0


class TcpReceiver(Mover):
    """Reads everything into one reused page-aligned buffer, counting bytes, until EOF."""

    def __init__(self, sock: socket.socket, stats: StreamStats, *, length: int) -> None:
        super().__init__(sock, stats)
        self.buffer = aligned_buffer(max(RECV_BUFFER, length))
        #: Cleared by hold(): stop reading, so the peer's data waits in the socket buffers
        #: (flow control stops the sender) until release(); see DataPath.hold_receivers.
        self.may_read = threading.Event()
        self.may_read.set()
        self._hold_lock = threading.Lock()

    def hold(self) -> None:
        self.may_read.clear()

    def release(self) -> None:
        with self._hold_lock:
            self.stop_at = float("inf")
            self.may_read.set()

    def request_stop(self) -> None:
        super().request_stop()
        self.release()

    def run(self) -> None:
        stats = self.stats
        recv_into = self.sock.recv_into
        buf = self.buffer
        clock = time.monotonic
        may_read = self.may_read
        while True:
            if not may_read.is_set():
                may_read.wait()
            n = recv_into(buf)
            if not n:
                return
            stats.bytes += n
            stats.last_rx = now = clock()
            if now >= self.stop_at:
                # The test's end: hold by itself (once), even if the main thread notices
                # it late; the lock keeps a release() that came meanwhile from being undone.
                with self._hold_lock:
                    if now >= self.stop_at:
                        self.stop_at = float("inf")
                        may_read.clear()
