"""``-i`` interval reports: a thread samples the stream counters every interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .datapath import DataPath
from .results import IntervalReport, IntervalStream, TcpSample
from .tcpinfo import read_tcp_info

__all__ = ["IntervalReporter"]


#: A last interval shorter than this share of ``-i`` is not reported on its own: iperf3 drops
#: such a tail when it moved no bytes (iperf_print_intermediate), and a timed test here folds
#: it into the interval before (see IntervalReporter).
SHORT_TAIL = 0.10


class IntervalReporter:
    """Calls ``callback(report)`` every ``interval`` seconds and once more at ``stop()``.

    ``duration`` (a timed test's ``-t``; 0 for ``-n``/``-k``) lets the reporter skip the
    regular tick that would fall within SHORT_TAIL of the test's end: the last interval then
    runs to the end (1.002 s rather than 1.000 s plus a 0.002 s interval whose rate means
    nothing), and the intervals still add up to the totals.
    """

    def __init__(
        self,
        path: DataPath,
        interval: float,
        callback: Callable[[IntervalReport], None],
        *,
        omit: float = 0.0,
        duration: float = 0.0,
    ) -> None:
        self.path = path
        self.interval = interval
        self.callback = callback
        self.omit = omit
        self.duration = duration
        self._stop = threading.Event()
        self._prev = {s.id: (s.bytes, s.packets) for s in path.stats}
        # TCP streams this side sends on: TCP_INFO at each interval, as iperf3 reports it.
        tcp = path.params.protocol == "tcp"
        self._tcp_socks = {m.stats.id: m.sock for m in path.movers if tcp and m.stats.sender}
        self._prev_retrans: dict[int, int] = {}
        self._prev_udp: dict[int, tuple[int, int]] = {}  # sequence numbers, lost
        self._t0 = time.monotonic()
        self._last = self._t0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-intervals", daemon=True)

    def start(self) -> None:
        self._t0 = self._last = time.monotonic()
        # Counted from zero, not from the counters now: the movers may already have moved a
        # block when this starts, and the intervals must add up to the totals.
        self._prev = {}
        if self.interval > 0:
            self._thread.start()

    def _run(self) -> None:
        end = self._t0 + self.omit + self.duration if self.duration else float("inf")
        while not self._stop.wait(max(0.0, self._last + self.interval - time.monotonic())):
            if time.monotonic() >= end - SHORT_TAIL * self.interval:
                return  # the last interval runs to the end: stop() reports it
            self._emit()

    def _emit(self, at: float | None = None) -> None:
        with self._lock:
            now = max(time.monotonic() if at is None else at, self._last + 1e-6)
            streams = []
            for s in self.path.stats:
                pb, pp = self._prev.get(s.id, (0, 0))
                nbytes, npk = s.bytes - pb, s.packets - pp
                self._prev[s.id] = (s.bytes, s.packets)
                jitter, lost = None, 0
                if s.udp is not None and not s.sender:  # iperf3's receiver figures
                    seq, errors = self._prev_udp.get(s.id, (0, 0))
                    npk, lost = s.udp.packet_count - seq, s.udp.errors - errors
                    self._prev_udp[s.id] = (s.udp.packet_count, s.udp.errors)
                    jitter = s.udp.jitter * 1000
                streams.append(
                    IntervalStream(
                        id=s.id,
                        sender=s.sender,
                        bytes=nbytes,
                        bits_per_second=8.0 * nbytes / (now - self._last),
                        packets=npk,
                        tcp=self._tcp_sample(s.id),
                        udp=s.protocol == "udp",
                        jitter_ms=jitter,
                        lost_packets=lost,
                    )
                )
            start, end = self._last - self._t0, now - self._t0
            omitted = end <= self.omit + 1e-3 if self.omit else False
            if self.omit and not omitted:
                start, end = max(0.0, start - self.omit), end - self.omit
            self._last = now
        self.callback(IntervalReport(start, end, tuple(streams), omitted))

    def _tcp_sample(self, stream_id: int) -> TcpSample | None:
        sock = self._tcp_socks.get(stream_id)
        info = None if sock is None else read_tcp_info(sock)
        if info is None:
            return None
        before = self._prev_retrans.get(stream_id, 0)
        self._prev_retrans[stream_id] = info.total_retrans
        return TcpSample(
            retransmits=max(info.total_retrans - before, 0),
            snd_cwnd=info.snd_cwnd_bytes,
            snd_wnd=info.snd_wnd,
            rtt=info.rtt_us,
            rttvar=info.rttvar_us,
            pmtu=info.pmtu,
        )

    def stop(self, at: float | None = None) -> None:
        """Stop sampling and report the last partial interval (see :meth:`finish`)."""
        self.stop_ticking()
        self.finish(at)

    def stop_ticking(self) -> None:
        """Stop the regular reports (the test's senders stopped)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(2.0)

    def finish(self, at: float | None = None) -> None:
        """Report the last, partial interval, up to ``at`` (monotonic; default now).

        Called once the receivers have drained, so that the intervals add up to the totals:
        it holds what arrived after the senders stopped, too.
        """
        # Reported whenever it moved bytes, or when it is not tiny (iperf3's rule).
        moved = any(self._prev.get(s.id, (0, 0))[0] != s.bytes for s in self.path.stats)
        end = time.monotonic() if at is None else at
        long_enough = end - self._last >= SHORT_TAIL * self.interval
        if self.interval > 0 and (moved or long_enough):
            self._emit(end)
