"""Rate pacing for ``-b RATE``: sleep until the bytes sent so far are due."""

from __future__ import annotations

import time

__all__ = ["Pacer"]

#: Do not sleep for less than this: the sleep itself costs about as much (Linux timer slack).
MIN_SLEEP = 0.0002


class Pacer:
    """Keeps a sender at ``rate_bps`` bits per second on average (0 = unlimited)."""

    def __init__(self, rate_bps: int) -> None:
        self.bytes_per_s = rate_bps / 8.0
        self.t0 = time.monotonic()

    def wait(self, sent_bytes: int) -> None:
        """Block until sending more than ``sent_bytes`` keeps the average at the rate."""
        if not self.bytes_per_s:
            return
        delay = self.t0 + sent_bytes / self.bytes_per_s - time.monotonic()
        if delay > MIN_SLEEP:
            time.sleep(delay)
