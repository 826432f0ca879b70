"""Multicast joins, leaves and sending options (socketkit._multicast) on plain sockets.

Every test runs in its own namespaces (tests/udp/multicast_lab.py): a sender ``s`` joined by
veth pairs to receivers ``r`` and ``q``. Negative checks ("this receiver gets nothing") come
after a barrier: another receiver has already got a later datagram from the same sender.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator

import pytest

from socketkit import AddressError, ClosedResourceError, SocketkitError
from socketkit._multicast import join, leave, set_options

from .multicast_lab import (
    Net,
    bound,
    inside,
    multicast_net,
    queued,
    receive,
    receive_hops,
    receive_n,
    want_hops,
)

pytestmark = pytest.mark.timeout(60)

V4, V6 = socket.AF_INET, socket.AF_INET6
FAMILIES = [pytest.param(V4, id="ipv4"), pytest.param(V6, id="ipv6")]
GROUP = {V4: "239.1.2.3", V6: "ff1e::1:2:3"}
#: Source-specific groups from the SSM ranges (RFC 4607 §1: 232.0.0.0/8, ff3x::/32).
SSM_GROUP = {V4: "232.1.2.3", V6: "ff3e::8000:1"}
PORT = 5000


@pytest.fixture
def net() -> Iterator[Net]:
    with multicast_net() as n:
        yield n


def _sender(net: Net, family: socket.AddressFamily, source: str = "s") -> socket.socket:
    addrs = net.family_addrs(family)
    with inside(net.s):
        sock = bound(family, addrs[source], 0, reuse=False)
    set_options(sock, interface=net.s_to_r)
    return sock


def _receivers(
    net: Net, family: socket.AddressFamily, group: str, count: int = 2
) -> list[socket.socket]:
    with inside(net.r):
        socks = [bound(family, group, PORT) for _ in range(count)]
    return socks


@pytest.mark.parametrize("family", FAMILIES)
def test_two_receivers_get_every_datagram(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    r1, r2 = _receivers(net, family, group)
    with r1, r2, _sender(net, family) as tx:
        for rx in (r1, r2):
            join(rx, group, interface=net.r_if)
        sent = [b"datagram %d" % i for i in range(20)]
        for data in sent:
            tx.sendto(data, (group, PORT))
        assert receive_n(r1, 20) == sent
        assert receive_n(r2, 20) == sent
        assert queued(r1, 0) == [] and queued(r2, 0) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_leave_stops_delivery_to_that_receiver_only(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    r1, r2 = _receivers(net, family, group)
    with r1, r2, _sender(net, family) as tx:
        for rx in (r1, r2):
            join(rx, group, interface=net.r_if)
        tx.sendto(b"before", (group, PORT))
        assert receive(r1)[0] == b"before"
        assert receive(r2)[0] == b"before"
        leave(r1, group, interface=net.r_if)
        after = [b"after %d" % i for i in range(5)]
        for data in after:
            tx.sendto(data, (group, PORT))
        assert receive_n(r2, 5) == after
        # r2 is still a member, so the group still reaches r's interface: r1 must not get
        # it all the same (Linux's IP_MULTICAST_ALL default would deliver it).
        assert queued(r1) == []
        # and a joined socket can join again after leaving
        join(r1, group, interface=net.r_if)
        tx.sendto(b"again", (group, PORT))
        assert receive(r1)[0] == b"again"
        assert receive(r2)[0] == b"again"


@pytest.mark.parametrize("family", FAMILIES)
def test_bound_to_the_group_gets_only_that_group(net: Net, family: socket.AddressFamily) -> None:
    group, other_group = GROUP[family], SSM_GROUP[family]
    addrs = net.family_addrs(family)
    with inside(net.r):
        on_group = bound(family, group, PORT)
        on_any = bound(family, any_addr(family), PORT)
    with on_group, on_any, _sender(net, family) as tx:
        join(on_group, group, interface=net.r_if)
        join(on_any, other_group, interface=net.r_if)
        tx.sendto(b"to the other group", (other_group, PORT))
        tx.sendto(b"to the group", (group, PORT))
        tx.sendto(b"unicast", (addrs["r"], PORT))
        assert receive_n(on_any, 2) == [b"to the other group", b"unicast"]
        assert receive(on_group)[0] == b"to the group"
        assert queued(on_group) == [] and queued(on_any, 0) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_closing_leaves_the_group(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    (rx,) = _receivers(net, family, group, 1)
    word = "inet" if family == V4 else "inet6"

    def joined() -> bool:
        shown = net.r.run(["ip", "maddr", "show", "dev", net.r_if]).stdout.split()
        return any(a == word and b == group for a, b in itertools.pairwise(shown))

    with rx:
        join(rx, group, interface=net.r_if)
        assert joined()
    assert not joined()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["name", "address"])
def test_source_specific_join_filters_other_sources(
    net: Net, family: socket.AddressFamily, how: str
) -> None:
    group = SSM_GROUP[family]
    addrs = net.family_addrs(family)
    ssm, asm = _receivers(net, family, group)
    wanted, other = _sender(net, family, "s"), _sender(net, family, "s2")
    with ssm, asm, wanted, other:
        interface = net.r_if if how == "name" else addrs["r"]
        with inside(net.r):  # an IPv6 address is looked up in the thread's namespace
            join(ssm, group, interface=interface, source=addrs["s"])
        join(asm, group, interface=net.r_if)
        other.sendto(b"from the other source", (group, PORT))
        wanted.sendto(b"from the joined source", (group, PORT))
        assert receive(asm) == (b"from the other source", addrs["s2"])
        assert receive(asm) == (b"from the joined source", addrs["s"])
        assert receive(ssm) == (b"from the joined source", addrs["s"])
        assert queued(ssm) == []
        # leaving the source-specific membership ends it; the any-source one stays
        with inside(net.r):
            leave(ssm, group, interface=interface, source=addrs["s"])
        wanted.sendto(b"after leave", (group, PORT))
        assert receive(asm)[0] == b"after leave"
        assert queued(ssm) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_two_sources_in_one_group(net: Net, family: socket.AddressFamily) -> None:
    group = SSM_GROUP[family]
    addrs = net.family_addrs(family)
    (rx,) = _receivers(net, family, group, 1)
    one, two = _sender(net, family, "s"), _sender(net, family, "s2")
    with rx, one, two:
        join(rx, group, interface=net.r_if, source=addrs["s"])
        join(rx, group, interface=net.r_if, source=addrs["s2"])
        one.sendto(b"one", (group, PORT))
        two.sendto(b"two", (group, PORT))
        assert sorted([receive(rx), receive(rx)]) == [(b"one", addrs["s"]), (b"two", addrs["s2"])]
        leave(rx, group, interface=net.r_if, source=addrs["s2"])
        two.sendto(b"two again", (group, PORT))
        one.sendto(b"one again", (group, PORT))
        assert receive(rx) == (b"one again", addrs["s"])
        assert queued(rx) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_source_join_narrows_an_any_source_membership(
    net: Net, family: socket.AddressFamily
) -> None:
    # Linux lets an empty-set any-source membership switch mode (ip_mc_source, mld's
    # ip6_mc_source): the socket then gets only that source. RFC 3678 §4.1.1 semantics.
    group = SSM_GROUP[family]
    addrs = net.family_addrs(family)
    narrowed, barrier = _receivers(net, family, group)
    one, two = _sender(net, family, "s"), _sender(net, family, "s2")
    with narrowed, barrier, one, two:
        join(narrowed, group, interface=net.r_if)
        join(barrier, group, interface=net.r_if)
        two.sendto(b"two", (group, PORT))
        assert receive(narrowed) == (b"two", addrs["s2"])
        join(narrowed, group, interface=net.r_if, source=addrs["s"])
        two.sendto(b"two again", (group, PORT))
        one.sendto(b"one", (group, PORT))
        assert receive(barrier)[0] == b"two"
        assert receive(barrier)[0] == b"two again"
        assert receive(barrier)[0] == b"one"
        assert receive(narrowed) == (b"one", addrs["s"])
        assert queued(narrowed) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_ttl_and_hop_limit(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    (rx,) = _receivers(net, family, group, 1)
    r_addr = net.family_addrs(family)["r"]
    with inside(net.r):
        unicast_rx = bound(family, r_addr, PORT, reuse=False)
    with rx, unicast_rx, _sender(net, family) as tx:
        want_hops(rx)
        want_hops(unicast_rx)
        join(rx, group, interface=net.r_if)
        tx.sendto(b"default", (group, PORT))
        assert receive_hops(rx) == (b"default", 1)  # RFC 1112 §6.1, RFC 3493 §5.2: 1
        set_options(tx, ttl=7)
        tx.sendto(b"seven", (group, PORT))
        assert receive_hops(rx) == (b"seven", 7)
        set_options(tx, ttl=255)
        tx.sendto(b"max", (group, PORT))
        assert receive_hops(rx) == (b"max", 255)
        # unicast keeps the default TTL / hop limit (64 in a fresh namespace)
        tx.sendto(b"unicast", (r_addr, PORT))
        assert receive_hops(unicast_rx) == (b"unicast", 64)


@pytest.mark.parametrize("family", FAMILIES)
def test_loopback_off_and_on(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    addrs = net.family_addrs(family)
    (local,) = _receivers(net, family, group, 1)
    with inside(net.s):
        remote = bound(family, group, PORT)
    with inside(net.r):
        tx = bound(family, addrs["r"], 0, reuse=False)
    with local, remote, tx:
        join(local, group, interface=net.r_if)
        join(remote, group, interface=net.s_to_r)
        set_options(tx, interface=net.r_if)
        tx.sendto(b"by default", (group, PORT))
        assert receive(remote)[0] == b"by default"
        assert receive(local)[0] == b"by default"
        set_options(tx, loopback=False)
        tx.sendto(b"not looped", (group, PORT))
        assert receive(remote)[0] == b"not looped"
        assert queued(local) == []
        set_options(tx, loopback=True)
        tx.sendto(b"looped", (group, PORT))
        assert receive(remote)[0] == b"looped"
        assert receive(local)[0] == b"looped"
        # TTL 0: this host only (the looped copy), nothing on the wire
        set_options(tx, ttl=0)
        tx.sendto(b"host only", (group, PORT))
        assert receive(local)[0] == b"host only"
        set_options(tx, ttl=1)
        tx.sendto(b"wire again", (group, PORT))
        assert receive(remote)[0] == b"wire again"
        assert receive(local)[0] == b"wire again"
        assert queued(remote, 0) == []  # "host only" never reached s


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["name", "index", "index-text", "address"])
def test_outgoing_interface(net: Net, family: socket.AddressFamily, how: str) -> None:
    group = GROUP[family]
    addrs = net.family_addrs(family)
    with inside(net.r):
        on_r = bound(family, group, PORT)
    with inside(net.q):
        on_q = bound(family, group, PORT)
    with inside(net.s):
        tx = bound(family, any_addr(family), 0, reuse=False)
        index = {name: socket.if_nametoindex(name) for name in (net.s_to_r, net.s_to_q)}
    choice = {
        "name": (net.s_to_q, net.s_to_r),
        "index": (index[net.s_to_q], index[net.s_to_r]),
        "index-text": (str(index[net.s_to_q]), str(index[net.s_to_r])),
        "address": (addrs["sq"], addrs["s"]),
    }[how]
    with on_r, on_q, tx:
        join(on_r, group, interface=net.r_if)
        join(on_q, group, interface=net.q_if)
        with inside(net.s):
            set_options(tx, interface=choice[0])
        tx.sendto(b"to q", (group, PORT))
        assert receive(on_q) == (b"to q", addrs["sq"])
        with inside(net.s):
            set_options(tx, interface=choice[1])
        tx.sendto(b"to r", (group, PORT))
        data, sender = receive(on_r)
        assert data == b"to r" and sender in (addrs["s"], addrs["s2"])
        assert queued(on_q) == [] and queued(on_r, 0) == []


def any_addr(family: socket.AddressFamily) -> str:
    return "0.0.0.0" if family == V4 else "::"


@pytest.mark.parametrize("family", FAMILIES)
def test_join_by_index_and_scope(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    with inside(net.r):
        index = socket.if_nametoindex(net.r_if)
    r1, r2 = _receivers(net, family, group)
    with r1, r2, _sender(net, family) as tx:
        join(r1, group, interface=index)
        if family == V6:
            join(r2, f"{group}%{net.r_if}")  # the scope names the interface
        else:
            join(r2, group, interface=str(net.family_addrs(family)["r"]))
        tx.sendto(b"x", (group, PORT))
        assert receive(r1)[0] == b"x"
        assert receive(r2)[0] == b"x"


@pytest.mark.parametrize("family", FAMILIES)
def test_without_interface_the_route_decides(net: Net, family: socket.AddressFamily) -> None:
    group = GROUP[family]
    # IPv6 multicast routes live in the local table (one ff00::/8 per interface), which is
    # looked up before the main one: a more specific route has to go there too.
    prefix, table = ("239.0.0.0/8", "main") if family == V4 else ("ff1e::/16", "local")
    net.r.run(["ip", "route", "add", prefix, "dev", net.r_if, "table", table])
    net.s.run(["ip", "route", "add", prefix, "dev", net.s_to_q, "table", table])  # s: to q
    with inside(net.r):
        on_r = bound(family, group, PORT)
    with inside(net.q):
        on_q = bound(family, group, PORT)
    with inside(net.s):
        tx = bound(family, any_addr(family), 0, reuse=False)
    with on_r, on_q, tx:
        join(on_r, group)  # the route to the group: r's link
        join(on_q, group, interface=net.q_if)
        tx.sendto(b"by the route", (group, PORT))
        assert receive(on_q)[0] == b"by the route"
        set_options(tx, interface=net.s_to_r)
        tx.sendto(b"by choice", (group, PORT))
        assert receive(on_r)[0] == b"by choice"
        assert queued(on_q) == []


# --- errors: one line, the right class, the OSError chained --------------------------------


def test_not_a_multicast_address() -> None:
    with socket.socket(V4, socket.SOCK_DGRAM) as sock, pytest.raises(AddressError) as info:
        join(sock, "10.1.2.3")
    assert str(info.value) == (
        "join 10.1.2.3: not a multicast address (IPv4 groups are in 224.0.0.0/4)"
    )
    with socket.socket(V6, socket.SOCK_DGRAM) as sock, pytest.raises(AddressError) as info:
        leave(sock, "fd00::1")
    assert str(info.value) == "leave fd00::1: not a multicast address (IPv6 groups are in ff00::/8)"
    with socket.socket(V4, socket.SOCK_DGRAM) as sock, pytest.raises(AddressError) as info:
        join(sock, "example.org")
    assert str(info.value) == "join example.org: not an IP address"


def test_family_mismatches() -> None:
    with socket.socket(V4, socket.SOCK_DGRAM) as sock:
        with pytest.raises(AddressError) as info:
            join(sock, "ff1e::1")
        assert str(info.value) == (
            "join ff1e::1: an IPv6 group needs an IPv6 socket (this one is IPv4)"
        )
        with pytest.raises(AddressError) as info:
            join(sock, "232.1.1.1", source="fd00::1")
        assert str(info.value) == (
            "join 232.1.1.1 from fd00::1: the source is IPv6 but the group is IPv4"
        )
        with pytest.raises(AddressError) as info:
            join(sock, "232.1.1.1", source="239.1.1.1")
        assert str(info.value) == (
            "join 232.1.1.1 from 239.1.1.1: a source is a sender's unicast address,"
            " not a multicast address"
        )
        with pytest.raises(AddressError) as info:
            set_options(sock, interface="fd00::1")
        assert str(info.value) == (
            "multicast options: interface fd00::1 is an IPv6 address but the socket is IPv4"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        with pytest.raises(AddressError) as info:
            join(sock, "239.1.1.1")
        assert str(info.value) == "join 239.1.1.1: multicast needs an IPv4 or IPv6 socket"
    with socket.socket(V4, socket.SOCK_STREAM) as sock:
        with pytest.raises(SocketkitError) as einfo:
            join(sock, "239.1.1.1")
        assert str(einfo.value) == "join 239.1.1.1: multicast needs a datagram (UDP) socket"


def test_unknown_interfaces(net: Net) -> None:
    with inside(net.r):
        v4 = socket.socket(V4, socket.SOCK_DGRAM)
        v6 = socket.socket(V6, socket.SOCK_DGRAM)
    with v4, v6:
        with pytest.raises(AddressError) as info:
            join(v4, "239.1.1.1", interface="nosuch0")
        assert str(info.value) == "join 239.1.1.1 on nosuch0: no interface named 'nosuch0'"
        assert info.value.__cause__ is not None
        with pytest.raises(AddressError) as info:
            join(v6, "ff1e::1", interface=999)
        assert str(info.value) == "join ff1e::1 on 999: no interface with index 999"
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(AddressError) as info:
            join(v4, "239.1.1.1", interface="198.18.9.9")
        assert str(info.value) == (
            "join 239.1.1.1 on 198.18.9.9: no interface has the address 198.18.9.9"
        )
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(AddressError) as info, inside(net.r):
            join(v6, "ff1e::1", interface="fd00:5e:9::9")
        assert str(info.value) == (
            "join ff1e::1 on fd00:5e:9::9: no interface has the address fd00:5e:9::9"
        )
        with pytest.raises(AddressError) as info:
            set_options(v4, interface="nosuch0")
        assert str(info.value) == "multicast options: no interface named 'nosuch0'"
        for sock in (v4, v6):
            with pytest.raises(AddressError) as info:
                set_options(sock, interface=999)
            assert str(info.value) == "multicast options: no interface with index 999"
            assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(AddressError) as info:
            set_options(v4, interface="198.18.9.9")
        assert str(info.value) == "multicast options: no interface has the address 198.18.9.9"
        assert isinstance(info.value.__cause__, OSError)
        # the source-specific paths: by address (ip_mreq_source), by index (group_source_req)
        with pytest.raises(AddressError) as info:
            join(v4, "232.1.1.1", interface="198.18.9.9", source="198.18.1.1")
        assert str(info.value) == (
            "join 232.1.1.1 from 198.18.1.1 on 198.18.9.9: no interface has the address 198.18.9.9"
        )
        for sock, group, source in ((v4, "232.1.1.1", "198.18.1.1"), (v6, "ff3e::1", "fd00::1")):
            with pytest.raises(AddressError) as info:
                join(sock, group, interface=999, source=source)
            assert str(info.value) == (
                f"join {group} from {source} on 999: no interface with index 999"
            )
        with pytest.raises(AddressError) as info:
            join(v6, f"ff1e::1%{net.r_if}", interface="lo")
        assert str(info.value) == (
            f"join ff1e::1%{net.r_if} on lo: the group's scope names another interface"
        )
        with pytest.raises(AddressError) as info:
            set_options(v4, interface=-1)
        assert str(info.value) == "multicast options: no interface with index -1"


def test_ipv6_interface_address_from_another_namespace(net: Net) -> None:
    with inside(net.r):
        sock = socket.socket(V6, socket.SOCK_DGRAM)
    with sock:
        with pytest.raises(AddressError) as info:
            join(sock, "ff1e::1", interface="fd00:5e:1::2")  # r's address, looked up from here
        assert str(info.value) == (
            "join ff1e::1 on fd00:5e:1::2: the socket belongs to another network namespace"
            " than this thread; name the interface or give its index"
        )
        with inside(net.r):
            join(sock, "ff1e::1", interface="fd00:5e:1::2")


def test_no_route_to_the_group(net: Net) -> None:
    # r has only its link's route: without an interface the kernel cannot pick one.
    with inside(net.r):
        sock = socket.socket(V4, socket.SOCK_DGRAM)
    with sock:
        with pytest.raises(AddressError) as info:
            join(sock, "239.1.1.1")
        assert str(info.value) == (
            "join 239.1.1.1: no route to the group; name the interface (interface=...)"
        )
        assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("family", FAMILIES)
def test_membership_state_errors(net: Net, family: socket.AddressFamily) -> None:
    group, ssm = GROUP[family], SSM_GROUP[family]
    source = net.family_addrs(family)["s"]
    with inside(net.r):
        sock = bound(family, any_addr(family), PORT)
    with sock:
        join(sock, group, interface=net.r_if)
        with pytest.raises(SocketkitError) as info:
            join(sock, group, interface=net.r_if)
        assert str(info.value) == (
            f"join {group} on {net.r_if}: already a member of this group there"
        )
        assert isinstance(info.value.__cause__, OSError)
        leave(sock, group, interface=net.r_if)
        with pytest.raises(SocketkitError) as info:
            leave(sock, group, interface=net.r_if)
        assert str(info.value) == f"leave {group} on {net.r_if}: not a member of this group there"
        assert isinstance(info.value.__cause__, OSError)
        join(sock, ssm, interface=net.r_if, source=source)
        with pytest.raises(SocketkitError) as info:
            join(sock, ssm, interface=net.r_if, source=source)
        assert str(info.value) == (
            f"join {ssm} from {source} on {net.r_if}: already a member of this group there"
        )
        # an any-source join cannot widen a source-specific membership: leave it first
        with pytest.raises(SocketkitError) as info:
            join(sock, ssm, interface=net.r_if)
        assert str(info.value) == f"join {ssm} on {net.r_if}: already a member of this group there"
        other = net.family_addrs(family)["s2"]
        with pytest.raises(SocketkitError) as info:
            leave(sock, ssm, interface=net.r_if, source=other)
        assert str(info.value) == (
            f"leave {ssm} from {other} on {net.r_if}: not a member of this group there"
        )


def test_membership_limit(net: Net) -> None:
    # net.ipv4.igmp_max_memberships (20 by default) per socket
    with inside(net.r):
        sock = bound(V4, "0.0.0.0", PORT)
        limit = int(net.r.run(["sysctl", "-n", "net.ipv4.igmp_max_memberships"]).stdout)
    with sock:
        for i in range(limit):
            join(sock, f"239.9.0.{i + 1}", interface=net.r_if)
        with pytest.raises(SocketkitError) as info:
            join(sock, "239.9.1.1", interface=net.r_if)
        assert str(info.value) == (
            f"join 239.9.1.1 on {net.r_if}: the kernel's limit of memberships or sources per"
            " socket is reached (net.ipv4.igmp_max_memberships, igmp_max_msf;"
            " net.ipv6.mld_max_msf)"
        )
        assert isinstance(info.value.__cause__, OSError)


def test_option_values_checked() -> None:
    with socket.socket(V4, socket.SOCK_DGRAM) as sock:
        for bad in (-1, 256):
            with pytest.raises(SocketkitError) as info:
                set_options(sock, ttl=bad)
            assert str(info.value) == f"multicast options: ttl {bad} out of range: expected 0-255"
        with pytest.raises(SocketkitError) as info:
            set_options(sock, ttl=True)
        assert str(info.value) == "multicast options: ttl must be an int, not bool"


def test_closed_socket() -> None:
    sock = socket.socket(V4, socket.SOCK_DGRAM)
    sock.close()
    with pytest.raises(ClosedResourceError) as info:
        join(sock, "239.1.1.1")
    assert str(info.value) == "join 239.1.1.1: the socket is closed"
    with pytest.raises(ClosedResourceError):
        set_options(sock, ttl=3)
