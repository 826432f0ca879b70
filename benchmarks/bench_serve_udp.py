"""serve_udp echo: 64-byte datagrams, 100 peers, a few datagrams in flight per peer.

The load comes from a small C epoll client (benchmarks/c/udp_echo_load.c, compiled here with
gcc): 100 UDP sockets, each a peer (its own source port), each keeping --window datagrams in
flight (4: enough that the server, not the round-trip latency of a loaded host, is the
limit), sending the next one as each echo arrives. Server pinned to CPU 0, client to CPU 1.
Both servers get the same SO_RCVBUF/SO_SNDBUF (--buffer), and so do the client's sockets.
Compared, interleaved in one run, the median per-round ratio reported:

  * socketkit.aio.serve_udp on uvloop (a conversation per peer, ``async for`` + ``send``)
    vs a bare uvloop ``DatagramProtocol`` echo (``transport.sendto`` in
    ``datagram_received``; no per-peer state at all)            (target >= 0.8x)
  * socketkit.serve_udp (threads) vs the same bare uvloop echo  (context, no target)

CPU seconds of each side (server from /proc, client from its getrusage) are printed per run,
and a second ratio compares echoes per second of server CPU time (context, no target: on a
shared host the server is not always what limits echoes/s).

    python3 benchmarks/bench_serve_udp.py [--quick] [--peers 100] [--size 64] [--seconds 4]
        [--rounds 5] [--window 4] [--buffer 1048576] [--only aio|sync]
    python3 benchmarks/bench_serve_udp.py --serve KIND BUFFER   (one server, prints its port)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))


# -- servers (run in their own process) ---------------------------------------------------


def _announce(port: int) -> None:
    print(port, flush=True)


async def _sk_aio(buffer: int) -> None:
    import socketkit.aio as skio

    async def echo(conv: skio.Conversation) -> None:
        async for data in conv:
            await conv.send(data)

    server = await skio.serve_udp(echo, "127.0.0.1:0", receive_buffer=buffer, send_buffer=buffer)
    _announce(server.address.port or 0)
    await server.serve_forever()


class _EchoProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.transport.sendto(data, addr)  # type: ignore[arg-type]


async def _uvloop_protocol(buffer: int) -> None:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(_EchoProtocol, sock=sock)
    _announce(sock.getsockname()[1])
    await asyncio.Event().wait()


def _sk_sync(buffer: int) -> None:
    import socketkit

    def echo(conv: socketkit.Conversation) -> None:
        for data in conv:
            conv.send(data)

    server = socketkit.serve_udp(echo, "127.0.0.1:0", receive_buffer=buffer, send_buffer=buffer)
    _announce(server.address.port or 0)
    server.serve_forever()


def serve(kind: str, buffer: int) -> None:
    import uvloop

    if kind == "sk-sync":
        _sk_sync(buffer)
        return
    main = {"sk-aio": _sk_aio, "uvloop-protocol": _uvloop_protocol}[kind]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(buffer))


# -- the driver ---------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Echoes per second of server CPU time, by server kind, in run order (see main()).
EFFICIENCY: dict[str, list[float]] = {}


def run_once(kind: str, client: Path, args: argparse.Namespace) -> float:
    """Start server KIND on CPU 0, load it from CPU 1; returns echoes per second."""
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "--serve", kind, str(args.buffer)],
        stdout=subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": str(HERE.parent / "src")},
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        cpu0 = _cpu_seconds(server.pid)
        out = subprocess.run(
            ["taskset", "-c", "1", str(client), "127.0.0.1", str(port), str(args.peers),
             str(args.size), str(args.seconds), str(args.buffer), str(args.buffer),
             str(args.window)],
            capture_output=True, text=True, check=True, timeout=args.seconds + 60,
        )  # fmt: skip
        server_cpu = _cpu_seconds(server.pid) - cpu0
        done, elapsed, lost, client_cpu = out.stdout.split()
        rate = int(done) / float(elapsed)
        per_echo = server_cpu / int(done) * 1e6 if int(done) else float("nan")
        EFFICIENCY.setdefault(kind, []).append(int(done) / server_cpu if server_cpu else 0.0)
        print(
            f"  {kind:16} {rate:10,.0f} echoes/s  lost {lost:>4}  CPU s: server "
            f"{server_cpu:.2f} ({per_echo:.1f} us/echo), client {float(client_cpu):.2f} "
            f"(over {float(elapsed):.2f} s)",
            flush=True,
        )
        return rate
    finally:
        server.terminate()
        server.wait(10)
        time.sleep(0.2)


def main() -> None:
    from harness import build_c, interleave, report

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1.5 s")
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=int, default=4, help="datagrams in flight per peer")
    parser.add_argument("--buffer", type=int, default=1 << 20, help="SO_RCVBUF/SO_SNDBUF")
    parser.add_argument("--only", choices=["aio", "sync"], action="append")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "BUFFER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.quick:
        args.seconds, args.rounds = 1.5, 2
    client = build_c("udp_echo_load")
    print(
        f"setup: {args.peers} peers x {args.window} datagrams of {args.size} B in flight, "
        "loopback, "
        f"SO_RCVBUF=SO_SNDBUF={args.buffer} on both servers and the client's sockets "
        f"(the kernel doubles it); server on CPU 0, C client on CPU 1; {args.rounds} rounds "
        f"of {args.seconds:g} s, interleaved",
        flush=True,
    )
    setups = {
        "aio": ("sk-aio", "socketkit.aio.serve_udp (uvloop)", 0.8),
        "sync": ("sk-sync", "socketkit.serve_udp (threads)", None),
    }
    for key in args.only or ["aio"]:
        ours, ours_name, target = setups[key]
        a, b, ratios = interleave(
            lambda o=ours: run_once(o, client, args),
            lambda: run_once("uvloop-protocol", client, args),
            args.rounds,
        )
        report(
            f"UDP echo {args.size} B x {args.peers} peers: {ours} vs uvloop DatagramProtocol",
            ours=ours_name,
            anchor="bare uvloop DatagramProtocol echo",
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=target,
            unit="echoes/s",
            note=f"window {args.window}; SO_RCVBUF=SO_SNDBUF={args.buffer} both sides; "
            "server CPU 0, client CPU 1",
        )
        # The same runs per CPU second of the server: on a shared host the server is not
        # always the bottleneck (echoes/s then also measure scheduling), its CPU time is.
        mine, bare = EFFICIENCY.pop(ours), EFFICIENCY.pop("uvloop-protocol")
        report(
            f"UDP echo {args.size} B x {args.peers} peers, per server CPU second: {ours} vs "
            "uvloop DatagramProtocol",
            ours=ours_name,
            anchor="bare uvloop DatagramProtocol echo",
            ours_samples=mine,
            anchor_samples=bare,
            ratios=[x / y for x, y in zip(mine, bare, strict=True)],
            target=None,
            unit="echoes/CPU-s",
            note="context for the ratio above: server CPU time from /proc/PID/stat",
        )


if __name__ == "__main__":
    main()
