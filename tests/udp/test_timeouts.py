"""A timeout is a number of seconds >= 0 or None: a bad one is refused at once, on every
receive and send of the datagram and stream APIs, sync and asyncio — never taken as "wait
forever" (``-1`` used to be the "not given" marker, so ``timeout=-1`` hung)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

import socketkit
import socketkit.aio as skio

BAD = [(-1, ValueError), (-0.5, ValueError), (math.nan, ValueError), ("1", TypeError)]
IDS = ["minus-one", "negative", "nan", "str"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("value", "error"), BAD, ids=IDS)
def test_sync_datagram_calls_refuse_a_bad_timeout(value: Any, error: type) -> None:
    with socketkit.udp("127.0.0.1:0") as rx, socketkit.udp(remote=rx.local) as tx:
        for call in (
            lambda: rx.receive(timeout=value),
            lambda: rx.receive_into(bytearray(10), timeout=value),
            lambda: rx.receive_many(timeout=value),
            lambda: tx.send(b"x", timeout=value),
            lambda: tx.send_many([b"x"], timeout=value),
        ):
            with pytest.raises(error, match="timeout must be a number of seconds"):
                call()
        with pytest.raises(error, match="default_timeout must be"):
            rx.default_timeout = value
        with pytest.raises(error, match="default_timeout must be"):
            socketkit.udp("127.0.0.1:0", default_timeout=value)
        # nothing was sent by the refused sends
        with pytest.raises(socketkit.ReadTimeout):
            rx.receive(timeout=0.05)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("value", "error"), BAD, ids=IDS)
def test_aio_datagram_calls_refuse_a_bad_timeout(value: Any, error: type) -> None:
    async def main() -> None:
        async with await skio.udp("127.0.0.1:0") as rx, await skio.udp(remote=rx.local) as tx:
            for call in (
                lambda: rx.receive(timeout=value),
                lambda: rx.receive_many(timeout=value),
                lambda: tx.send(b"x", timeout=value),
            ):
                with pytest.raises(error, match="timeout must be a number of seconds"):
                    await asyncio.wait_for(call(), 5)
            with pytest.raises(error, match="default_timeout must be"):
                await skio.udp("127.0.0.1:0", default_timeout=value)

    asyncio.run(main())


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("value", "error"), BAD, ids=IDS)
def test_stream_calls_refuse_a_bad_timeout(value: Any, error: type) -> None:
    def handler(stream: socketkit.Stream) -> None:
        stream.receive_some(timeout=5)

    with (
        socketkit.serve(handler, "127.0.0.1:0") as server,
        socketkit.connect(str(server.address), timeout=5) as conn,
    ):
        for call in (
            lambda: conn.receive_some(timeout=value),
            lambda: conn.receive_exactly(3, timeout=value),
            lambda: conn.send_all(b"x", timeout=value),
        ):
            with pytest.raises(error, match="timeout must be a number of seconds"):
                call()


def test_infinity_and_none_wait_forever_and_zero_does_not_wait() -> None:
    with socketkit.udp("127.0.0.1:0") as rx, socketkit.udp(remote=rx.local) as tx:
        tx.send(b"a", timeout=math.inf)
        assert rx.receive(timeout=math.inf).data == b"a"
        tx.send(b"b", timeout=None)
        assert rx.receive(timeout=None).data == b"b"
        with pytest.raises(socketkit.ReadTimeout):
            rx.receive(timeout=0)
