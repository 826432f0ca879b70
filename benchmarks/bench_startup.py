"""Command-line start-up: ``socketkit --version`` and ``socketkit --help``.

The issue's target is absolute (< 0.15 s each). The anchor run side by side is the bare
interpreter (``python3 -c pass``): the ratio shows what socketkit adds on top of Python's own
start-up, which is the part socketkit controls (lazy imports).

    python3 benchmarks/bench_startup.py [--quick] [--runs 21]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from harness import interleave, report


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    bare = [sys.executable, "-c", "pass"]
    for flag in ("--version", "--help"):
        script = shutil.which("socketkit")  # the installed console script, as users run it
        ours = [script, flag] if script else [sys.executable, "-m", "socketkit", flag]
        # Rates (runs per second) so that higher is better, as the harness expects.
        a, b, ratios = interleave(lambda o=ours: 1 / wall(o), lambda: 1 / wall(bare), runs)
        seconds = statistics.median(1 / x for x in a)
        report(
            f"start-up: socketkit {flag} vs python3 -c pass (rate ratio)",
            ours=f"socketkit {flag}",
            anchor="python3 -c pass",
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=None,
            unit="starts/s",
            note=f"median {seconds:.3f} s; absolute target < 0.15 s: "
            f"{'PASS' if seconds < 0.15 else 'ABOVE TARGET'}",
        )
        print(f"  socketkit {flag}: median {seconds:.3f} s (target < 0.15 s): "
              f"{'PASS' if seconds < 0.15 else 'ABOVE TARGET'}")  # fmt: skip


if __name__ == "__main__":
    main()
