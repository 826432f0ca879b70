"""The datagram socket against the real Debian programs (nc.openbsd, ncat, socat) over IPv4,
IPv6 and Unix datagrams, in both directions, with the sync socket and the asyncio one (on
asyncio's loop and on uvloop).

Each write to a peer's stdin becomes one datagram, so the tests go in lockstep (write, wait
until it arrived, write the next) and assert that every datagram arrives whole and alone; the
socat relay test sends a burst of datagrams of different sizes and gets exactly as many back,
each with its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import socketkit
import socketkit.aio as skio
from netcat.nctools import LOOP, Collector, free_port, started, wait_bound
from support.privilege import require_tool

PEERS = ["nc.openbsd", "ncat", "socat"]
KINDS = ["udp4", "udp6", "unix"]
IMPLS = ["sync", "asyncio", "uvloop"]


def grams(count: int = 12, seed: int = 11) -> list[bytes]:
    """Datagrams of different sizes (one of each boundary-relevant size, then random)."""
    rng = random.Random(seed)
    sizes = [1, 17, 512, 1400, 1472, 8000] + [rng.randint(2, 1400) for _ in range(count - 6)]
    return [bytes(rng.getrandbits(8) for _ in range(size)) for size in sizes]


class Ours:
    """Our datagram socket, sync or asyncio (run on its own loop), behind one interface."""

    def __init__(self, impl: str, local: str | None, remote: str | None) -> None:
        self.runner: asyncio.Runner | None = None
        if impl == "sync":
            self.sock: Any = socketkit.udp(local, remote=remote)
        else:
            factory = uvloop.new_event_loop if impl == "uvloop" else asyncio.new_event_loop
            self.runner = asyncio.Runner(loop_factory=factory)
            self.sock = self.runner.run(skio.udp(local, remote=remote))

    def _do(self, result: Any) -> Any:
        return result if self.runner is None else self.runner.run(result)

    def send(self, data: bytes, to: Any = None, timeout: float = 10) -> int:
        return int(self._do(self.sock.send(data, to, timeout=timeout)))

    def receive(self, timeout: float) -> socketkit.Datagram:
        got: socketkit.Datagram = self._do(self.sock.receive(timeout=timeout))
        return got

    def close(self) -> None:
        self.sock.close()
        if self.runner is not None:
            self.runner.close()


@contextlib.contextmanager
def ours(impl: str, local: str | None = None, remote: str | None = None) -> Iterator[Ours]:
    side = Ours(impl, local, remote)
    try:
        yield side
    finally:
        side.close()


def address_of(kind: str, tmp_path: Path, name: str) -> tuple[str, list[str], str | int]:
    """(our address syntax, the peer's host/port or path arguments, what wait_bound takes)."""
    if kind == "unix":
        path = str(tmp_path / f"{name}.sock")
        return f"unix:{path}", [path], path
    family = int(kind[-1])
    port = free_port("udp", family)
    host = LOOP[family]
    shown = f"[{host}]" if family == 6 else host
    return f"{shown}:{port}", [host, str(port)], port


def peer_listening(peer: str, kind: str, where: list[str]) -> list[str]:
    """A peer bound at ``where`` that prints what it receives and sends its stdin back to
    the first sender."""
    if kind == "unix":
        if peer == "socat":
            return ["socat", "-b", "65536", f"UNIX-RECVFROM:{where[0]},fork", "-"]
        return [peer, "-u", "-U", "-l", where[0]]
    family = kind[-1]
    if peer == "socat":
        host = f"[{where[0]}]" if family == "6" else where[0]
        return ["socat", "-b", "65536", f"UDP{family}-LISTEN:{where[1]},bind={host}", "-"]
    return [peer, "-u", "-l", f"-{family}", *where]


def peer_dialing(peer: str, kind: str, where: list[str], tmp_path: Path) -> list[str]:
    """A peer that sends its stdin to ``where`` and prints the replies."""
    if kind == "unix":
        if peer == "socat":
            client = tmp_path / "socat-client.sock"
            return ["socat", "-b", "65536", "-", f"UNIX-SENDTO:{where[0]},bind={client}"]
        return [peer, "-u", "-U", where[0]]  # both bind a temporary client socket
    family = kind[-1]
    if peer == "socat":
        host = f"[{where[0]}]" if family == "6" else where[0]
        return ["socat", "-b", "65536", "-", f"UDP{family}:{host}:{where[1]}"]
    return [peer, "-u", f"-{family}", *where]


def feed_and_receive(proc: subprocess.Popen[bytes], side: Ours, datagrams: list[bytes]) -> Any:
    """Write each datagram to the peer's stdin and receive it on our side, whole and alone.
    Returns the peer's address as our socket saw it."""
    assert proc.stdin is not None
    address = None
    for gram in datagrams:
        proc.stdin.write(gram)
        proc.stdin.flush()
        got = side.receive(timeout=10)
        assert (len(got.data), got.truncated) == (len(gram), False)
        assert got.data == gram
        address = got.address
    with pytest.raises(socketkit.ReadTimeout):
        side.receive(timeout=0.1)  # nothing split off or left over
    return address


def send_and_collect(
    side: Ours, collector: Collector, datagrams: list[bytes], to: Any = None
) -> None:
    """Send each datagram and wait until the peer printed all of it."""
    total = 0
    for gram in datagrams:
        assert side.send(gram, to) == len(gram)
        total += len(gram)
        got = collector.wait_for(total, timeout=10)
        assert len(got) >= total, f"the peer printed {len(got)} of {total} bytes"
    assert collector.wait_for(total + 1, timeout=0.1) == b"".join(datagrams)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("peer", PEERS)
def test_peer_listens_we_connect(peer: str, kind: str, impl: str, tmp_path: Path) -> None:
    """The peer listens; our socket (remote=) sends to it, then the peer answers through
    its stdin and every answer comes back to us as one datagram."""
    require_tool(peer)
    ours_addr, where, bound = address_of(kind, tmp_path, "peer")
    io = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    with started(peer_listening(peer, kind, where), **io) as proc:  # type: ignore[arg-type]
        wait_bound(bound, "udp")
        collector = Collector(proc.stdout)
        datagrams = grams()
        with ours(impl, remote=ours_addr) as side:
            assert side.sock.remote == ours_addr
            send_and_collect(side, collector, datagrams)
            assert feed_and_receive(proc, side, list(reversed(datagrams))) is not None


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("peer", PEERS)
def test_we_listen_peer_dials(peer: str, kind: str, impl: str, tmp_path: Path) -> None:
    """Our socket is bound; the peer sends its stdin to it; we answer each peer at the
    address its datagrams came from."""
    require_tool(peer)
    ours_addr, where, _ = address_of(kind, tmp_path, "ours")
    with ours(impl, local=ours_addr) as side:
        assert side.sock.local == ours_addr
        io = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
        argv = peer_dialing(peer, kind, where, tmp_path)
        with started(argv, **io) as proc:  # type: ignore[arg-type]
            collector = Collector(proc.stdout)
            datagrams = grams(seed=12)
            address = feed_and_receive(proc, side, datagrams)
            send_and_collect(side, collector, list(reversed(datagrams)), to=address)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_socat_relay_keeps_every_boundary(kind: str, impl: str, tmp_path: Path) -> None:
    """A burst of datagrams of different sizes through socat (one datagram socket to
    another, ``-u``): as many arrive as were sent, each with its size and bytes, in order."""
    require_tool("socat")
    if kind == "unix":
        inlet, outlet = tmp_path / "inlet.sock", tmp_path / "outlet.sock"
        relay = [f"UNIX-RECV:{inlet}", f"UNIX-SENDTO:{outlet}"]
        send_to, receive_at, bound = f"unix:{inlet}", f"unix:{outlet}", str(inlet)
    else:
        family = int(kind[-1])
        host = LOOP[family]
        shown = f"[{host}]" if family == 6 else host
        port_in, port_out = free_port("udp", family), free_port("udp", family)
        relay = [f"UDP{family}-RECV:{port_in},bind={shown}",
                 f"UDP{family}-SENDTO:{shown}:{port_out}"]  # fmt: skip
        send_to, receive_at, bound = f"{shown}:{port_in}", f"{shown}:{port_out}", port_in
    datagrams = grams(40, seed=13)
    # A Unix datagram sender waits while the receiver has net.unix.max_dgram_qlen (10)
    # datagrams queued: through a relay, a burst larger than that would wait for a reader
    # that is still sending. UDP drops instead of waiting; its buffers hold the whole burst.
    burst = 8 if kind == "unix" else len(datagrams)
    with ours(impl, local=receive_at) as sink:
        argv = ["socat", "-u", "-b", "65536", *relay]
        with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            wait_bound(bound, "udp")
            with ours(impl, remote=send_to) as source:
                got = []
                for start in range(0, len(datagrams), burst):
                    for gram in datagrams[start : start + burst]:
                        source.send(gram, timeout=10)
                    got += [sink.receive(timeout=10) for _ in datagrams[start : start + burst]]
                assert [len(d.data) for d in got] == [len(g) for g in datagrams]
                assert [d.data for d in got] == datagrams
                with pytest.raises(socketkit.ReadTimeout):
                    sink.receive(timeout=0.1)


def test_interop_tools_are_the_debian_ones() -> None:
    """The peers are the real programs (a missing one fails the run, never skips it)."""
    for tool in PEERS:
        require_tool(tool)
    out = subprocess.run(["socat", "-V"], capture_output=True, text=True, check=True).stdout
    assert "socat version" in out
    assert os.path.realpath("/usr/bin/nc.openbsd").endswith("nc.openbsd")
