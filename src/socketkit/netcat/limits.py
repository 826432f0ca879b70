"""How many sessions a ``listen -k`` server admits: at most ``--max-conns`` at once (default
100, as ncat's ``--max-conns``) and at most ``--max-conns-per-source`` from one address
(default 32, so one host cannot take every slot). Every accepted client and
``--exec`` program holds one slot until its session ends (UDP peers: the same limits, kept by
the peer table in :mod:`socketkit.proto.peers`)."""

from __future__ import annotations

import threading
from collections import Counter

from ..proto.peers import source_of

__all__ = ["DEFAULT_MAX_CONNS", "DEFAULT_MAX_PER_SOURCE", "Slots", "source_of"]

#: ncat's default --max-conns (ncat(1)).
DEFAULT_MAX_CONNS = 100
#: Sessions one source address may hold at once.
DEFAULT_MAX_PER_SOURCE = 32


class Slots:
    """Admission counts, thread-safe. ``None`` limits mean no limit."""

    def __init__(self, total: int | None, per_source: int | None) -> None:
        self.total = total
        self.per_source = per_source
        self._lock = threading.Lock()
        self._count = 0
        self._by_source: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return self._count

    def take(self, source: str | None) -> str | None:
        """Take a slot for a peer from ``source``; returns ``None`` if taken, else why not."""
        with self._lock:
            if self.total is not None and self._count >= self.total:
                return f"--max-conns {self.total} reached"
            if (
                source is not None
                and self.per_source is not None
                and self._by_source[source] >= self.per_source
            ):
                return f"--max-conns-per-source {self.per_source} reached for {source}"
            self._count += 1
            if source is not None:
                self._by_source[source] += 1
            return None

    def give(self, source: str | None) -> None:
        """Free a slot taken with :meth:`take`."""
        with self._lock:
            self._count -= 1
            if source is not None:
                self._by_source[source] -= 1
                if self._by_source[source] <= 0:
                    del self._by_source[source]
