"""socketkit.udp, one send/receive per datagram, vs the same loop on a bare socket (loopback).

A receiver process and a sender process; the sender sends LEN-byte datagrams flat out for S
seconds with one ``send`` per datagram, the receiver reads them with one ``receive`` per
datagram. socketkit: ``socketkit.udp(...).send(data)`` / ``.receive()`` (a Datagram with its
address); anchor: ``socket.send(data)`` / ``socket.recvfrom(max_size)``. Both sides: blocking
sockets, the same max_size (65535) and the same SO_SNDBUF/SO_RCVBUF (4 MiB). The figure is
datagrams received per second of sending (target >= 1.0x: the API costs nothing that
matters); each side's CPU is printed with it.

    python3 benchmarks/bench_udp_api.py [--quick] [--rounds N] [--seconds S] [--length 64 1400]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness import interleave, report

HERE = Path(__file__).parent
ENV = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}
BUFFER = 4 << 20
MAX_SIZE = 65535


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def peer_receive(kind: str) -> None:
    """Prints its port, then ``count cpu`` once an empty datagram (the end) arrives."""
    count = 0
    if kind == "sk":
        import socketkit

        sock = socketkit.udp("127.0.0.1:0", receive_buffer=BUFFER, send_buffer=BUFFER)
        print(sock.local.rsplit(":", 1)[1], flush=True)
        receive = sock.receive
        first = receive()
        cpu0 = _cpu()
        while receive().data:
            count += 1
        count += 1 if first.data else 0
    else:
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
        raw.bind(("127.0.0.1", 0))
        print(raw.getsockname()[1], flush=True)
        recvfrom = raw.recvfrom
        data, _ = recvfrom(MAX_SIZE)
        cpu0 = _cpu()
        while recvfrom(MAX_SIZE)[0]:
            count += 1
        count += 1 if data else 0
    print(count, _cpu() - cpu0, flush=True)


def peer_send(kind: str, port: int, length: int, seconds: float) -> None:
    """Flat out for ``seconds``; prints ``sent seconds cpu``."""
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    sent = 0
    if kind == "sk":
        import socketkit

        sock = socketkit.udp(remote=f"127.0.0.1:{port}", receive_buffer=BUFFER, send_buffer=BUFFER)
        send = sock.send
    else:
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
        raw.connect(("127.0.0.1", port))
        send = raw.send
    cpu0 = _cpu()
    start = time.monotonic()
    end = start + seconds
    while True:
        for _ in range(100):
            send(data)
        sent += 100
        if time.monotonic() >= end:
            break
    print(sent, time.monotonic() - start, _cpu() - cpu0, flush=True)


def run(kind: str, length: int, seconds: float, cpu: list[float]) -> float:
    """k datagrams/s received with ``kind`` ("sk" or "bare") on both sides."""
    me = str(Path(__file__).resolve())
    recv = subprocess.Popen(
        [sys.executable, me, "--peer", "receive", kind], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert recv.stdout is not None
        port = int(recv.stdout.readline())
        out = subprocess.run(
            [sys.executable, me, "--peer", "send", kind, str(port), str(length), str(seconds)],
            capture_output=True, text=True, env=ENV, timeout=seconds + 60, check=True,
        )  # fmt: skip
        _sent, send_seconds, send_cpu = out.stdout.split()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as end:
            while recv.poll() is None:  # the end marker, until the receiver has it
                end.sendto(b"", ("127.0.0.1", port))
                try:
                    recv.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
        count, recv_cpu = recv.stdout.readline().split()
    finally:
        if recv.poll() is None:
            recv.kill()
        recv.wait(30)
    cpu.append((float(send_cpu) + float(recv_cpu)) / float(send_seconds))
    return int(count) / float(send_seconds) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--length", type=int, nargs="+", default=[64, 1400])
    parser.add_argument("--peer", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        if args.peer[0] == "receive":
            peer_receive(args.peer[1])
        else:
            _, kind, port, length, seconds = args.peer
            peer_send(kind, int(port), int(length), float(seconds))
        return
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    for length in args.length:
        cpu_a: list[float] = []
        cpu_b: list[float] = []
        a, b, ratios = interleave(
            lambda L=length, c=cpu_a: run("sk", L, args.seconds, c),
            lambda L=length, c=cpu_b: run("bare", L, args.seconds, c),
            args.rounds,
        )
        cpu_note = (
            f"CPU s/s (sender+receiver): socketkit {sum(cpu_a) / len(cpu_a):.2f}, "
            f"bare {sum(cpu_b) / len(cpu_b):.2f}"
        )
        report(
            f"UDP {length} B, one send/receive per datagram: socketkit.udp vs bare socket",
            ours="socketkit.udp send()/receive() (blocking, max_size 65535, 4 MiB buffers)",
            anchor="socket send()/recvfrom(65535) (blocking, 4 MiB buffers)",
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=1.0,
            unit="k datagrams/s",
            note=f"received datagrams per second of sending; {cpu_note}",
        )
        print(f"    {cpu_note}", flush=True)


if __name__ == "__main__":
    main()
