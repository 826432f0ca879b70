"""CPU utilisation of this process over a test, as iperf3 reports it (percent of one CPU)."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

__all__ = ["CpuMeter", "CpuUsage"]


@dataclass(frozen=True, slots=True)
class CpuUsage:
    total: float
    user: float
    system: float


class CpuMeter:
    """``start()`` then ``stop()``: user and system CPU time over wall time, in percent."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._ru = resource.getrusage(resource.RUSAGE_SELF)

    def start(self) -> None:
        self._wall = time.monotonic()
        self._ru = resource.getrusage(resource.RUSAGE_SELF)

    def stop(self) -> CpuUsage:
        wall = max(time.monotonic() - self._wall, 1e-9)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        user = 100.0 * (ru.ru_utime - self._ru.ru_utime) / wall
        system = 100.0 * (ru.ru_stime - self._ru.ru_stime) / wall
        return CpuUsage(total=user + system, user=user, system=system)
