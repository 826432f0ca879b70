"""Two TFTP machines wired together with no socket: a simulated clock and a lossy network.

Every datagram gets the next action of an impairment script ("deliver", "drop", "dup",
"delay"); once the script is used up, everything is delivered. Delivery takes 1 ms, a delayed
datagram 5 ms (so it is overtaken: reordering). When nothing is in flight, the clock jumps to
the earliest machine deadline and that machine's ``on_timeout`` runs.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from socketkit.proto import tftp

LATENCY = 0.001
DELAY = 0.005


@dataclass
class Outcome:
    received: bytes
    client: tftp.ClientRead | tftp.ClientWrite
    server: tftp.ServerRead | tftp.ServerWrite | None
    data_sent: int = 0  # DATA datagrams put on the wire by the sender (first sends + resends)
    elapsed: float = 0.0
    server_error: BaseException | None = None
    wire: list[tuple[str, bytes]] = field(default_factory=list)


def run(
    direction: str,
    payload: bytes,
    *,
    asked: tftp.Options = tftp.Options(),  # noqa: B008 - frozen
    server_max_blksize: int = tftp.MAX_BLKSIZE,
    server_ignores_options: bool = False,
    mode: str = tftp.Mode.OCTET,
    impair: Iterable[str] = (),
    retries: int = 30,
    max_events: int = 2_000_000,
    keep_wire: bool = False,
    fast: bool = True,
) -> Outcome:
    """Transfer ``payload`` from server to client ("get") or client to server ("put")."""
    script = iter(impair)
    sink = io.BytesIO()
    source = io.BytesIO(payload)
    client: tftp.ClientRead | tftp.ClientWrite
    if direction == "get":
        client = tftp.ClientRead(
            "file", sink.write, options=asked, mode=mode, timeout=1.0, retries=retries
        )
    else:
        asked_tsize = tftp.Options(asked.blksize, asked.windowsize, asked.timeout, len(payload))
        client = tftp.ClientWrite(
            "file", source.read, options=asked_tsize, mode=mode, timeout=1.0, retries=retries
        )
    server: tftp.ServerRead | tftp.ServerWrite | None = None
    out = Outcome(b"", client, None)
    queue: list[tuple[float, int, str, bytes]] = []
    seq = 0
    now = 0.0

    def post(to: str, datagrams: list[bytes]) -> None:
        nonlocal seq
        for datagram in datagrams:
            if datagram[:2] == b"\0\3" and (to == "client") == (direction == "get"):
                out.data_sent += 1
            if keep_wire:
                out.wire.append((to, datagram))
            action = next(script, "deliver")
            copies = {"drop": 0, "dup": 2}.get(action, 1)
            when = now + (DELAY if action == "delay" else LATENCY)
            for _ in range(copies):
                seq += 1
                heapq.heappush(queue, (when, seq, to, datagram))

    post("server", client.start(now))
    for _ in range(max_events):
        if client.done and server is not None and (server.done or server.failed) and not queue:
            break
        if client.failed:
            break
        if queue:
            now, _, to, datagram = heapq.heappop(queue)
            if to == "client":
                post("server", _deliver(client, datagram, now, fast))
            elif datagram[1] in (tftp.Opcode.RRQ, tftp.Opcode.WRQ):
                if server is None:  # a retransmitted request for the same peer: ignored
                    server = _serve(
                        datagram,
                        payload=payload,
                        sink=sink,
                        max_blksize=server_max_blksize,
                        ignore_options=server_ignores_options,
                        retries=retries,
                    )
                    out.server = server
                    post("client", server.start(now))
            elif server is not None and not (server.failed):
                try:
                    post("client", _deliver(server, datagram, now, fast))
                except tftp.TftpError as exc:
                    out.server_error = exc
            continue
        deadlines = [
            (m.deadline, m)
            for m in (client, server)
            if m is not None and m.deadline is not None and not m.done and not m.failed
        ]
        if not deadlines:
            break
        now, machine = min(deadlines, key=lambda pair: pair[0])
        sent = machine.on_timeout(now)
        post("server" if machine is client else "client", sent)
    else:
        raise AssertionError("the simulation did not end")
    out.received = sink.getvalue()
    out.elapsed = now
    return out


def _deliver(machine: Any, datagram: bytes, now: float, fast: bool) -> list[bytes]:
    """As the I/O loop does: the lock-step shortcut first (when ``fast``), else receive()."""
    if fast:
        reply = machine.fast(datagram, now)
        if reply is not None:
            return [reply] if reply else []
    return list(machine.receive(datagram, now))


def _serve(
    datagram: bytes,
    *,
    payload: bytes,
    sink: io.BytesIO,
    max_blksize: int,
    ignore_options: bool,
    retries: int,
) -> tftp.ServerRead | tftp.ServerWrite:
    request = tftp.decode(datagram)
    assert isinstance(request, tftp.Request)
    if ignore_options:
        options, oack = tftp.Options(), ()
    else:
        options, oack = tftp.negotiate(request, file_size=len(payload), max_blksize=max_blksize)
    if request.opcode == tftp.Opcode.RRQ:
        return tftp.ServerRead(
            io.BytesIO(payload).read, options=options, oack=oack, timeout=1.0, retries=retries
        )
    return tftp.ServerWrite(sink.write, options=options, oack=oack, timeout=1.0, retries=retries)
