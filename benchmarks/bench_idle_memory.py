"""Memory per idle connection: 10,000 connections open on an echo server, none sending.

Measures the server process's resident memory (VmRSS: user-space pages; kernel socket
buffers are not in it) before and after the connections are accepted, divided by their count.
socketkit.aio (uvloop) is compared with a bare uvloop asyncio.Protocol server and with asyncio
streams; the issue's target is an absolute one (<= 2 KiB per connection), printed as a ratio
to the bare Protocol server for context.

    python3 benchmarks/bench_idle_memory.py [--quick] [--conns 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness import interleave, report

HERE = Path(__file__).parent
ENV = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def per_connection(kind: str, conns: int) -> float:
    """KiB of server RSS per idle connection."""
    server = subprocess.Popen(
        [sys.executable, str(HERE / "echo_servers.py"), kind], stdout=subprocess.PIPE, env=ENV
    )
    socks: list[socket.socket] = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        # Warm up: one connection and one echo, so lazily-built machinery is counted as
        # baseline, not as per-connection cost.
        with socket.create_connection(("127.0.0.1", port)) as warm:
            warm.sendall(b"x")
            warm.recv(1)
        time.sleep(0.5)
        before = rss_kib(server.pid)
        deadline = time.monotonic() + 120
        for index in range(conns):
            socks.append(socket.create_connection(("127.0.0.1", port)))
            if index % 500 == 499:
                time.sleep(0.05)  # pace connects: a full accept queue costs 1 s retries
            if time.monotonic() > deadline:
                raise SystemExit("connecting took too long")
        time.sleep(2.0)  # let the server accept and set up every connection
        after = rss_kib(server.pid)
        return (after - before) / conns
    finally:
        for sock in socks:
            sock.close()
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.conns, args.rounds = 2000, 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The third anchor is context, not a target: the least any task-per-connection server can
    # hold on uvloop (a bare Protocol, one task and one waiting future per connection).
    for anchor, name in (("uvloop-protocol", "bare uvloop asyncio.Protocol"),
                         ("asyncio-streams", "asyncio streams"),
                         ("uvloop-task-floor", "task-per-connection floor (uvloop)")):  # fmt: skip
        # Memory: lower is better, so the ratio is anchor / ours (>= 1 means we use less).
        a, b, _ = interleave(
            lambda: per_connection("sk-aio", args.conns),
            lambda a=anchor: per_connection(a, args.conns),
            args.rounds,
        )
        ratios = [y / x if x > 0 else float("inf") for x, y in zip(a, b, strict=True)]
        worst = max(a)
        report(
            f"idle memory, {args.conns} conns: socketkit.aio vs {anchor} (anchor KiB / ours KiB)",
            ours="socketkit.aio (uvloop)",
            anchor=name,
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=None,
            unit="KiB/conn",
            note=f"absolute target <= 2 KiB/conn: worst socketkit sample {worst:.2f} KiB "
            f"({'PASS' if worst <= 2.0 else 'ABOVE TARGET'})",
        )
        print(f"  socketkit.aio: {', '.join(f'{x:.2f}' for x in a)} KiB/conn "
              f"(target <= 2 KiB): {'PASS' if worst <= 2.0 else 'ABOVE TARGET'}")  # fmt: skip


if __name__ == "__main__":
    main()
