"""``-i`` intervals: no spurious tail interval of a few milliseconds at the end of a timed
test (in -J, --json-stream, the text lines and the plot); the intervals add up to the totals.

iperf3 keeps a last interval only if it lasted at least 10 % of ``-i`` or moved bytes; a
timed test here ends its last regular interval at the test's end instead of starting a new
one a few milliseconds before it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port), "-B", "127.0.0.1"]
    with running(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_listening(port)
        yield port


def _client(port: int, *args: str) -> list[str]:
    return [*SK, "bench", "client", "127.0.0.1", "-p", str(port), *args]


def _check(intervals: list[dict[str, Any]], interval: float, duration: float) -> None:
    sums = [i["sum"] for i in intervals]
    assert len(sums) == round(duration / interval), [(s["start"], s["end"]) for s in sums]
    for s in sums:
        assert s["seconds"] >= 0.5 * interval, (s["start"], s["end"])
    assert sums[-1]["end"] >= duration - 0.01


@pytest.mark.parametrize(("interval", "mode"), [("1", []), ("0.25", []), ("0.5", ["-R"])])
def test_json_has_no_tiny_last_interval(port: int, interval: str, mode: list[str]) -> None:
    rc, doc, err = run_json(_client(port, "-t", "1", "-i", interval, "-J", *mode))
    assert rc == 0, err
    _check(doc["intervals"], float(interval), 1.0)
    total = doc["end"]["sum_received" if mode else "sum_sent"]["bytes"]
    assert sum(i["sum"]["bytes"] for i in doc["intervals"]) == total


def test_json_stream_and_text_have_no_tiny_last_interval(port: int) -> None:
    proc = subprocess.run(
        _client(port, "-t", "1", "--json-stream"), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    _check([e["data"] for e in events if e["event"] == "interval"], 1.0, 1.0)
    text = subprocess.run(_client(port, "-t", "1"), capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    lines = [ln for ln in text.stdout.splitlines() if ln.startswith("[  1]")]
    assert len(lines) == 1, text.stdout
    # One line from 0.00 to the end (when the sender stopped: 1.00 or a little later).
    m = re.match(r"\[  1\]\s+0\.00-(\d+\.\d+)\s+sec", lines[0])
    assert m and float(m.group(1)) >= 0.99, lines[0]


def test_plot_has_one_bar_per_interval(port: int, tmp_path: Path) -> None:
    out = tmp_path / "p.svg"
    proc = subprocess.run(
        _client(port, "-t", "1", "-i", "0.5", "--plot", str(out)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    poly = out.read_text().split("<polyline", 1)[1].split('points="', 1)[1].split('"', 1)[0]
    assert len(poly.split()) == 2, poly  # 0.5 s and 1.0 s
