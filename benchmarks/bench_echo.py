"""Echo ping-pong: 1 KiB messages, 100 connections, one message in flight per connection.

The load comes from a small C epoll client (benchmarks/c/echo_load.c, compiled here with gcc)
so the client is not the bottleneck; server pinned to CPU 0, client to CPU 1. Comparisons, each
interleaved in one run with the median per-round ratio reported:
  * socketkit.aio server on uvloop  vs bare uvloop asyncio.Protocol   (target >= 0.85x)
  * socketkit.aio server on uvloop  vs asyncio streams, default loop  (target >= 3x)
  * socketkit threaded sync server  vs socketserver.ThreadingTCPServer (target >= 1.0x)

    python3 benchmarks/bench_echo.py [--quick] [--conns 100] [--seconds 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import build_c, interleave, report

HERE = Path(__file__).parent


def run_once(kind: str, client: Path, conns: int, size: int, seconds: float) -> float:
    """Start the server KIND pinned to CPU 0, load it from CPU 1, return round trips/s."""
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(HERE / "echo_servers.py"), kind],
        stdout=subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": str(HERE.parent / "src")},
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        out = subprocess.run(
            ["taskset", "-c", "1", str(client), "127.0.0.1", str(port), str(conns), str(size),
             str(seconds)],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
        done, elapsed = out.stdout.split()
        return int(done) / float(elapsed)
    finally:
        server.terminate()
        server.wait(10)
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1.5 s")
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=["uvloop", "streams", "sync", "floor", "vsfloor", "driven", "buffered"],
        action="append",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.5, 2
    client = build_c("echo_load")

    def rate(kind: str) -> float:
        return run_once(kind, client, args.conns, args.size, args.seconds)

    setups = {
        "uvloop": ("sk-aio", "uvloop-protocol", "bare uvloop asyncio.Protocol", 0.85),
        "streams": ("sk-aio", "asyncio-streams", "asyncio streams (default loop)", 3.0),
        "sync": ("sk-sync", "socketserver", "socketserver.ThreadingTCPServer", 1.0),
        # Context, not a target: the best any task-per-connection server can do on uvloop
        # (one future wake-up per message) against the bare Protocol.
        "floor": ("uvloop-task-floor", "uvloop-protocol", "bare uvloop asyncio.Protocol", None),
        # Context: a bare Protocol resuming one coroutine per message itself (socketkit.aio's
        # design, driver.py, with nothing else), and a bare BufferedProtocol (uvloop's
        # get_buffer path).
        "driven": ("uvloop-driven-floor", "uvloop-protocol", "bare uvloop asyncio.Protocol", None),
        "buffered": ("uvloop-buffered", "uvloop-protocol", "bare uvloop asyncio.Protocol", None),
        "vsfloor": ("sk-aio", "uvloop-task-floor", "task-per-connection floor (uvloop)", None),
    }
    for key in args.only or list(setups):
        ours, anchor, anchor_name, target = setups[key]
        a, b, ratios = interleave(lambda o=ours: rate(o), lambda n=anchor: rate(n), args.rounds)
        report(
            f"echo 1 KiB x {args.conns} conns: {ours} vs {anchor}",
            ours=ours if ours.startswith("uvloop") else f"socketkit {ours}",
            anchor=anchor_name,
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=target,
            unit="req/s",
        )


if __name__ == "__main__":
    main()
