"""TCP data movers: ``sendfile`` from an in-memory file, ``recv_into`` an aligned buffer.

Measured on loopback (docs/benchmarks.md, shared PERF-NOTES): ``socket.sendfile``-style
zero-copy sending and a page-aligned (``mmap``) receive buffer are each worth 1.3-2x over
``sendall``/``bytearray``; a ``bytearray`` of 128 KiB or more sits at page offset 16 and halves
``recv_into`` speed.
"""

from __future__ import annotations

import mmap
import os
import socket
import time

from .pacing import Pacer
from .streams import Limits, Mover, StreamStats

__all__ = ["TcpReceiver", "TcpSender", "aligned_buffer", "payload_fd"]

#: Bytes one sendfile() call may move when no rate or count limit applies: fewer, larger
#: calls (the copy happens in the kernel, from the page cache of an in-memory file).
SEND_CHUNK = 1024 * 1024
#: Receive buffer: large reads amortise the syscall; 256 KiB measured best here.
RECV_BUFFER = 256 * 1024


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned, zeroed buffer (anonymous mmap), as a writable memoryview."""
    return memoryview(mmap.mmap(-1, max(size, mmap.PAGESIZE)))


def payload_fd(length: int) -> int:
    """An in-memory file holding one block of payload, for ``os.sendfile``."""
    fd = os.memfd_create("socketkit-bench", os.MFD_CLOEXEC)
    block = (bytes(range(256)) * (length // 256 + 1))[:length]
    os.write(fd, block)
    return fd


class TcpSender(Mover):
    """Sends blocks of ``length`` bytes until stopped or the test's limits are reached."""

    def __init__(
        self, sock: socket.socket, stats: StreamStats, *, length: int, limits: Limits, rate: int
    ) -> None:
        super().__init__(sock, stats)
        self.length = length
        self.limits = limits
        self.rate = rate

    def run(self) -> None:
        # The in-memory file holds several blocks so that one sendfile() call moves up to
        # SEND_CHUNK bytes; block boundaries stay at multiples of ``length``.
        self.span = self.length * max(1, SEND_CHUNK // self.length)
        fd = payload_fd(self.span)
        try:
            self._loop(fd)
        finally:
            os.close(fd)

    def _loop(self, fd: int) -> None:
        out = self.sock.fileno()
        stats = self.stats
        length, span = self.length, self.span
        limits = self.limits
        check_limits = bool(limits.total_bytes or limits.total_blocks)
        pacer = Pacer(self.rate) if self.rate else None
        # With a limit or a rate, move one block per call so neither overshoots.
        step = length if (check_limits or pacer is not None) else span
        offset = 0
        sendfile = os.sendfile
        # Stop only between whole blocks: iperf3's receiver reads whole blocks with a blocking
        # loop (Nread), so a partial last block would leave it waiting for the rest.
        while offset % length or not self.stop:
            if not offset % length:
                if check_limits and limits.reached():
                    break
                if pacer is not None:
                    pacer.wait(stats.bytes)
            end = min(span, (offset // step + 1) * step)
            sent = sendfile(out, fd, offset, end - offset)
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

    def run(self) -> None:
        stats = self.stats
        recv_into = self.sock.recv_into
        buf = self.buffer
        clock = time.monotonic
        while True:
            n = recv_into(buf)
            if not n:
                return
            stats.bytes += n
            stats.last_rx = clock()
