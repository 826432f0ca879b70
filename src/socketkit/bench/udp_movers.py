"""UDP data movers: iperf3-format datagrams, with UDP GSO/GRO when the kernel has them.

GSO (``UDP_SEGMENT``, Linux 4.18) lets one ``send`` carry up to 64 datagrams, each with its own
iperf3 header; GRO (``UDP_GRO``, Linux 5.0) hands the receiver up to 64 at once with the
segment size in a control message. Without them, up to 64 ordinary datagrams per
``sendmmsg``/``recvmmsg`` call, else one per system call. The batching itself (the mmsg slots,
the GSO/GRO options and the GRO control message) is the library's (``socketkit._udp_batch``);
here the iperf3 headers are written and read in place in its buffers.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import sys
import time
from array import array

from .._udp_batch import (
    GSO_REFUSED,
    MmsgBatch,
    disable_gso,
    enable_gro,
    enable_gso,
    gro_segment,
    gso_segments,
)
from ..proto.bench_udp import UdpReceiveStats, header_size, unpack_header
from .pacing import Pacer
from .streams import Limits, Mover, StreamStats
from .tcp_movers import aligned_buffer

__all__ = [
    "UdpReceiver",
    "UdpSender",
    "enable_gro",
    "enable_gso",
    "gso_segments",
    "kernel_drops",
]

_H32 = struct.Struct("!III")  # iperf3 header: sec, usec, 32-bit sequence number
_H64 = struct.Struct("!IIQ")  # ... with --udp-counters-64bit
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
#: Send queue asked for on UDP data sockets unless -w says otherwise.
UDP_SNDBUF = 4 * 1024 * 1024
#: Receive queue asked for on UDP data sockets unless -w says otherwise (8 MiB: about
#: 20 ms of 3 Gbit/s).
UDP_RCVBUF = 8 * 1024 * 1024
#: Control space for one GRO read: the UDP_GRO segment size (an int).
_GRO_CONTROL = socket.CMSG_SPACE(4)


def grow_buffer(sock: socket.socket, force: int, plain: int, size: int) -> None:
    """Set a socket buffer to ``size``: past the sysctl maximum with the ``*FORCE`` option
    when privileged, else as far as the maximum allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


def grow_receive_buffer(sock: socket.socket, size: int = 0) -> None:
    """Ask for a ``size``-byte receive queue (default UDP_RCVBUF), past ``rmem_max`` when
    privileged (SO_RCVBUFFORCE): at line rate a 208 KiB default queue holds about 3 GRO
    batches, and everything behind them is dropped by the kernel."""
    grow_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, size or UDP_RCVBUF)


def kernel_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped for ``sock`` (receive queue full), from /proc/net/udp[6].

    The last column of /proc/net/udp is the socket's drop counter (``sk_drops``), the same
    count ``SO_RXQ_OVFL`` reports per message. -1 when unavailable.
    """
    try:
        import os

        inode = str(os.fstat(sock.fileno()).st_ino)
        for name in ("/proc/net/udp", "/proc/net/udp6"):
            with open(name) as fh:
                for line in fh:
                    cols = line.split()
                    if len(cols) > 12 and cols[9] == inode:
                        return int(cols[-1])
    except (OSError, ValueError):
        return -1
    return -1


class _GsoRefused(Exception):
    """The path refused a GSO send; the sender goes on without GSO."""


class UdpSender(Mover):
    """Sends numbered datagrams of ``length`` bytes, paced to ``rate`` bits/s (0 = flat out)."""

    def __init__(
        self,
        sock: socket.socket,
        stats: StreamStats,
        *,
        length: int,
        limits: Limits,
        rate: int,
        counters_64bit: bool,
        gso: bool,
        window: int = 0,
        batch: bool = True,
    ) -> None:
        super().__init__(sock, stats)
        self.length = length
        self.limits = limits
        self.rate = rate
        self.c64 = counters_64bit
        self.segments = gso_segments(length) if gso and enable_gso(sock, length) else 1
        stats.gso = self.segments > 1
        # Without GSO: ordinary datagrams, but up to BATCH per sendmmsg() call.
        self.use_batch = batch
        self.batch: MmsgBatch | None = None
        if self.segments == 1:
            self._batch_plainly()
        self._seq = 0
        if not window:
            # A datagram stays charged to the sender's queue until the device has sent it
            # (on loopback that is at once: loopback_xmit orphans it, and 5000 x 1400 B
            # to an unread socket went without blocking through an 8 KiB SO_SNDBUF): a
            # larger queue rides out a real device's pauses instead of blocking.
            grow_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, UDP_SNDBUF)

    def _batch_plainly(self) -> None:
        if self.use_batch:
            try:
                self.batch = MmsgBatch(self.sock, self.length)
            except OSError:
                self.batch = None

    def run(self) -> None:
        while True:
            try:
                self._send_loop()
                return
            except _GsoRefused:
                # The path will not take GSO (udp_send_skb: a datagram longer than the path
                # MTU, a device without checksum offload): ordinary datagrams from here on,
                # fragmented by IP where they are too long, as iperf3's would be.
                disable_gso(self.sock)
                self.segments = 1
                self.stats.gso = False
                self._batch_plainly()

    def _send_loop(self) -> None:
        length, c64 = self.length, self.c64
        batch = self.batch
        segments = batch.slots if batch is not None else self.segments
        payload = (bytes(range(256)) * (length * segments // 256 + 1))[: length * segments]
        if batch is not None:
            view = batch.buffer
            view[: len(payload)] = payload
            buf: bytearray | memoryview = view
            batch.set_length(length)
        else:
            buf = bytearray(payload)
            view = memoryview(buf)
        stats, limits = self.stats, self.limits
        check_limits = bool(limits.total_bytes or limits.total_blocks)
        pacer = Pacer(self.rate) if self.rate else None
        send = self.sock.send
        clock = time.time
        pack = (_H64 if c64 else _H32).pack_into
        # GSO batches of 32-bit headers are written with three strided array stores instead
        # of one pack per datagram (about 2x less Python per datagram).
        vector = segments > 1 and not c64 and length % 4 == 0
        words = view.cast("I") if vector else None
        stride = length // 4
        swap = sys.byteorder == "little"
        seq = self._seq
        mono = time.monotonic
        while not self.stop:
            if check_limits and limits.reached():
                break
            if mono() >= self.stop_at:  # set after the start: read each time
                break
            if pacer is not None:
                pacer.wait(stats.bytes)
                # Paced: send only as many segments as are due (at least one).
                count = 1 if segments == 1 else self._due(pacer, segments)
            else:
                count = segments
            now = clock()
            sec = int(now)
            usec = int((now - sec) * 1_000_000)
            sec &= 0xFFFFFFFF
            if count == 1:
                pack(buf, 0, sec, usec, (seq + 1) if c64 else (seq + 1) & 0xFFFFFFFF)
            elif words is not None and seq + count <= 0xFFFFFFFF:
                span = count * stride
                seqs = array("I", range(seq + 1, seq + count + 1))
                secs = array("I", (sec,)) * count
                usecs = array("I", (usec,)) * count
                if swap:
                    seqs.byteswap()
                    secs.byteswap()
                    usecs.byteswap()
                words[0:span:stride] = secs
                words[1:span:stride] = usecs
                words[2:span:stride] = seqs
            else:
                for index in range(count):
                    number = seq + 1 + index
                    pack(buf, index * length, sec, usec, number if c64 else number & 0xFFFFFFFF)
            try:
                if batch is not None:
                    count = batch.send(count)  # datagrams that went; the rest are re-sent
                    sent = count * length
                else:
                    sent = send(view[: count * length]) if count < segments else send(view)
            except OSError as exc:
                if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                    time.sleep(0.0005)
                    continue
                if exc.errno == errno.ECONNREFUSED and self.stop:
                    break
                if segments > 1 and batch is None and exc.errno in GSO_REFUSED:
                    self._seq = seq  # nothing of this send went
                    raise _GsoRefused from exc
                raise
            seq += count
            stats.bytes += sent
            stats.packets += count
            stats.blocks += count

    def _due(self, pacer: Pacer, segments: int) -> int:
        ahead = (time.monotonic() - pacer.t0) * pacer.bytes_per_s - self.stats.bytes
        return max(1, min(segments, int(ahead // self.length) + 1))


class UdpReceiver(Mover):
    """Receives iperf3 datagrams and keeps loss/order/jitter like iperf3's ``iperf_udp_recv``."""

    def __init__(
        self,
        sock: socket.socket,
        stats: StreamStats,
        *,
        length: int,
        counters_64bit: bool,
        gro: bool,
        window: int = 0,
        batch: bool = True,
    ) -> None:
        super().__init__(sock, stats)
        stats.udp = UdpReceiveStats()
        if not window:
            grow_receive_buffer(sock)
        self.c64 = counters_64bit
        self.gro = gro and enable_gro(sock)
        self.use_batch = batch
        self.length = length
        self.buffer = aligned_buffer(max(65536, length) + 4096)
        self.min_len = header_size(counters_64bit)

    def run(self) -> None:
        if self.gro:
            self._run_gro()
            return
        if self.use_batch:
            try:
                batch = MmsgBatch(self.sock, -(-self.length // 64) * 64)
            except OSError:
                batch = None
            if batch is not None:
                self._run_batched(batch)
                return
        self._run_plain()

    def _run_batched(self, batch: MmsgBatch) -> None:
        """recvmmsg up to BATCH datagrams per call; a consecutive batch is one record."""
        stats = self.stats
        udp = stats.udp
        assert udp is not None
        c64, min_len, slot = self.c64, self.min_len, batch.slot_size
        buf = batch.buffer
        words = buf.cast("I")
        step = slot // 4
        swap = sys.byteorder == "little"
        clock, mono = time.time, time.monotonic
        record, record_run = udp.record, udp.record_run
        receive, lengths = batch.receive, batch.lengths
        while not self.stop:
            n = receive()
            if n <= 0:
                return
            sizes = lengths(n)
            if not max(sizes):
                return  # shut down: empty reads (iperf3 never sends empty datagrams)
            now = clock()
            stats.last_rx = mono()
            if not c64 and min(sizes) >= min_len:
                seqs = array("I", words[2 : n * step : step])
                if swap:
                    seqs.byteswap()
                first = seqs[0]
                sent, _ = unpack_header(buf, 0, False)
                if seqs == array("I", range(first, first + n)) and record_run(first, n, sent, now):
                    stats.packets += n
                    stats.bytes += sum(sizes)
                    continue
            for i in range(n):
                if sizes[i] < min_len:
                    continue  # a stray connect datagram
                sent, seq = unpack_header(buf, i * slot, c64)
                record(seq, sent, now)
                stats.packets += 1
                stats.bytes += sizes[i]

    def _run_plain(self) -> None:
        stats = self.stats
        udp = stats.udp
        assert udp is not None
        recv_into, buf, c64, min_len = self.sock.recv_into, self.buffer, self.c64, self.min_len
        clock, mono = time.time, time.monotonic
        record = udp.record
        while not self.stop:
            n = recv_into(buf)
            if not n:
                return  # shut down (iperf3 never sends empty datagrams)
            if n < min_len:
                continue  # a stray connect datagram
            sent, seq = unpack_header(buf, 0, c64)
            record(seq, sent, clock())
            stats.bytes += n
            stats.packets += 1
            stats.last_rx = mono()

    def _run_gro(self) -> None:
        stats = self.stats
        udp = stats.udp
        assert udp is not None
        recvmsg_into, buf, c64, min_len = (
            self.sock.recvmsg_into,
            self.buffer,
            self.c64,
            self.min_len,
        )
        ancsize = _GRO_CONTROL
        clock, mono = time.time, time.monotonic
        record, record_run = udp.record, udp.record_run
        while not self.stop:
            n, anc, _flags, _addr = recvmsg_into([buf], ancsize)
            if not n:
                return
            seg = gro_segment(anc) or n
            now = clock()
            stats.last_rx = mono()
            count = -(-n // seg)
            last_off = (count - 1) * seg
            if count > 1 and n - last_off >= min_len:
                # Fast path: a GSO batch is one send, numbered consecutively.
                sent, first = unpack_header(buf, 0, c64)
                last_sent, last = unpack_header(buf, last_off, c64)
                if (
                    last - first == count - 1
                    and last_sent == sent
                    and record_run(first, count, sent, now)
                ):
                    stats.packets += count
                    stats.bytes += n
                    continue
            for off in range(0, n, seg):
                if n - off < min_len:
                    continue
                sent, seq = unpack_header(buf, off, c64)
                record(seq, sent, now)
                stats.packets += 1
            stats.bytes += n
