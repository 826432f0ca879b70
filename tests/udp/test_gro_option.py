"""udp(gro=True): UDP GRO on where the kernel has it; every receive method splits what the
kernel coalesced back into the datagrams that were sent, in order, none lost or merged.

On loopback a GSO send (``send_many`` of equal-sized datagrams) reaches a GRO socket as one
coalesced read, so these tests exercise the split (checked: the batch layer reports the
segment size of such reads)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

import socketkit
import socketkit.aio as skio
from socketkit import _udp_batch

SOL_UDP = 17
UDP_GRO = 104
LOOPS = ["asyncio", "uvloop"]
#: 3 GSO runs of 8 datagrams of 1000 bytes, each datagram numbered.
RUNS, PER_RUN, SIZE = 3, 8, 1000


def _payloads() -> list[bytes]:
    return [b"%04d" % i + bytes([i % 251]) * (SIZE - 4) for i in range(RUNS * PER_RUN)]


def _run(loop: str, coro: Coroutine[Any, Any, None]) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(coro, 20))


def _send_runs(tx: socketkit.DatagramSocket, payloads: list[bytes]) -> None:
    for r in range(RUNS):
        assert tx.send_many(payloads[r * PER_RUN : (r + 1) * PER_RUN]) == PER_RUN


def test_gro_is_on_and_said_so() -> None:
    assert _udp_batch.HAVE_GRO  # CI's kernel has it: without it these tests prove nothing
    with socketkit.udp("127.0.0.1:0", gro=True) as rx, socketkit.udp("127.0.0.1:0") as plain:
        assert rx.gro is True
        assert rx.socket.getsockopt(SOL_UDP, UDP_GRO) == 1
        assert plain.gro is False
        assert plain.socket.getsockopt(SOL_UDP, UDP_GRO) == 0


def test_unix_sockets_ignore_gro(tmp_path: Any) -> None:
    with socketkit.udp(f"unix:{tmp_path}/g.sock", gro=True) as rx:
        assert rx.gro is False


@pytest.mark.parametrize("method", ["receive", "receive_into", "receive_many", "iterate"])
def test_sync_receives_split_coalesced_reads(method: str) -> None:
    payloads = _payloads()
    with socketkit.udp("127.0.0.1:0", gro=True) as rx, socketkit.udp(remote=rx.local) as tx:
        _send_runs(tx, payloads)
        got: list[bytes] = []
        buf = bytearray(65536)
        it = iter(rx)
        rx.default_timeout = 5
        while len(got) < len(payloads):
            if method == "receive":
                got.append(rx.receive(timeout=5).data)
            elif method == "receive_into":
                count, address, truncated = rx.receive_into(buf, timeout=5)
                assert not truncated and address == tx.socket.getsockname()
                got.append(bytes(buf[:count]))
            elif method == "receive_many":
                got += [d.data for d in rx.receive_many(timeout=5)]
            else:
                got.append(next(it).data)
        assert got == payloads
        with pytest.raises(socketkit.ReadTimeout):
            rx.receive(timeout=0.05)


def test_sync_mixed_receive_and_receive_many_keep_order() -> None:
    payloads = _payloads()
    with socketkit.udp("127.0.0.1:0", gro=True) as rx, socketkit.udp(remote=rx.local) as tx:
        _send_runs(tx, payloads)
        got = [rx.receive(timeout=5).data]  # one read of a whole run: the rest wait in order
        while len(got) < len(payloads):
            got += [d.data for d in rx.receive_many(timeout=5)]
        assert got == payloads


def test_receive_into_a_short_buffer_says_truncated() -> None:
    with socketkit.udp("127.0.0.1:0", gro=True) as rx, socketkit.udp(remote=rx.local) as tx:
        tx.send_many([b"a" * 100, b"b" * 100])
        buf = bytearray(10)
        assert rx.receive_into(buf, timeout=5)[::2] == (10, True)
        assert bytes(buf) == b"a" * 10
        assert rx.receive_into(buf, timeout=5)[::2] == (10, True)
        assert bytes(buf) == b"b" * 10


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_receives_split_and_a_cancelled_receive_takes_nothing(loop: str) -> None:
    payloads = _payloads()

    async def main() -> None:
        async with await skio.udp("127.0.0.1:0", gro=True) as rx:
            assert rx.gro is True
            async with await skio.udp(remote=rx.local) as tx:
                waiter = asyncio.ensure_future(rx.receive())
                await asyncio.sleep(0.05)
                waiter.cancel()  # cancelled while waiting: takes nothing
                with pytest.raises(asyncio.CancelledError):
                    await waiter
                for r in range(RUNS):
                    await tx.send_many(payloads[r * PER_RUN : (r + 1) * PER_RUN])
                got = [(await rx.receive(timeout=5)).data]
                buf = bytearray(65536)
                count, _address, truncated = await rx.receive_into(buf, timeout=5)
                got.append(bytes(buf[:count]))
                assert not truncated
                while len(got) < len(payloads):
                    got += [d.data for d in await rx.receive_many(timeout=5)]
                assert got == payloads

    _run(loop, main())


def test_gro_reads_really_were_coalesced() -> None:
    """Without coalescing the tests above would pass vacuously: read a GSO run with the batch
    layer's own call on a GRO socket and see it come back from fewer kernel messages."""
    with socketkit.udp("127.0.0.1:0", gro=True) as rx, socketkit.udp(remote=rx.local) as tx:
        tx.send_many(_payloads()[:PER_RUN])
        sock = rx.socket
        sock.setblocking(True)
        data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(4))
        assert _udp_batch.gro_segment(ancdata) == SIZE
        assert len(data) == PER_RUN * SIZE
