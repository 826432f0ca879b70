"""``listen -u --multicast`` and ``connect -u --multicast-*`` against socat, in test
namespaces (multicast needs interfaces with routes for the groups: the host's ``lo`` has
neither, see tests/udp/multicast_lab.py)."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from collections.abc import Iterator

import pytest

from socketkit._multicast import join
from udp.multicast_lab import IP_RECVTTL, Net, bound, inside, multicast_net

from .nctools import SK, Collector
from .nctools import run_sk as run

GROUP = "239.1.2.3"
PORT = 5300


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with multicast_net() as built:
        yield built


def _listener(net: Net, *extra: str) -> tuple[subprocess.Popen[bytes], Collector]:
    """``socketkit listen -u -k --json --multicast GROUP ... PORT`` in r, once it is bound."""
    argv = [*SK, "listen", "-u", "-k", "--json", "--multicast", GROUP, *extra, str(PORT)]
    proc = net.r.popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = Collector(proc.stdout)
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())  # the "listening" event: bound and joined
        assert first["event"] == "listening" and first["local"] == f"{GROUP}:{PORT}", first
    except BaseException:
        _stop(proc, out)
        raise
    return proc, out


def _socat_send(net: Net, data: bytes, bind: str) -> None:
    """socat sends one datagram to the group from ``bind`` (out of s's link to r)."""
    target = f"UDP4-DATAGRAM:{GROUP}:{PORT},bind={bind},ip-multicast-if={bind}"
    net.s.run(["socat", "-u", "STDIN", target], input=data.decode(), timeout=20)


def _stop(proc: subprocess.Popen[bytes], out: Collector) -> None:
    proc.terminate()
    proc.wait(10)
    out.thread.join(10)  # it has read stdout to its end: the pipe can be closed
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def test_listen_joins_the_group_and_prints_what_socat_sends_to_it(net: Net) -> None:
    proc, out = _listener(net, "--multicast-interface", net.r_if)
    try:
        _socat_send(net, b"to the group\n", "198.18.1.1")
        assert out.wait_for(len(b"to the group\n"), timeout=10) == b"to the group\n"
        # Bound to the group: a unicast datagram to r's own address and PORT is not ours.
        net.s.run(
            ["socat", "-u", "STDIN", f"UDP4-DATAGRAM:198.18.1.2:{PORT},bind=198.18.1.1"],
            input="unicast\n",
            timeout=20,
        )
        _socat_send(net, b"again\n", "198.18.1.1")
        assert out.wait_for(len(b"to the group\nagain\n"), timeout=10) == b"to the group\nagain\n"
    finally:
        _stop(proc, out)


def test_listen_multicast_source_takes_only_that_sender(net: Net) -> None:
    proc, out = _listener(
        net, "--multicast-source", "198.18.1.3", "--multicast-interface", net.r_if
    )
    try:
        _socat_send(net, b"from .1\n", "198.18.1.1")  # not the chosen source: filtered
        _socat_send(net, b"from .3\n", "198.18.1.3")
        # .1's datagram went first on the same link: had it been let in, it would be first.
        assert out.wait_for(len(b"from .3\n"), timeout=10) == b"from .3\n"
    finally:
        _stop(proc, out)


def test_connect_sends_to_the_group_with_the_ttl_asked_for(net: Net) -> None:
    with inside(net.r):
        receiver = bound(socket.AF_INET, GROUP, PORT)
    try:
        join(receiver, GROUP, interface=net.r_if)
        receiver.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        receiver.settimeout(10)
        argv = [*SK, "connect", "-u", "--multicast-ttl", "7", "--multicast-interface"]
        argv += [net.s_to_r, "--multicast-loop", "off", "-q", "0", GROUP, str(PORT)]
        proc = net.s.run(argv, input="hello group\n", timeout=30)
        assert proc.returncode == 0, proc.stderr
        data, ancillary, _flags, source = receiver.recvmsg(100, socket.CMSG_SPACE(4))
        assert data == b"hello group\n"
        assert source[0] == "198.18.1.1"  # out of the interface we named
        ttls = [struct.unpack("i", v)[0] for lvl, kind, v in ancillary if kind == socket.IP_TTL]
        assert ttls == [7]
    finally:
        receiver.close()


def test_with_a_host_the_listener_gets_unicast_too_and_replies_by_unicast(net: Net) -> None:
    argv = [*SK, "listen", "-u", "-k", "--json", "--multicast", GROUP]
    argv += ["--multicast-interface", net.r_if, "-e", "cat", "0.0.0.0", str(PORT)]
    proc = net.r.popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = Collector(proc.stdout)
    try:
        assert proc.stderr is not None
        assert json.loads(proc.stderr.readline())["local"] == f"0.0.0.0:{PORT}"
        with inside(net.s):
            sender = bound(socket.AF_INET, "198.18.1.1", 0, reuse=False)
        with sender:
            sender.settimeout(10)
            sender.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("198.18.1.1")
            )
            sender.sendto(b"via the group", (GROUP, PORT))
            data, source = sender.recvfrom(100)  # -e cat's echo, from r's own address
            assert (data, source) == (b"via the group", ("198.18.1.2", PORT))
            sender.sendto(b"unicast", ("198.18.1.2", PORT))
            assert sender.recvfrom(100) == (b"unicast", ("198.18.1.2", PORT))
    finally:
        _stop(proc, out)


def test_listen_joins_an_ipv6_group(net: Net) -> None:
    group = "ff15::5e:1"
    argv = [*SK, "listen", "-u", "-k", "--json", "--multicast", group]
    argv += ["--multicast-interface", net.r_if, str(PORT)]
    proc = net.r.popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = Collector(proc.stdout)
    try:
        assert proc.stderr is not None
        assert json.loads(proc.stderr.readline())["local"] == f"[{group}]:{PORT}"
        with inside(net.s):
            sender = bound(socket.AF_INET6, "fd00:5e:1::1", 0, reuse=False)
            index = socket.if_nametoindex(net.s_to_r)
        with sender:
            sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sender.sendto(b"six\n", (group, PORT))
            assert out.wait_for(4, timeout=10) == b"six\n"
    finally:
        _stop(proc, out)


@pytest.mark.parametrize("loop", ["on", "off", None])
def test_connect_multicast_loop(net: Net, loop: str | None) -> None:
    # A member on the sending host itself gets the datagram unless --multicast-loop off.
    with inside(net.s):
        local = bound(socket.AF_INET, GROUP, PORT)
    with inside(net.r):
        remote = bound(socket.AF_INET, GROUP, PORT)
    try:
        join(local, GROUP, interface=net.s_to_r)
        join(remote, GROUP, interface=net.r_if)
        argv = [*SK, "connect", "-u", "--multicast-interface", net.s_to_r, "-q", "0"]
        if loop is not None:
            argv += ["--multicast-loop", loop]
        proc = net.s.run([*argv, GROUP, str(PORT)], input="x\n", timeout=30)
        assert proc.returncode == 0, proc.stderr
        remote.settimeout(10)
        assert remote.recv(100) == b"x\n"  # the datagram went out: now look at home
        local.setblocking(False)
        if loop == "off":
            with pytest.raises(BlockingIOError):
                local.recv(100)
        else:
            assert local.recv(100) == b"x\n"
    finally:
        local.close()
        remote.close()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["listen", "-u", "--multicast", "10.0.0.1", "9"],
            "socketkit listen: argument --multicast: 10.0.0.1 is not a multicast address "
            "(IPv4 224.0.0.0/4, IPv6 ff00::/8)",
        ),
        (
            ["listen", "--multicast", "239.1.1.1", "9"],
            "socketkit listen: --multicast needs -u with HOST PORT: multicast is UDP over IP",
        ),
        (
            ["listen", "-u", "--multicast-source", "10.0.0.1", "9"],
            "socketkit listen: --multicast-source needs --multicast GROUP",
        ),
        (
            ["connect", "--multicast-ttl", "3", "239.1.1.1", "9"],
            "socketkit connect: --multicast-ttl needs -u with HOST PORT: multicast is UDP over IP",
        ),
        (
            ["listen", "-u", "--multicast", "ff1e::1", "-4", "9"],
            "socketkit listen: --multicast ff1e::1 is an IPv6 group, but -4 asks for IPv4 "
            "only: drop -4 or use an IPv4 group",
        ),
        (
            ["listen", "-u", "--multicast", "239.1.1.1", "-6", "9"],
            "socketkit listen: --multicast 239.1.1.1 is an IPv4 group, but -6 asks for IPv6 "
            "only: drop -6 or use an IPv6 group",
        ),
        (
            ["connect", "-u", "--multicast-ttl", "256", "239.1.1.1", "9"],
            "socketkit connect: argument --multicast-ttl: expected a TTL from 0 to 255: '256'",
        ),
    ],
)
def test_bad_multicast_options_are_usage_errors(argv: list[str], line: str) -> None:
    proc = run(*argv)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line, f"see 'socketkit {argv[0]} --help'"]


def test_a_join_that_fails_is_one_line_with_the_address_error_status(net: Net) -> None:
    proc = net.r.run(
        [*SK, "listen", "-u", "--multicast", GROUP, "--multicast-interface", "nosuch0", "5301"],
        check=False,
        timeout=30,
    )
    assert proc.returncode == 2  # AddressError (docs/cli.md)
    assert proc.stderr.splitlines() == [
        f"socketkit listen: join {GROUP} on nosuch0: no interface named 'nosuch0'"
    ]
