"""Side-by-side benchmark harness: socketkit and its anchor, interleaved, median ratio.

Every benchmark script in this folder:
  * measures socketkit and the anchor tool *in the same run*, alternating (A B A B ...),
  * reports the median of the per-round ratios (never an absolute figure as the verdict),
  * calls :func:`report` once per comparison, which prints one line and appends a JSON record
    to ``benchmarks/results.jsonl`` (``benchmarks/run`` turns those into docs/benchmarks.md).

The machines are shared and noisy (2 cores): absolute numbers are printed for context only.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).with_name("results.jsonl")
#: Where the C helpers in benchmarks/c/ are compiled (git-ignored).
BUILD = Path(__file__).with_name("_build")


def build_c(name: str) -> Path:
    """``benchmarks/c/NAME.c`` compiled with ``gcc -O2`` into ``_build/NAME``, again only
    when the source is newer than the program."""
    BUILD.mkdir(exist_ok=True)
    exe = BUILD / name
    src = Path(__file__).with_name("c") / f"{name}.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    return exe


@dataclass
class Comparison:
    name: str  # e.g. "TCP bulk, sync Stream vs plain socket"
    ours: str  # e.g. "socketkit Stream (sync)"
    anchor: str  # e.g. "socket sendall/recv_into"
    ratio: float  # median of per-round (ours / anchor), higher is better
    target: float | None  # the acceptance ratio, if any
    unit: str  # unit of the samples, e.g. "Gbit/s"
    ours_samples: list[float] = field(default_factory=list)
    anchor_samples: list[float] = field(default_factory=list)
    command: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


def interleave(
    ours: Callable[[], float], anchor: Callable[[], float], rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """Run ``ours`` and ``anchor`` alternately ``rounds`` times (order flipped every round so
    neither always goes first). Each returns a rate, higher is better. Returns (ours samples,
    anchor samples, per-round ratios)."""
    a: list[float] = []
    b: list[float] = []
    ratios: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            x = ours()
            y = anchor()
        else:
            y = anchor()
            x = ours()
        a.append(x)
        b.append(y)
        ratios.append(x / y if y else float("inf"))
    return a, b, ratios


def report(
    name: str,
    *,
    ours: str,
    anchor: str,
    ours_samples: list[float],
    anchor_samples: list[float],
    ratios: list[float],
    target: float | None,
    unit: str,
    note: str = "",
) -> Comparison:
    """Print one line and append the comparison to results.jsonl."""
    comp = Comparison(
        name=name,
        ours=ours,
        anchor=anchor,
        ratio=statistics.median(ratios),
        target=target,
        unit=unit,
        ours_samples=[round(x, 3) for x in ours_samples],
        anchor_samples=[round(x, 3) for x in anchor_samples],
        command=" ".join(shlex.quote(a) for a in ["python3", *sys.argv]),
        note=note,
    )
    verdict = "" if comp.passed is None else ("  PASS" if comp.passed else "  BELOW TARGET")
    goal = "" if target is None else f" (target >= {target:g}x)"
    print(
        f"RATIO {name}: {comp.ratio:.2f}x{goal}{verdict}   "
        f"[{ours}: median {statistics.median(ours_samples):.3g} {unit}; "
        f"{anchor}: median {statistics.median(anchor_samples):.3g} {unit}]",
        flush=True,
    )
    record = asdict(comp) | {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid()}
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    return comp
