"""Honest sizes and errors of datagram sockets: EMSGSIZE says the limit (protocol maximum, path
MTU, Unix send buffer), MSG_TRUNC is reported, kernel receive-queue drops are counted
(SO_RXQ_OVFL), ICMP port unreachable on a connected socket is ConnectionRefused, Unix
destinations that are missing or dead say so."""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

import socketkit
import socketkit.aio as skio
from support.netlab import Lab

from .test_aio import LOOPS, run

SRC = str(Path(socketkit.__file__).resolve().parent.parent)


# -- EMSGSIZE -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "limit", "family"),
    [("127.0.0.1:0", 65507, "IPv4"), ("[::1]:0", 65527, "IPv6")],
)
def test_too_large_for_the_protocol(local: str, limit: int, family: str) -> None:
    with socketkit.udp(local) as rx, socketkit.udp(remote=rx.local) as tx:
        assert tx.send(b"x" * limit) == limit  # the largest that fits goes, whole
        assert len(rx.receive(timeout=10).data) == limit
        with pytest.raises(socketkit.DatagramTooLarge) as info:
            tx.send(b"x" * (limit + 1))
        assert (info.value.size, info.value.limit) == (limit + 1, limit)
        assert str(info.value) == (
            f"send: datagram of {limit + 1} bytes is too large: the limit is {limit} bytes "
            f"(the largest UDP payload over {family})"
        )
        assert info.value.__cause__ is not None  # chained to the OSError (EMSGSIZE)
        # unconnected, with a destination: the same
        with pytest.raises(socketkit.DatagramTooLarge):
            rx.send(b"x" * (limit + 1), tx.local)
        with pytest.raises(socketkit.ReadTimeout):
            rx.receive(timeout=0.1)  # nothing of it was sent


def test_too_large_for_a_unix_send_buffer(tmp_path: Path) -> None:
    path = tmp_path / "big.sock"
    with socketkit.udp(f"unix:{path}", receive_buffer=1 << 20) as rx:
        with socketkit.udp(remote=f"unix:{path}", send_buffer=50_000) as tx:
            sndbuf = tx.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            assert tx.send(b"u" * (sndbuf - 32), timeout=10) == sndbuf - 32
            with pytest.raises(socketkit.DatagramTooLarge) as info:
                tx.send(b"u" * (sndbuf - 31))
            assert (info.value.size, info.value.limit) == (sndbuf - 31, sndbuf - 32)
            assert "SO_SNDBUF" in str(info.value)
        # and a Unix datagram longer than the default max_size is reported, not cut silently
        got = rx.receive(timeout=10)
        assert len(got.data) == 65535 and got.truncated


_PMTU_SCRIPT = textwrap.dedent(
    """
    import json, sys, socketkit
    out = {}
    with socketkit.udp(remote=sys.argv[1], dont_fragment=True) as sock:
        sock.send(b"x" * 1400)  # fits our link (1500), not the router's next hop (1300)
        try:
            sock.receive(timeout=5)  # the router's ICMP "fragmentation needed" comes back
        except socketkit.DatagramTooLarge as exc:
            out["receive"] = [exc.size, exc.limit, str(exc)]
        try:
            sock.send(b"x" * 1400)
        except socketkit.DatagramTooLarge as exc:
            out["send"] = [exc.size, exc.limit, str(exc)]
        out["fits"] = sock.send(b"x" * 1272)
    print(json.dumps(out))
    """
)


@pytest.mark.root
def test_too_large_for_the_path_mtu() -> None:
    """A connected socket with dont_fragment learns the path MTU from the router's ICMP and
    reports it: the pending error on the next call, then the limit on every send."""
    with Lab() as lab:
        a, r, b = lab.host("a"), lab.host("r", forwarding=True), lab.host("b")
        lab.link(a, r, "198.18.7.1/24", "198.18.7.2/24")
        r_side, b_side = lab.link(r, b, "198.18.8.1/24", "198.18.8.2/24")
        r.run(["ip", "link", "set", r_side, "mtu", "1300"])
        b.run(["ip", "link", "set", b_side, "mtu", "1300"])
        lab.route(a, "198.18.8.0/24", "198.18.7.2")
        lab.route(b, "198.18.7.0/24", "198.18.8.1")
        env = {**os.environ, "PYTHONPATH": SRC}
        result = a.run([sys.executable, "-c", _PMTU_SCRIPT, "198.18.8.2:9"], env=env)
        out = json.loads(result.stdout)
        assert out["receive"] == [
            0,
            1272,
            "receive: an earlier datagram was too large for the path: the limit is 1272 bytes "
            "(the path MTU (1300) minus the IP and UDP headers)",
        ]
        assert out["send"] == [
            1400,
            1272,
            "send: datagram of 1400 bytes is too large: the limit is 1272 bytes "
            "(the path MTU (1300) minus the IP and UDP headers)",
        ]
        assert out["fits"] == 1272


# -- MSG_TRUNC ----------------------------------------------------------------------------------


def test_truncation_is_reported_never_silent() -> None:
    with socketkit.udp("127.0.0.1:0", max_size=100) as rx, socketkit.udp(remote=rx.local) as tx:
        for size in (99, 100, 101, 5000):
            tx.send((b"%05d" % size) * (size // 5) + b"!" * (size % 5))
        got = [rx.receive(timeout=10) for _ in range(4)]
        assert [(len(d.data), d.truncated) for d in got] == [
            (99, False),
            (100, False),
            (100, True),
            (100, True),
        ]
        assert got[3].data == b"05000" * 20  # the start of the datagram


@pytest.mark.parametrize("loop", LOOPS)
def test_truncation_reported_aio(loop: str) -> None:
    async def main() -> None:
        rx = await skio.udp("127.0.0.1:0", max_size=8)
        async with rx, await skio.udp(remote=rx.local) as tx:
            await tx.send(b"12345678")
            await tx.send(b"123456789")
            first, second = await rx.receive(timeout=10), await rx.receive(timeout=10)
            assert (first.data, first.truncated) == (b"12345678", False)
            assert (second.data, second.truncated) == (b"12345678", True)

    run(loop, main())


# -- SO_RXQ_OVFL --------------------------------------------------------------------------------


def _flood(tx: socket.socket, target: object, count: int) -> None:
    for n in range(count):
        tx.sendto(n.to_bytes(4, "big") + b"." * 996, target)


def test_kernel_drops_are_counted() -> None:
    """A receive queue too small for a burst drops datagrams; every drop is accounted for:
    dropped_before on the datagrams that follow, and drops in total. (A drop becomes visible
    with the next datagram queued after it: markers are sent until one arrives.)"""
    sent = 400
    with socketkit.udp("127.0.0.1:0", receive_buffer=1) as rx:  # the kernel's minimum
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            _flood(tx, rx.socket.getsockname(), sent)
            got = []
            while True:
                try:
                    got.append(rx.receive(timeout=0.2))
                except socketkit.ReadTimeout:
                    break
            assert 0 < len(got) < sent  # some were dropped, some queued
            markers = 0
            while not got[-1].data.startswith(b"marker"):
                tx.sendto(b"marker", rx.socket.getsockname())
                markers += 1
                assert markers < 100
                try:
                    while True:
                        got.append(rx.receive(timeout=0.5))
                except socketkit.ReadTimeout:
                    pass
        dropped = sum(d.dropped_before or 0 for d in got)
        assert dropped == sent + markers - len(got) == rx.drops
        # the queued datagrams arrived in order; the gaps are where the drops were
        flood = [d for d in got if not d.data.startswith(b"marker")]
        numbers = [int.from_bytes(d.data[:4], "big") for d in flood]
        assert numbers == sorted(numbers)
        gaps = [this - prev - 1 for prev, this in itertools.pairwise(numbers)]
        assert [flood[0].dropped_before] + [d.dropped_before for d in flood[1:]] == [
            numbers[0],
            *gaps,
        ]


@pytest.mark.parametrize("loop", LOOPS)
def test_kernel_drops_are_counted_aio(loop: str) -> None:
    async def main() -> None:
        rx = await skio.udp("127.0.0.1:0", receive_buffer=1)
        async with rx:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                _flood(tx, rx.socket.getsockname(), 300)
                got: list[socketkit.Datagram] = []
                markers = 0
                drained = False
                while not got or got[-1].data != b"marker":
                    if drained:  # the first pass only drains the queue
                        tx.sendto(b"marker", rx.socket.getsockname())
                        markers += 1
                        assert markers < 100
                    try:
                        while True:
                            got.append(await rx.receive(timeout=0.3))
                    except socketkit.ReadTimeout:
                        drained = True
            assert sum(d.dropped_before or 0 for d in got) == 300 + markers - len(got)
            assert rx.drops == 300 + markers - len(got) > 0

    run(loop, main())


# -- ICMP errors on a connected socket ------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_port_unreachable_is_connection_refused_on_the_next_receive() -> None:
    port = _closed_port()
    with socketkit.udp(remote=f"127.0.0.1:{port}") as sock:
        sock.send(b"anyone?")
        with pytest.raises(socketkit.ConnectionRefused) as info:
            sock.receive(timeout=10)
        assert str(info.value) == (
            f"receive: 127.0.0.1:{port} refused an earlier datagram: nothing is listening "
            "there (ICMP port unreachable)"
        )
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        # reported once; the socket stays usable
        with pytest.raises(socketkit.ReadTimeout):
            sock.receive(timeout=0.1)
        # and on the next send when nobody receives first
        sock.send(b"again")
        deadline = time.monotonic() + 10
        with pytest.raises(socketkit.ConnectionRefused, match=r"^send: "):
            while time.monotonic() < deadline:
                sock.send(b"and again")
                time.sleep(0.01)


@pytest.mark.parametrize("loop", LOOPS)
def test_port_unreachable_aio(loop: str) -> None:
    port = _closed_port()

    async def main() -> None:
        async with await skio.udp(remote=f"[::1]:{port}") as sock:
            await sock.send(b"anyone?")
            with pytest.raises(socketkit.ConnectionRefused, match=r"\[::1\]:\d+ refused"):
                await sock.receive(timeout=10)

    run(loop, main())


def test_unconnected_socket_hears_no_icmp() -> None:
    """Without remote=, the kernel reports no ICMP error (udp(7)): the send succeeds and the
    receive just times out. Documented in docs/udp.md."""
    port = _closed_port()
    with socketkit.udp("127.0.0.1:0") as sock:
        sock.send(b"anyone?", f"127.0.0.1:{port}")
        with pytest.raises(socketkit.ReadTimeout):
            sock.receive(timeout=0.2)


# -- Unix destinations --------------------------------------------------------------------------


def test_unix_destination_missing_or_dead(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sock"
    with socketkit.udp(f"unix:{tmp_path}/me.sock") as sock:
        with pytest.raises(socketkit.AddressError) as info:
            sock.send(b"x", f"unix:{missing}")
        assert str(info.value) == f"send: no socket at unix:{missing}"
        stale = tmp_path / "stale.sock"
        leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        leftover.bind(str(stale))
        leftover.close()
        with pytest.raises(socketkit.ConnectionRefused) as refused:
            sock.send(b"x", f"unix:{stale}")
        assert str(refused.value) == f"send: nothing is bound at unix:{stale} (a stale socket file)"


def test_unix_connected_peer_closed(tmp_path: Path) -> None:
    path = tmp_path / "server.sock"
    server = socketkit.udp(f"unix:{path}")
    with socketkit.udp(remote=f"unix:{path}") as client:
        client.send(b"one")
        assert server.receive(timeout=10).data == b"one"
        server.close()
        with pytest.raises(socketkit.ConnectionRefused) as info:
            client.send(b"two")
        assert str(info.value) == f"send: unix:{path} is closed (nothing receives there)"
