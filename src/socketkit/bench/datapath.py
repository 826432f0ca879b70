"""The data phase of one test, shared by client and server: start, stop, drain, count."""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..proto.iperf3 import DEFAULT_TCP_LEN, BenchParams, ExchangeResults, StreamResult
from .cpu import CpuMeter, CpuUsage
from .latency import EchoResponder, LatencyRequester
from .streams import Limits, Mover, StreamStats
from .tcp_movers import TcpReceiver, TcpSender
from .tcpinfo import congestion_control, read_tcp_info
from .udp_movers import UdpReceiver, UdpSender, kernel_drops

__all__ = ["DataPath", "DataStream"]

#: A receiver is drained when no byte arrived for this long after the senders stopped.
DRAIN_IDLE = 0.1
#: ...but never longer than this in total (a receiver with bytes still queued is waited for).
DRAIN_MAX = 5.0
#: How long a stopping sender may take to return from the kernel before it is woken.
STOP_GRACE = 1.0
#: How long to wait for the peer to acknowledge everything a TCP sender queued.
ACK_WAIT = 2.0


def _queued(sock: socket.socket) -> int:
    """Bytes waiting in the kernel receive queue of ``sock`` (SIOCINQ = FIONREAD); 0 if
    unknown."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0])
    except OSError:
        return 0


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes in a TCP socket's send queue, not yet acknowledged by the peer (SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0])


@dataclass(slots=True)
class DataStream:
    """A connected data socket, its iperf3 stream id and whether this side sends on it."""

    id: int
    sock: socket.socket
    sender: bool


class DataPath:
    """Movers for every stream of one test, plus the CPU meter."""

    def __init__(
        self,
        params: BenchParams,
        streams: Sequence[DataStream],
        *,
        role: str,
        gso: bool = False,
        gro: bool = False,
        exact_blocks: bool | None = None,
    ) -> None:
        self.params = params
        #: TCP senders write one -l block per call; None = unless the length is the default
        #: (a server cannot tell whether the client gave -l: iperf3 always sends "len").
        self.exact_blocks = (
            params.length != DEFAULT_TCP_LEN if exact_blocks is None else exact_blocks
        )
        self.role = role
        self.streams = list(streams)
        self.limits = Limits(total_bytes=params.num, total_blocks=params.blockcount)
        self.movers: list[Mover] = []
        self._congestion = ""
        for ds in self.streams:
            stats = StreamStats(id=ds.id, sender=ds.sender, protocol=params.protocol)
            self.movers.append(self._mover(ds, stats, gso=gso, gro=gro))
            if ds.sender:
                self.limits.streams.append(stats)
        self.cpu = CpuMeter()
        self.cpu_usage = CpuUsage(0.0, 0.0, 0.0)
        self.t_start = 0.0
        self.t_end = 0.0
        #: When the receivers' test time ended (0 = at their last byte): the client sets it
        #: when it sends TEST_END, or when it holds its TCP receivers (hold_receivers).
        self.t_rx_end = 0.0
        self.stop_at = float("inf")  # see set_stop_at

    def _mover(self, ds: DataStream, stats: StreamStats, *, gso: bool, gro: bool) -> Mover:
        p = self.params
        if p.latency_size:
            if self.role == "client":
                return LatencyRequester(ds.sock, stats, size=p.latency_size)
            return EchoResponder(ds.sock, stats, size=p.latency_size)
        if p.protocol == "udp":
            if ds.sender:
                return UdpSender(
                    ds.sock,
                    stats,
                    length=p.length,
                    limits=self.limits,
                    rate=p.bandwidth,
                    counters_64bit=p.udp_counters_64bit,
                    gso=gso,
                    window=p.window,
                )
            return UdpReceiver(
                ds.sock,
                stats,
                length=p.length,
                counters_64bit=p.udp_counters_64bit,
                gro=gro,
                window=p.window,
            )
        if ds.sender:
            return TcpSender(
                ds.sock,
                stats,
                length=p.length,
                limits=self.limits,
                rate=p.bandwidth,
                zerocopy=p.zerocopy,
                exact=self.exact_blocks,
            )
        return TcpReceiver(ds.sock, stats, length=p.length)

    @property
    def stats(self) -> list[StreamStats]:
        return [m.stats for m in self.movers]

    def start(self) -> None:
        self.cpu.start()
        self.t_start = time.monotonic()
        for mover in self.movers:
            mover.start()

    def mark_omit_end(self) -> None:
        self.cpu.start()
        self.t_start = time.monotonic()
        for mover in self.movers:
            mover.stats.mark_omit_end()

    def senders_done(self) -> bool:
        """True when every sender stopped on its own (limits reached or an error)."""
        senders = [m for m in self.movers if m.stats.sender]
        return bool(senders) and not any(m.alive for m in senders)

    def errors(self) -> list[str]:
        return [m.stats.error for m in self.movers if m.stats.error]

    def set_stop_at(self, when: float) -> None:
        """A timed test ends at ``when`` (monotonic): senders stop by themselves then, and
        their time ends there even if this side notices the end late (a loaded host)."""
        self.stop_at = when
        for mover in self.movers:
            if mover.stats.sender or isinstance(mover, TcpReceiver):
                # TCP receivers then hold (see hold_receivers) until the drain.
                mover.stop_at = when

    def stop_senders(self) -> None:
        senders = [m for m in self.movers if m.stats.sender]
        for mover in senders:
            mover.request_stop()
        deadline = time.monotonic() + STOP_GRACE
        for mover in senders:
            if not mover.join(max(0.0, deadline - time.monotonic())):
                mover.wake()
                mover.join(STOP_GRACE)
        self.t_end = min(time.monotonic(), self.stop_at)

    def hold_receivers(self) -> None:
        """End the receivers' test time now: TCP receivers stop reading until the drain.

        The client pauses between its senders' end and TEST_END so that the peer can read
        what it sent (an iperf3 server stops counting at TEST_END); a peer that sends (--bidir)
        goes on sending during that pause. Held receivers leave its data in the socket
        buffers, where flow control stops it; the drain after TEST_END reads all of it, so no
        byte is lost, and it counts as in flight at the end, as iperf3 counts it at TEST_END.
        """
        held = [m for m in self.movers if isinstance(m, TcpReceiver)]
        for mover in held:
            mover.hold()
        if held:
            self.t_rx_end = min(time.monotonic(), self.stop_at)

    def rx_end(self, st: StreamStats) -> float:
        """Monotonic end of a receiver's test time: its last byte, at most t_rx_end."""
        if self.t_rx_end and st.last_rx > self.t_rx_end:
            return self.t_rx_end
        return st.last_rx

    def uncount_unacknowledged(self) -> int:
        """Against a peer that stopped counting at its TEST_END (an iperf3 client): take the
        bytes still in each TCP sending stream's send queue (not yet acknowledged: they never
        reached the peer within its test, e.g. held up by a retransmission timeout) out of
        what we report as sent. Returns how many bytes that was."""
        if self.params.protocol != "tcp":
            return 0
        taken = 0
        for mover in self.movers:
            if not isinstance(mover, TcpSender):
                continue
            try:
                queued = _unacknowledged(mover.sock)
            except OSError:
                continue
            queued = min(max(queued, 0), mover.stats.measured_bytes)
            mover.stats.bytes -= queued
            taken += queued
        return taken

    def wait_acked(self) -> None:
        """Wait (bounded) until the peer acknowledged all TCP data we queued, so its count
        and ours agree when it reads the TEST_END that follows."""
        if self.params.protocol != "tcp":
            return
        deadline = time.monotonic() + ACK_WAIT
        for ds in self.streams:
            if not ds.sender:
                continue
            while time.monotonic() < deadline:
                try:
                    queued = _unacknowledged(ds.sock)
                except OSError:
                    break
                if queued == 0:
                    break
                time.sleep(0.002)

    def shutdown_senders(self) -> None:
        """Send FIN on TCP sending streams, as iperf3's server does by closing them on
        TEST_END: an iperf3 receiver blocked reading the rest of a block then sees EOF."""
        if self.params.protocol != "tcp":
            return
        for ds in self.streams:
            if ds.sender:
                with contextlib.suppress(OSError):
                    ds.sock.shutdown(socket.SHUT_WR)

    def drain_receivers(self) -> None:
        """Read until every receiver reached EOF, or was idle for DRAIN_IDLE with nothing
        left in its kernel receive queue; then stop them.

        Idle alone is not enough: a receiver thread that got no CPU for DRAIN_IDLE (a loaded
        machine) leaves bytes in the kernel queue, and stopping it then loses them while the
        peer counted them as sent (shutdown(SHUT_RD) ends the reads at the queue's end).
        """
        receivers = [m for m in self.movers if not m.stats.sender]
        for mover in receivers:
            if isinstance(mover, TcpReceiver):
                mover.release()
        if receivers:
            deadline = time.monotonic() + DRAIN_MAX
            last = -1
            idle_since = time.monotonic()
            while time.monotonic() < deadline:
                total = sum(m.stats.bytes for m in receivers)
                now = time.monotonic()
                live = [m for m in receivers if m.alive]
                if not live:
                    break
                if total != last:
                    last, idle_since = total, now
                elif now - idle_since >= DRAIN_IDLE and not any(_queued(m.sock) for m in live):
                    break
                time.sleep(0.01)
        if not self.t_end:
            self.t_end = time.monotonic()
        self.cpu_usage = self.cpu.stop()
        for mover in self.movers:
            self._final_counters(mover)
        for mover in receivers:
            mover.request_stop()
            mover.wake()
            mover.join(STOP_GRACE)

    def _final_counters(self, mover: Mover) -> None:
        stats = mover.stats
        if self.params.protocol == "tcp":
            info = read_tcp_info(mover.sock)
            if info is not None:
                stats.rtt_us = info.rtt_us
                stats.retransmits = info.total_retrans if stats.sender else -1
        elif not stats.sender:
            stats.kernel_drops = kernel_drops(mover.sock)

    def stop_all(self) -> None:
        for mover in self.movers:
            mover.request_stop()
            mover.wake()
        for mover in self.movers:
            mover.join(STOP_GRACE)

    def close(self) -> None:
        self.stop_all()
        for ds in self.streams:
            ds.sock.close()

    @property
    def seconds(self) -> float:
        return max((self.t_end or time.monotonic()) - self.t_start, 1e-9)

    def stream_seconds(self, st: StreamStats) -> float:
        """A receiver's time runs to its last byte (data drained after the end was in
        flight or queued during the test); a sender's to when the senders stopped."""
        if not st.sender and st.last_rx > self.t_start:
            return max(self.rx_end(st) - self.t_start, 1e-9)
        return self.seconds

    def results(self) -> ExchangeResults:
        """This side's results for the exchange (iperf3's ``send_results``)."""
        streams = []
        for st in self.stats:
            udp = st.udp
            streams.append(
                StreamResult(
                    id=st.id,
                    bytes=st.measured_bytes,
                    retransmits=st.retransmits if st.sender else -1,
                    jitter=udp.jitter if udp else 0.0,
                    errors=(udp.errors - st.base_errors) if udp else 0,
                    packets=(
                        (udp.packet_count - st.base_packets)
                        if udp
                        else st.packets - st.base_packets
                    ),
                    omitted_errors=st.base_errors,
                    omitted_packets=st.base_packets,
                    start_time=0.0,
                    end_time=self.stream_seconds(st),
                    out_of_order=udp.out_of_order if udp else -1,
                    duplicates=udp.duplicates if udp else -1,
                    received=udp.received if udp else -1,
                    kernel_drops=st.kernel_drops,
                    rtt_us=st.rtt_us if self.params.protocol == "tcp" else -1,
                )
            )
        has_retrans = int(self.params.protocol == "tcp" and any(s.sender for s in self.stats))
        return ExchangeResults(
            streams=tuple(streams),
            cpu_util_total=self.cpu_usage.total,
            cpu_util_user=self.cpu_usage.user,
            cpu_util_system=self.cpu_usage.system,
            sender_has_retransmits=has_retrans,
            congestion_used=self.congestion,
        )

    @property
    def congestion(self) -> str:
        """The TCP congestion control of the data connections ("" for UDP), which iperf3
        peers exchange as ``congestion_used``."""
        if self.params.protocol != "tcp" or not self.movers:
            return ""
        if not self._congestion:
            self._congestion = congestion_control(self.movers[0].sock)
        return self._congestion
