"""socketkit's batched datagrams vs iperf3 -u -b 0, loopback, side by side (median ratios).

Each side is a receiver process and a sender process sending LEN-byte datagrams flat out for
S seconds; the figure is datagrams *received* per second over the sender's time (iperf3: its
packets minus lost over its seconds). Both sides use the same SO_SNDBUF/SO_RCVBUF: the kernel
defaults (iperf3 at its defaults) or -w BYTES on both (iperf3 at its best: the largest window
the sysctl maxima allow). Comparisons:
  * socketkit send_many/receive_many, sendmmsg/recvmmsg, no GSO (64 per call) vs iperf3  (>= 1.5x)
  * the same with GSO on send (runs of equal datagrams) and GRO on receive   vs iperf3  (>= 5x)
  * context, in the same rounds as the first: a receiver and a sender in C doing the same
    sendmmsg/recvmmsg batches (benchmarks/c/udp_mmsg_pair.c, no interpreter) vs iperf3: what
    batching alone gives on this kernel, where the sender's time is almost all system time
Each side's setup and its CPU (user+system seconds per second of test, both processes) are
printed with the figure.

    python3 benchmarks/bench_udp_batch.py [--quick] [--rounds N] [--seconds S] [--length 1400 64]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import build_c, report

HERE = Path(__file__).parent
ENV = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}
IPERF3 = shutil.which("iperf3") or "iperf3"
#: A receiver that hears nothing for this long after the sender stopped is done.
QUIET = 0.5


def _set_buffers(sock: socket.socket, window: int) -> None:
    if window:  # as iperf3 -w does: SO_SNDBUF and SO_RCVBUF, the plain (capped) options
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, window)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def peer_receive(mode: str, window: int) -> None:
    """Receiver: prints its port, then ``count seconds cpu`` when the sender has gone quiet."""
    from socketkit import _udp_batch as batch

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _set_buffers(sock, window)
    sock.bind(("127.0.0.1", 0))
    if mode == "gso":
        assert batch.enable_gro(sock)
    else:
        batch.HAVE_GSO = False
    print(sock.getsockname()[1], flush=True)
    count = 0
    first = last = 0.0
    cpu0 = 0.0
    receive_many = batch.receive_many
    while True:
        try:
            got = receive_many(sock, 64, 2048)
        except BlockingIOError:
            if not select.select([sock], [], [], QUIET if count else 30)[0]:
                break
            continue
        if not count:
            first, cpu0 = time.monotonic(), _cpu()
        count += len(got)
        last = time.monotonic()
    print(count, last - first, _cpu() - cpu0, flush=True)


def peer_send(mode: str, window: int, port: int, length: int, seconds: float) -> None:
    """Sender: LEN-byte datagrams flat out for SECONDS; prints ``sent seconds cpu``."""
    from socketkit import _udp_batch as batch

    if mode != "gso":
        batch.HAVE_GSO = False
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _set_buffers(sock, window)
    sock.connect(("127.0.0.1", port))
    items = [bytes(range(256)) * (length // 256) + bytes(length % 256)] * batch.BATCH
    send_many = batch.send_many
    sent = 0
    cpu0 = _cpu()
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            sent += send_many(sock, items)
        except BlockingIOError:
            select.select([], [sock], [], 0.01)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            time.sleep(0.0005)
    print(sent, time.monotonic() - start, _cpu() - cpu0, flush=True)


def ours(mode: str, length: int, seconds: float, window: int, cpu: list[float]) -> float:
    """k datagrams/s received through socketkit's batched path."""
    me = str(Path(__file__).resolve())
    recv = subprocess.Popen(
        [sys.executable, me, "--peer", "receive", mode, str(window)],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert recv.stdout is not None
        port = recv.stdout.readline().strip()
        out = subprocess.run(
            [sys.executable, me, "--peer", "send", mode, str(window), port, str(length),
             str(seconds)],
            capture_output=True, text=True, env=ENV, timeout=seconds + 60, check=True,
        )  # fmt: skip
        _sent, send_seconds, send_cpu = out.stdout.split()
        count, _recv_seconds, recv_cpu = recv.stdout.readline().split()
    finally:
        recv.wait(30)
    cpu.append((float(send_cpu) + float(recv_cpu)) / float(send_seconds))
    return int(count) / float(send_seconds) / 1e3


def c_pair(exe: Path, length: int, seconds: float, window: int, cpu: list[float]) -> float:
    """k datagrams/s received by the C sendmmsg/recvmmsg pair."""
    recv = subprocess.Popen([str(exe), "receive", str(window)], stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None
        port = recv.stdout.readline().strip()
        out = subprocess.run(
            [str(exe), "send", str(window), port, str(length), str(seconds)],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
        _sent, send_seconds, send_cpu = out.stdout.split()
        count, _recv_seconds, recv_cpu = recv.stdout.readline().split()
    finally:
        recv.wait(30)
    cpu.append((float(send_cpu) + float(recv_cpu)) / float(send_seconds))
    return int(count) / float(send_seconds) / 1e3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int) -> None:
    """Until a TCP socket listens on ``port`` (the iperf3 server's control connection)."""
    want = f":{port:04X}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name) as fh:
                for line in fh.readlines()[1:]:
                    cols = line.split()
                    if cols[1].endswith(want) and cols[3] == "0A":
                        return
        time.sleep(0.02)
    raise SystemExit(f"no iperf3 server on port {port}")


def iperf3(length: int, seconds: float, window: int, cpu: list[float]) -> float:
    """k datagrams/s received by an iperf3 server from an iperf3 client."""
    port = free_port()
    srv = subprocess.Popen(
        [IPERF3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        argv = [IPERF3, "-c", "127.0.0.1", "-p", str(port), "-u", "-b", "0", "-l", str(length),
                "-t", str(seconds), "-J"] + (["-w", str(window)] if window else [])  # fmt: skip
        wait_listening(port)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        doc: dict[str, Any] = json.loads(out.stdout) if out.stdout.strip() else {}
        if out.returncode != 0 or "error" in doc or "sum" not in doc.get("end", {}):
            raise SystemExit(f"{' '.join(argv)} failed: {out.stdout[-400:]}{out.stderr}")
    finally:
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    s = doc["end"]["sum"]
    use = doc["end"]["cpu_utilization_percent"]
    cpu.append((use["host_total"] + use["remote_total"]) / 100)
    return (s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--length", type=int, nargs="+", default=[1400, 64])
    parser.add_argument(
        "--window", type=int, default=4 << 20,
        help="-w for 'at its best' (default 4 MiB, the sysctl maximum here)",
    )  # fmt: skip
    parser.add_argument("--peer", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        role, mode, window, *rest = args.peer
        if role == "receive":
            peer_receive(mode, int(window))
        else:
            peer_send(mode, int(window), int(rest[0]), int(rest[1]), float(rest[2]))
        return
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    pair = build_c("udp_mmsg_pair")
    for length in args.length:
        for window, setup in ((0, "kernel default buffers"), (args.window, f"-w {args.window}")):
            for mode, target, what in (
                ("mmsg", 1.5, "sendmmsg/recvmmsg, 64 per call, no GSO"),
                ("gso", 5.0, "GSO runs on send, GRO on receive"),
            ):
                cpu_a: list[float] = []
                cpu_b: list[float] = []
                cpu_c: list[float] = []
                sides = [
                    lambda m=mode, L=length, w=window, c=cpu_a: ours(m, L, args.seconds, w, c),
                    lambda L=length, w=window, c=cpu_b: iperf3(L, args.seconds, w, c),
                ]
                if mode == "mmsg":  # the same batches from C, in the same rounds
                    sides.append(
                        lambda L=length, w=window, c=cpu_c: c_pair(pair, L, args.seconds, w, c)
                    )
                a, b, c, ratios, ceiling = _rounds(sides, args.rounds)
                cpu_note = (
                    f"CPU s/s (sender+receiver): socketkit {sum(cpu_a) / len(cpu_a):.2f}, "
                    f"iperf3 {sum(cpu_b) / len(cpu_b):.2f}"
                )
                anchor = f"iperf3 -u -b 0 -l {length}" + (
                    f" -w {window}" if window else " (defaults)"
                )
                report(
                    f"UDP -l {length}, {setup}: socketkit {mode} vs iperf3 -u -b 0",
                    ours=f"socketkit send_many/receive_many ({what}; {setup})",
                    anchor=anchor,
                    ours_samples=a,
                    anchor_samples=b,
                    ratios=ratios,
                    target=target,
                    unit="k datagrams/s",
                    note=f"received datagrams per second of sending; {cpu_note}",
                )
                print(f"    {cpu_note}", flush=True)
                if c:
                    of_pair = statistics.median(x / y for x, y in zip(a, c, strict=True))
                    c_note = (
                        f"CPU s/s (sender+receiver): C pair {sum(cpu_c) / len(cpu_c):.2f}, "
                        f"iperf3 {sum(cpu_b) / len(cpu_b):.2f}; socketkit was "
                        f"{of_pair:.2f}x the C pair"
                    )
                    report(
                        f"UDP -l {length}, {setup}: C sendmmsg/recvmmsg pair vs iperf3 -u -b 0",
                        ours=f"C sendmmsg/recvmmsg, 64 per call, no GSO, no Python ({setup})",
                        anchor=anchor,
                        ours_samples=c,
                        anchor_samples=b,
                        ratios=ceiling,
                        target=None,
                        unit="k datagrams/s",
                        note=f"context for the row above, same rounds; {c_note}",
                    )
                    print(f"    {c_note}", flush=True)


def _rounds(
    sides: list[Callable[[], float]], rounds: int
) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """Run the sides (socketkit, iperf3[, the C pair]) in each round, the order rotated every
    round. Returns the samples of each (the C pair's empty without it), socketkit/iperf3
    per round and C pair/iperf3 per round."""
    samples: list[list[float]] = [[] for _ in range(3)]
    for index in range(rounds):
        order = list(range(len(sides)))
        shift = index % len(sides)
        for i in order[shift:] + order[:shift]:
            samples[i].append(sides[i]())
    a, b, c = samples
    ratios = [x / y if y else float("inf") for x, y in zip(a, b, strict=True)]
    ceiling = [x / y if y else float("inf") for x, y in zip(c, b, strict=False)]  # c may be empty
    return a, b, c, ratios, ceiling


if __name__ == "__main__":
    main()
