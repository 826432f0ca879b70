"""``-i`` interval reports: a thread samples the stream counters every interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .datapath import DataPath
from .results import IntervalReport, IntervalStream

__all__ = ["IntervalReporter"]


class IntervalReporter:
    """Calls ``callback(report)`` every ``interval`` seconds and once more at ``stop()``."""

    def __init__(
        self,
        path: DataPath,
        interval: float,
        callback: Callable[[IntervalReport], None],
        *,
        omit: float = 0.0,
    ) -> None:
        self.path = path
        self.interval = interval
        self.callback = callback
        self.omit = omit
        self._stop = threading.Event()
        self._prev = {s.id: (s.bytes, s.packets) for s in path.stats}
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
        while not self._stop.wait(max(0.0, self._last + self.interval - time.monotonic())):
            self._emit()

    def _emit(self) -> None:
        with self._lock:
            now = max(time.monotonic(), self._last + 1e-6)
            streams = []
            for s in self.path.stats:
                pb, pp = self._prev.get(s.id, (0, 0))
                nbytes, npk = s.bytes - pb, s.packets - pp
                self._prev[s.id] = (s.bytes, s.packets)
                streams.append(
                    IntervalStream(
                        id=s.id,
                        sender=s.sender,
                        bytes=nbytes,
                        bits_per_second=8.0 * nbytes / (now - self._last),
                        packets=npk,
                    )
                )
            start, end = self._last - self._t0, now - self._t0
            omitted = end <= self.omit + 1e-3 if self.omit else False
            if self.omit and not omitted:
                start, end = max(0.0, start - self.omit), end - self.omit
            self._last = now
        self.callback(IntervalReport(start, end, tuple(streams), omitted))

    def stop(self) -> None:
        """Stop sampling and report the last partial interval (if it is not tiny)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(2.0)
        # The last, partial interval is reported whenever it moved bytes, so that the
        # intervals always add up to the totals.
        moved = any(self._prev.get(s.id, (0, 0))[0] != s.bytes for s in self.path.stats)
        if self.interval > 0 and moved:
            self._emit()
