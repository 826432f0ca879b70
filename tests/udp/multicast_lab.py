"""A test network for the multicast tests: namespaces joined by veth pairs.

Multicast cannot be tested honestly on the host's own ``lo`` (it has no MULTICAST flag and no
route for the groups, and changing that would change the host). Here a sender namespace ``s``
is joined by one veth pair to a receiver namespace ``r`` and by another to a second receiver
namespace ``q``, so "which interface", "which source" and "does it loop back" all have a
visible answer. :func:`inside` moves the calling thread into a namespace for a moment: the
sockets opened there stay in it after the thread comes back (a socket belongs to the network
namespace it was created in), and child processes started there run in it.

Addresses (198.18.0.0/15, RFC 2544, routes nowhere else; ULA fd00:5e::/32):

    s ==(sr)== r    s 198.18.1.1 and .3, fd00:5e:1::1 and ::3;  r 198.18.1.2, fd00:5e:1::2
    s ==(sq)== q    s 198.18.2.1, fd00:5e:2::1;                  q 198.18.2.2, fd00:5e:2::2
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from support.netlab import Host, Lab

#: ``CLONE_NEWNET`` (linux/sched.h): setns(2) into a network namespace.
CLONE_NEWNET = 0x40000000
#: Linux ``IP_RECVTTL`` (linux/in.h): each datagram carries its IP TTL as ancillary data
#: (a control message of type ``IP_TTL``).
IP_RECVTTL = 12

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def inside(host: Host) -> Iterator[None]:
    """Run the calling thread in ``host``'s network namespace until the block ends."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{host.name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


@dataclass
class Net:
    """The three namespaces and their interface names."""

    lab: Lab
    s: Host
    r: Host
    q: Host
    s_to_r: str  # s's end of the s-r link
    r_if: str  # r's end
    s_to_q: str
    q_if: str

    def family_addrs(self, family: socket.AddressFamily) -> dict[str, str]:
        """Addresses by role for one family (keys: s, s2, r, sq, q)."""
        if family == socket.AF_INET:
            return {
                "s": "198.18.1.1",
                "s2": "198.18.1.3",
                "r": "198.18.1.2",
                "sq": "198.18.2.1",
                "q": "198.18.2.2",
            }
        return {
            "s": "fd00:5e:1::1",
            "s2": "fd00:5e:1::3",
            "r": "fd00:5e:1::2",
            "sq": "fd00:5e:2::1",
            "q": "fd00:5e:2::2",
        }


@contextlib.contextmanager
def multicast_net() -> Iterator[Net]:
    """Build s, r and q (see the module docstring); everything is deleted on exit."""
    with Lab() as lab:
        hosts = [lab.host(name) for name in ("s", "r", "q")]
        for host in hosts:
            # No duplicate address detection: link-local and ULA addresses are usable at
            # once (a tentative address cannot be a source).
            host.sysctl("net.ipv6.conf.default.accept_dad", "0")
            host.sysctl("net.ipv6.conf.all.accept_dad", "0")
        s, r, q = hosts
        s_to_r, r_if = lab.link(s, r, "198.18.1.1/24", "198.18.1.2/24")
        s_to_q, q_if = lab.link(s, q, "198.18.2.1/24", "198.18.2.2/24")
        extra = [
            (s, s_to_r, "198.18.1.3/24"),
            (s, s_to_r, "fd00:5e:1::1/64"),
            (s, s_to_r, "fd00:5e:1::3/64"),
            (r, r_if, "fd00:5e:1::2/64"),
            (s, s_to_q, "fd00:5e:2::1/64"),
            (q, q_if, "fd00:5e:2::2/64"),
        ]
        for host, iface, addr in extra:
            flags = ["nodad"] if ":" in addr else []
            host.run(["ip", "addr", "add", addr, "dev", iface, *flags])
        yield Net(lab, s, r, q, s_to_r, r_if, s_to_q, q_if)


def any_address(family: socket.AddressFamily) -> str:
    return "0.0.0.0" if family == socket.AF_INET else "::"


def bound(
    family: socket.AddressFamily, host: str, port: int, *, reuse: bool = True
) -> socket.socket:
    """A plain UDP socket bound to ``host:port`` (SO_REUSEADDR: several receivers, one port)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def receive(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, str]:
    """One datagram (payload, sender host) within ``timeout`` seconds, else TimeoutError."""
    sock.settimeout(timeout)
    data, addr = sock.recvfrom(65535)
    return data, addr[0]


def receive_n(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    return [receive(sock, timeout)[0] for _ in range(count)]


def queued(sock: socket.socket, grace: float = 0.2) -> list[bytes]:
    """Whatever is queued on ``sock`` now, after ``grace`` seconds for stragglers.

    Called after a barrier (another receiver already got a later datagram), so a datagram
    that was going to arrive here has arrived; the grace only covers a sender that moved
    between CPUs. A correct run finds nothing and waits the whole grace; never a flake.
    """
    out: list[bytes] = []
    select.select([sock], [], [], grace)
    sock.setblocking(False)
    try:
        while True:
            try:
                out.append(sock.recv(65535))
            except BlockingIOError:
                return out
    finally:
        sock.setblocking(True)


def receive_hops(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, int]:
    """One datagram and the TTL / hop limit it arrived with (IP_RECVTTL / IPV6_RECVHOPLIMIT)."""
    sock.settimeout(timeout)
    data, ancdata, _flags, _addr = sock.recvmsg(65535, socket.CMSG_SPACE(4))
    for level, kind, value in ancdata:
        if (level, kind) in (
            (socket.IPPROTO_IP, socket.IP_TTL),
            (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT),
        ):
            return data, struct.unpack("i", value[:4])[0]
    raise AssertionError(f"no TTL/hop limit in the ancillary data: {ancdata!r}")


def want_hops(sock: socket.socket) -> None:
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
