"""The UDP movers on loopback: every send/receive variant counts the same datagrams."""

from __future__ import annotations

import socket
import time

import pytest

from socketkit.bench.streams import Limits, StreamStats
from socketkit.bench.udp_movers import UdpReceiver, UdpSender


def _pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.connect(rx.getsockname())
    rx.connect(tx.getsockname())
    return tx, rx


@pytest.mark.parametrize(
    "variant",
    [
        (False, False, False, False, 1400, False),  # one datagram per system call
        (True, True, False, False, 1400, False),  # sendmmsg / recvmmsg
        (True, False, False, False, 1401, True),  # odd length, 64-bit counters
        (False, True, True, True, 1400, False),  # GSO sender, GRO receiver
    ],
)
def test_every_variant_counts_every_datagram(
    variant: tuple[bool, bool, bool, bool, int, bool],
) -> None:
    send_batch, recv_batch, gso, gro, length, c64 = variant
    tx, rx = _pair()
    with tx, rx:
        count = 3000
        rstats = StreamStats(id=1, sender=False, protocol="udp")
        sstats = StreamStats(id=1, sender=True, protocol="udp")
        limits = Limits(total_blocks=count, streams=[sstats])
        receiver = UdpReceiver(
            rx, rstats, length=length, counters_64bit=c64, gro=gro, batch=recv_batch
        )
        sender = UdpSender(
            tx, sstats, length=length, limits=limits, rate=200_000_000, counters_64bit=c64,
            gso=gso, batch=send_batch,
        )  # fmt: skip
        receiver.start()
        sender.start()
        assert sender.join(30)
        deadline = time.monotonic() + 5
        while rstats.packets < sstats.packets and time.monotonic() < deadline:
            time.sleep(0.01)
        receiver.request_stop()
        receiver.wake()
        assert receiver.join(5)
    assert not sstats.error and not rstats.error
    assert count <= sstats.packets < count + 64
    udp = rstats.udp
    assert udp is not None
    assert rstats.packets == udp.received == udp.packet_count == sstats.packets
    assert udp.errors == 0 and udp.out_of_order == 0
    assert rstats.bytes == sstats.bytes == sstats.packets * length
    assert sstats.gso is gso
