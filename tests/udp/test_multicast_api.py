"""Multicast and broadcast through the public API: DatagramSocket.join / leave / set_multicast
(sync and asyncio) and ``udp(broadcast=True)``. The namespaces are tests/udp/multicast_lab.py's.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator

import pytest

import socketkit
import socketkit.aio as skio
from socketkit import AddressError, ClosedResourceError, DatagramSocket, PermissionDenied

from .multicast_lab import (
    Net,
    any_address,
    bound,
    inside,
    multicast_net,
    queued,
    receive_hops,
    want_hops,
)

pytestmark = pytest.mark.timeout(60)

V4, V6 = socket.AF_INET, socket.AF_INET6
FAMILIES = [pytest.param(V4, id="ipv4"), pytest.param(V6, id="ipv6")]
GROUP = {V4: "239.1.2.3", V6: "ff1e::1:2:3"}
PORT = 5000


def _at(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.fixture
def net() -> Iterator[Net]:
    with multicast_net() as n:
        yield n


@pytest.mark.parametrize("family", FAMILIES)
def test_two_receivers_then_leave(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    addrs = net.family_addrs(family)
    # Two receivers of one port, bound to different local addresses (the group, and the
    # wildcard): each is alone in its SO_REUSEPORT group. Two sockets bound to the same
    # address with reuse_port hit a Linux IPv4 early-demux quirk (docs/multicast.md,
    # "Several receivers on one port"): when only one of them may take a datagram, the
    # kernel can hand it to the other.
    with inside(net.r):
        r1 = socketkit.udp(_at(group, PORT), reuse_port=True)
        r2 = socketkit.udp(_at(any_address(family), PORT), reuse_port=True)
    with inside(net.s):
        tx = socketkit.udp(_at(addrs["s"], 0))
    with r1, r2, tx:
        r1.join(group, interface=net.r_if)
        r2.join(group, interface=net.r_if)
        tx.set_multicast(interface=net.s_to_r)
        sent = [b"m%d" % i for i in range(10)]
        for data in sent:
            assert tx.send(data, _at(group, PORT)) == len(data)
        for rx in (r1, r2):
            got = [rx.receive(timeout=10) for _ in sent]
            assert [d.data for d in got] == sent
            assert {d.peer for d in got} == {tx.local}
        r1.leave(group, interface=net.r_if)
        tx.send(b"after", _at(group, PORT))
        assert r2.receive(timeout=10).data == b"after"
        assert queued(r1.socket) == []


def test_dual_stack_socket_joins_both_families(net: Net) -> None:
    # udp(":port") is one dual-stack [::] socket: it can join an IPv4 and an IPv6 group.
    with inside(net.r):
        rx = socketkit.udp(f":{PORT}")
    with inside(net.s):
        tx = socketkit.udp()  # dual-stack too: its options are set for both families
    with rx, tx:
        assert rx.family == V6
        rx.join(GROUP[V4], interface=net.r_if)
        rx.join(GROUP[V6], interface=net.r_if)
        tx.set_multicast(interface=net.s_to_r)
        tx.send(b"four", _at(GROUP[V4], PORT))
        tx.send(b"six", _at(GROUP[V6], PORT))
        first, second = rx.receive(timeout=10), rx.receive(timeout=10)
        assert (first.data, first.address[0]) == (b"four", "::ffff:198.18.1.1")
        assert second.data == b"six"
        assert second.address[0] in ("fd00:5e:1::1", "fd00:5e:1::3")


def test_dual_stack_sender_ttl_for_both_families(net: Net) -> None:
    with inside(net.r):
        rx4 = bound(V4, GROUP[V4], PORT)
        rx6 = bound(V6, GROUP[V6], PORT)
    with inside(net.s):
        tx = socketkit.udp()
    with rx4, rx6, tx:
        for rx in (rx4, rx6):
            want_hops(rx)
            socketkit._multicast.join(rx, GROUP[rx.family], interface=net.r_if)
        tx.set_multicast(interface=net.s_to_r, ttl=9)
        tx.send(b"v4", _at(GROUP[V4], PORT))
        tx.send(b"v6", _at(GROUP[V6], PORT))
        assert receive_hops(rx4) == (b"v4", 9)
        assert receive_hops(rx6) == (b"v6", 9)


def test_ipv6_only_socket_refuses_an_ipv4_group() -> None:
    with socketkit.udp("[::1]:0") as sock, pytest.raises(AddressError) as info:
        sock.join("239.1.2.3")
    assert str(info.value) == (
        "join 239.1.2.3: an IPv4 group needs an IPv4 or dual-stack socket (this one is IPv6 only)"
    )


def test_interface_address_of_the_other_family(net: Net) -> None:
    with inside(net.r):
        sock = socketkit.udp(f":{PORT}")
    with sock, pytest.raises(AddressError) as info:
        sock.join("ff1e::1", interface="198.18.1.2")
    assert str(info.value) == (
        "join ff1e::1 on 198.18.1.2: interface 198.18.1.2 is an IPv4 address but the group is IPv6"
    )


def test_methods_on_a_closed_socket() -> None:
    sock = socketkit.udp("127.0.0.1:0")
    sock.close()
    for call in (
        lambda: sock.join("239.1.2.3"),
        lambda: sock.leave("239.1.2.3"),
        lambda: sock.set_multicast(ttl=2),
    ):
        with pytest.raises(ClosedResourceError):
            call()


@pytest.mark.parametrize("family", FAMILIES)
def test_asyncio_join_receive_leave(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    addrs = net.family_addrs(family)

    async def main() -> None:
        with inside(net.r):  # different local addresses: see test_two_receivers_then_leave
            r1 = await skio.udp(_at(group, PORT), reuse_port=True)
            r2 = await skio.udp(_at(any_address(family), PORT), reuse_port=True)
        with inside(net.s):
            tx = await skio.udp(_at(addrs["s"], 0))
        async with r1, r2, tx:
            await r1.join(group, interface=net.r_if)
            await r2.join(group, interface=net.r_if)
            await tx.set_multicast(interface=net.s_to_r, ttl=2, loopback=False)
            await tx.send(b"one", _at(group, PORT))
            assert (await r1.receive(timeout=10)).data == b"one"
            assert (await r2.receive(timeout=10)).data == b"one"
            await r1.leave(group, interface=net.r_if)
            await tx.send(b"two", _at(group, PORT))
            assert (await r2.receive(timeout=10)).data == b"two"
            assert queued(r1.socket) == []

    asyncio.run(main())


# --- broadcast: SO_BROADCAST through udp(broadcast=True) -----------------------------------


def test_broadcast_on_loopback() -> None:
    with socketkit.udp("0.0.0.0:0") as rx, socketkit.udp("127.0.0.1:0", broadcast=True) as tx:
        port = rx.socket.getsockname()[1]
        tx.send(b"to all", f"127.255.255.255:{port}")
        got = rx.receive(timeout=10)
        assert (got.data, got.peer) == (b"to all", tx.local)


def test_broadcast_needs_the_flag() -> None:
    with socketkit.udp("127.0.0.1:0") as tx:
        with pytest.raises(PermissionDenied) as info:
            tx.send(b"x", "127.255.255.255:9")
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.EACCES


def test_broadcast_between_namespaces(net: Net) -> None:
    with inside(net.r):
        rx = socketkit.udp(f"0.0.0.0:{PORT}")
    with inside(net.q):
        other = socketkit.udp(f"0.0.0.0:{PORT}")
    with inside(net.s):
        tx = socketkit.udp("198.18.1.1:0", broadcast=True)
    with rx, other, tx:
        assert isinstance(tx, DatagramSocket)
        tx.send(b"subnet broadcast", f"198.18.1.255:{PORT}")
        got = rx.receive(timeout=10)
        assert (got.data, got.peer) == (b"subnet broadcast", tx.local)
        assert queued(other.socket) == []  # another link: not reached


@pytest.mark.parametrize("family", FAMILIES)
def test_reuse_address_receivers_on_one_group_port_keep_every_datagram(
    net: Net, family: socket.AddressFamily
) -> None:
    """Several receivers of one group bound to the *same* address and port, the usual
    multicast set-up: with ``reuse_address=True`` (SO_REUSEADDR) each member gets every
    datagram, and after one leaves the other still gets every one (with reuse_port the IPv4
    early-demux quirk hands some to the one that left: docs/multicast.md)."""
    group = GROUP[family]
    addrs = net.family_addrs(family)
    with inside(net.r):
        r1 = socketkit.udp(_at(group, PORT), reuse_address=True)
        r2 = socketkit.udp(_at(group, PORT), reuse_address=True)
    with inside(net.s):
        tx = socketkit.udp(_at(addrs["s"], 0))
    with r1, r2, tx:
        for rx in (r1, r2):
            assert rx.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
            rx.join(group, interface=net.r_if)
        tx.set_multicast(interface=net.s_to_r)
        sent = [b"m%d" % i for i in range(20)]
        for data in sent:
            tx.send(data, _at(group, PORT))
        for rx in (r1, r2):
            assert [rx.receive(timeout=10).data for _ in sent] == sent
        r1.leave(group, interface=net.r_if)
        after = [b"a%d" % i for i in range(30)]
        for data in after:
            tx.send(data, _at(group, PORT))
        assert [r2.receive(timeout=10).data for _ in after] == after
        assert queued(r1.socket) == []
