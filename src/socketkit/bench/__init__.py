"""``socketkit bench``: throughput, loss and latency tests that speak iperf3's protocol."""

from __future__ import annotations

from .api import BenchRun, interval_reports, run, serve
from .client import ClientOptions
from .results import BenchResult, IntervalReport, IntervalStream, StreamSummary, Sum
from .server import BenchServer

__all__ = [
    "BenchResult",
    "BenchRun",
    "BenchServer",
    "ClientOptions",
    "IntervalReport",
    "IntervalStream",
    "StreamSummary",
    "Sum",
    "interval_reports",
    "run",
    "serve",
]
