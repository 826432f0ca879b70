"""A dual-stack socket (``udp()`` / ``udp(":port")``, one ``[::]`` socket) sends to IPv4 peers
over IPv4: a datagram too large for IPv4 is refused naming IPv4's limit (65507), not IPv6's
(65527), on every send path — and is never silently dropped (found by the new-user trial)."""

from __future__ import annotations

import asyncio
import socket

import pytest

import socketkit
import socketkit.aio as skio
from socketkit import DatagramTooLarge

V4 = "the largest UDP payload over IPv4"
V6 = "the largest UDP payload over IPv6"


def _port(sock: socketkit.DatagramSocket) -> str:
    return sock.local.rsplit(":", 1)[1]


@pytest.mark.parametrize("size", [65508, 65527])
def test_sync_send_to_an_ipv4_peer_names_ipv4s_limit(size: int) -> None:
    with socketkit.udp(":0") as s:
        assert s.family == socket.AF_INET6
        with pytest.raises(DatagramTooLarge) as info:
            s.send(b"x" * size, f"127.0.0.1:{_port(s)}")
        assert (info.value.size, info.value.limit) == (size, 65507)
        assert V4 in str(info.value)
        with pytest.raises(DatagramTooLarge) as info:
            s.send_many([b"x" * size], to=f"127.0.0.1:{_port(s)}")
        assert info.value.limit == 65507
        # the same socket to an IPv6 peer: IPv6's limit
        s.send(b"x" * 65527, f"[::1]:{_port(s)}")
        with pytest.raises(DatagramTooLarge) as info:
            s.send(b"x" * 65528, f"[::1]:{_port(s)}")
        assert info.value.limit == 65527 and V6 in str(info.value)


def test_aio_send_to_an_ipv4_peer_names_ipv4s_limit() -> None:
    async def main() -> None:
        async with await skio.udp(":0") as s:
            with pytest.raises(DatagramTooLarge) as info:
                await s.send(b"x" * 65510, f"127.0.0.1:{_port(s)}")  # type: ignore[arg-type]
            assert info.value.limit == 65507 and V4 in str(info.value)

    asyncio.run(main())


def test_sync_serve_udp_reply_to_an_ipv4_peer_too_large() -> None:
    errors: list[str] = []

    def handler(conv: socketkit.Conversation) -> None:
        conv.receive(timeout=5)
        try:
            conv.send(b"x" * 65510)
        except DatagramTooLarge as exc:
            errors.append(str(exc))
            conv.send(b"limit %d" % exc.limit)

    with (
        socketkit.serve_udp(handler, ":0") as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c,
    ):
        c.settimeout(5)
        c.sendto(b"hi", ("127.0.0.1", server.address.port))
        assert c.recv(100) == b"limit 65507"
    assert V4 in errors[0]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aio_serve_udp_reply_to_an_ipv4_peer_too_large_is_an_error_not_a_drop(loop: str) -> None:
    import uvloop

    async def main() -> None:
        async def handler(conv: skio.Conversation) -> None:
            await conv.receive(timeout=5)
            try:
                await conv.send(b"x" * 65510)
            except DatagramTooLarge as exc:
                await conv.send(b"limit %d " % exc.limit + str(exc).encode())

        async with await skio.serve_udp(handler, ":0") as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.setblocking(False)
                c.sendto(b"hi", ("127.0.0.1", server.address.port))
                reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(c, 70000), 5)
        assert reply.startswith(b"limit 65507 ") and V4.encode() in reply

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(main(), 20))
