"""Bulk transfer over loopback through socketkit streams vs a plain socket loop.

Two processes (sender, receiver), the same 256 KiB page-aligned buffer on both sides; the
anchor is ``socket.sendall`` → ``socket.recv_into``. Comparisons (target >= 0.9x each):
  * socketkit.Stream send_all/receive_into (sync)     vs plain socket
  * socketkit.aio Stream send_all/receive_into (uvloop) vs plain socket

    python3 benchmarks/bench_stream_bulk.py [--quick] [--gib 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from harness import interleave, report

HERE = Path(__file__).parent
ENV = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}


def transfer(kind: str, total: int) -> float:
    """Gbit/s for one transfer of ``total`` bytes with KIND on both ends."""
    peers = str(HERE / "bulk_peers.py")
    recv = subprocess.Popen(
        [sys.executable, peers, f"recv-{kind}"], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert recv.stdout is not None
        port = recv.stdout.readline().strip()
        subprocess.run(
            [sys.executable, peers, f"send-{kind}", port, str(total)], check=True, env=ENV,
            timeout=300,
        )  # fmt: skip
        got, seconds = recv.stdout.readline().split()
        if int(got) != total:
            raise SystemExit(f"{kind}: received {got} of {total} bytes")
        return int(got) * 8 / float(seconds) / 1e9
    finally:
        recv.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.gib, args.rounds = 0.5, 2
    total = int(args.gib * (1 << 30)) // (256 * 1024) * (256 * 1024)
    for kind, name in (("sk", "socketkit.Stream (sync)"), ("aio", "socketkit.aio Stream (uvloop)")):
        a, b, ratios = interleave(
            lambda k=kind: transfer(k, total), lambda: transfer("plain", total), args.rounds
        )
        report(
            f"bulk TCP {args.gib:g} GiB, 256 KiB buffers: {name} vs plain socket",
            ours=name,
            anchor="socket sendall/recv_into",
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=0.9,
            unit="Gbit/s",
        )


if __name__ == "__main__":
    main()
