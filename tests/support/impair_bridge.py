"""An impairment bridge: forwards Ethernet frames between two interfaces with AF_PACKET,
dropping, duplicating, delaying and reordering UDP datagrams with a fixed random seed, and
counting what it did. Run inside a middle network namespace by ``tests/support/impair.py``;
standard library only, so it runs as a plain script:

    python3 impair_bridge.py --left IF --right IF --seed 7 --loss 0.1 --reorder 0.25 ...

Only UDP (IPv4 and IPv6) frames whose UDP payload is at least ``--min-payload`` bytes are
impaired; everything else (ARP, neighbour discovery, the TCP control channel of a bench
run, ...) is forwarded at once and counted as ``passed``.

Decisions per impaired frame, in this order, from one ``random.Random`` per direction seeded
with (seed, direction), so one direction's decisions depend only on its own frames:
loss (dropped, never forwarded), then duplication (a second copy sent right after the first),
then reordering (held back ``--reorder-ms`` on top of the delay, so that later frames overtake
it), then the delay (``--delay-ms`` plus up to ``--jitter-ms``, uniform).

Counters per direction describe what a receiver behind the bridge sees, by datagram *content*
(the frame's bytes from the IP header on): ``unique_in`` distinct datagrams that reached the
bridge, ``unique_out`` distinct datagrams it delivered, ``dup_out`` deliveries of a datagram
already delivered (the bridge's own copies and identical frames that came in twice, e.g. from
an nftables ``dup`` before the bridge), ``late`` first deliveries of a datagram that came in
before one already delivered (what a receiver counts as a late arrival), plus the decisions
``dropped``, ``duplicated``, ``held``. At exit (SIGTERM, SIGINT, or ``--max-seconds``), frames
still waiting are sent (``flushed_at_stop``) and the counters are printed as one JSON line.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
#: How many datagram identities are remembered per direction (bounded memory).
MAX_KEYS = 1 << 17
#: Receive buffer of each AF_PACKET socket (SO_RCVBUFFORCE; root).
RCVBUF = 16 << 20


def udp_payload_length(frame: bytes) -> int:
    """The UDP payload length of an Ethernet frame, or -1 if it is not unfragmented UDP."""
    if len(frame) < 14:
        return -1
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != 17 or (frame[20] & 0x3F) or frame[21]:  # MF flag or fragment offset
            return -1
        off = 14 + ihl
    elif ethertype == 0x86DD and len(frame) >= 54:
        if frame[20] != 17:
            return -1
        off = 54
    else:
        return -1
    if len(frame) < off + 8:
        return -1
    return int(struct.unpack_from("!H", frame, off + 4)[0]) - 8


class Direction:
    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.rng = random.Random(f"{args.seed}/{name}")
        self.args = args
        self.index = 0
        self.first_index: dict[int, int] = {}  # content key -> index of its first arrival
        self.delivered: dict[int, None] = {}  # content keys already delivered
        self.max_index_out = -1
        self.c = dict.fromkeys(
            (
                "matched",
                "unique_in",
                "unique_out",
                "dup_out",
                "late",
                "dropped",
                "duplicated",
                "held",
                "sent",
            ),
            0,
        )

    def arrive(self, frame: bytes, now: float) -> list[tuple[float, int]]:
        """Decide the fate of one impaired frame: a list of (release time, key) copies."""
        a, rng, c = self.args, self.rng, self.c
        c["matched"] += 1
        key = hash(frame[14:])
        if key not in self.first_index:
            self.first_index[key] = self.index
            self.index += 1
            c["unique_in"] += 1
            if len(self.first_index) > MAX_KEYS:
                del self.first_index[next(iter(self.first_index))]
        # Always draw the same number of values per frame: the sequence of decisions for a
        # given sequence of frames does not depend on earlier outcomes.
        r_loss, r_dup, r_reorder, r_jitter = rng.random(), rng.random(), rng.random(), rng.random()
        if r_loss < a.loss:
            c["dropped"] += 1
            return []
        when = now + (a.delay_ms + r_jitter * a.jitter_ms) / 1000.0
        if r_reorder < a.reorder:
            c["held"] += 1
            when += a.reorder_ms / 1000.0
        copies = [(when, key)]
        if r_dup < a.dup:
            c["duplicated"] += 1
            copies.append((when, key))
        return copies

    def depart(self, key: int) -> None:
        """Account one delivered copy (called in delivery order)."""
        c = self.c
        c["sent"] += 1
        if key in self.delivered:
            c["dup_out"] += 1
            return
        self.delivered[key] = None
        if len(self.delivered) > MAX_KEYS:
            del self.delivered[next(iter(self.delivered))]
        c["unique_out"] += 1
        index = self.first_index.get(key, self.max_index_out + 1)
        if index < self.max_index_out:
            c["late"] += 1
        else:
            self.max_index_out = index


def open_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def socket_drops(s: socket.socket) -> int:
    """Frames the kernel dropped on this socket since the last call (struct tpacket_stats)."""
    _packets, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return int(drops)


def run(args: argparse.Namespace) -> dict[str, Any]:
    realtime = False
    try:  # a bridge that waits for the CPU delays frames beyond what it was asked to
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        realtime = True
    except OSError:
        pass
    left, right = open_socket(args.left), open_socket(args.right)
    # Drain what was queued before both sockets existed (nothing should be, but a frame
    # caught by one socket only would break the accounting).
    socket_drops(left), socket_drops(right)
    dirs = {
        left.fileno(): Direction("left_to_right", args),
        right.fileno(): Direction("right_to_left", args),
    }
    out_sock = {left.fileno(): right, right.fileno(): left}
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller = select.poll()
    poller.register(left, select.POLLIN)
    poller.register(right, select.POLLIN)
    heap: list[tuple[float, int, int, bytes, int]] = []  # (when, order, in_fd, frame, key)
    order = 0
    passed = tx_errors = drops = 0
    deadline = time.monotonic() + args.max_seconds
    print("ready", flush=True)

    def send(fd: int, frame: bytes) -> bool:
        nonlocal tx_errors
        try:
            out_sock[fd].send(frame)
            return True
        except OSError:
            tx_errors += 1
            return False

    while not stopping:
        now = time.monotonic()
        if now >= deadline:
            break
        while heap and heap[0][0] <= now:
            _when, _o, fd, frame, key = heapq.heappop(heap)
            if send(fd, frame):
                dirs[fd].depart(key)
        wait = deadline - now
        if heap:
            wait = min(wait, max(heap[0][0] - now, 0.0))
        try:
            events = poller.poll(max(0, int(wait * 1000 + 0.999)) if wait < 1 else 1000)
        except InterruptedError:
            continue
        for fd, _ev in events:
            sock = left if fd == left.fileno() else right
            for _ in range(64):
                try:
                    frame, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                now = time.monotonic()
                if udp_payload_length(frame) < args.min_payload:
                    passed += 1
                    send(fd, frame)
                    continue
                for when, key in dirs[fd].arrive(frame, now):
                    order += 1
                    heapq.heappush(heap, (when, order, fd, frame, key))
    flushed = len(heap)
    while heap:
        _when, _o, fd, frame, key = heapq.heappop(heap)
        if send(fd, frame):
            dirs[fd].depart(key)
    drops = socket_drops(left) + socket_drops(right)
    left.close()
    right.close()
    return {
        **{d.name: d.c for d in dirs.values()},
        "passed": passed,
        "tx_errors": tx_errors,
        "socket_drops": drops,
        "flushed_at_stop": flushed,
        "realtime": realtime,
        "timed_out": not stopping,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--left", required=True)
    p.add_argument("--right", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loss", type=float, default=0.0, help="probability, 0..1")
    p.add_argument("--dup", type=float, default=0.0, help="probability, 0..1")
    p.add_argument("--reorder", type=float, default=0.0, help="probability, 0..1")
    p.add_argument("--reorder-ms", type=float, default=5.0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--min-payload", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=600.0)
    args = p.parse_args(argv)
    result = run(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
