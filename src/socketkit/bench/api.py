"""The library entry points: ``run`` (blocking), ``BenchRun`` (async iterator), ``serve``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from .client import ClientOptions, run_client
from .results import BenchResult, IntervalReport
from .server import DEFAULT_MAX_TESTS, BenchServer

__all__ = ["BenchRun", "interval_reports", "run", "serve"]


def run(
    host: str,
    *,
    on_interval: Callable[[IntervalReport], None] | None = None,
    **options: Any,
) -> BenchResult:
    """Run one test against an iperf3 or socketkit server and return its typed result.

    ``options`` are the fields of :class:`ClientOptions` (``port``, ``udp``, ``bandwidth``,
    ``length``, ``time``, ``num``, ``parallel``, ``reverse``, ``bidir``, ``interval``,
    ``omit``, ``window``, ``nodelay``, ``latency``, ``gso``). ``on_interval`` is called from a
    worker thread with each :class:`IntervalReport`.

    Raises the errors of :func:`socketkit.bench.client.run_client`.
    """
    return run_client(ClientOptions(host=host, **options), on_interval)


class BenchRun:
    """``async for report in BenchRun(host, ...)`` yields interval reports as they happen;
    ``await run.result()`` then returns the :class:`BenchResult` (or raises its error).

    The test runs in a worker thread; cancelling the iteration leaves it to finish its
    current test (at most ``time`` seconds) in the background.
    """

    def __init__(self, host: str, **options: Any) -> None:
        self.options = ClientOptions(host=host, **options)
        self._queue: asyncio.Queue[IntervalReport | None] | None = None
        self._task: asyncio.Future[BenchResult] | None = None

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[IntervalReport | None] = asyncio.Queue()
        self._queue = queue

        def push(report: IntervalReport) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, report)

        def work() -> BenchResult:
            try:
                return run_client(self.options, push)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        self._task = loop.run_in_executor(None, work)

    def __aiter__(self) -> AsyncIterator[IntervalReport]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[IntervalReport]:
        if self._task is None:
            self._start()
        assert self._queue is not None
        while True:
            report = await self._queue.get()
            if report is None:
                return
            yield report

    async def result(self) -> BenchResult:
        if self._task is None:
            self._start()
        assert self._task is not None
        return await self._task


def interval_reports(host: str, **options: Any) -> BenchRun:
    """Shorthand for :class:`BenchRun`: ``async for r in interval_reports("::1", time=3)``."""
    return BenchRun(host, **options)


def serve(host: str = "", port: int = 5201, *, max_tests: int = DEFAULT_MAX_TESTS) -> BenchServer:
    """Start a bench server in a background thread; close it with ``.close()`` or ``with``."""
    return BenchServer(host, port, max_tests=max_tests).start()
