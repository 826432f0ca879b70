"""Multicast group membership and sending options for IPv4 and IPv6 datagram sockets.

Three functions over a plain ``socket.socket`` (``DatagramSocket.join``/``leave``/
``set_multicast`` call them):

* :func:`join` / :func:`leave` — any-source membership (RFC 1112 host extensions for IPv4,
  RFC 2710 / RFC 3810 MLD for IPv6) or, with ``source=``, source-specific membership
  (RFC 4607 SSM, signalled with IGMPv3, RFC 3376, and MLDv2, RFC 3810): the socket then gets
  the group's datagrams from that sender only. The kernel sends the reports; we only ask.
* :func:`set_options` — what this socket's own multicast sends do: TTL / hop limit, whether a
  copy loops back to local members, and which interface they leave by.

An ``interface`` is a name (``"eth0"``), an index (``int``, or a string of digits) or one of
the host's own addresses (``"192.0.2.7"``, ``"fd00::7"``, ``"fe80::1%eth0"``). Names are
looked up through the socket itself (``SIOCGIFINDEX``), so in the socket's network namespace;
an IPv6 address is looked up in ``/proc/thread-self/net/if_inet6``, which lists the calling
thread's namespace (a socket from another namespace is refused there, not misread).

Every failure is a one-line :class:`~socketkit.AddressError` (bad group, source or interface)
or :class:`~socketkit.SocketkitError` (membership state, option values), chained to the
``OSError`` where the kernel refused.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import TypeAlias

from ._errors import AddressError, ClosedResourceError, SocketkitError, translate_os_error

__all__ = ["InterfaceLike", "join", "leave", "set_options"]

#: What ``interface=`` accepts: a name, an index, or a local address.
InterfaceLike: TypeAlias = "str | int"

_IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"

# Linux option numbers that Python's ``socket`` module does not export (linux/in.h, in6.h).
#: ``IP_ADD_SOURCE_MEMBERSHIP`` / ``IP_DROP_SOURCE_MEMBERSHIP``: struct ip_mreq_source.
IP_ADD_SOURCE_MEMBERSHIP = 39
IP_DROP_SOURCE_MEMBERSHIP = 40
#: ``IP_MULTICAST_ALL`` / ``IPV6_MULTICAST_ALL``: 1 (Linux's default) delivers every group
#: any socket on the host joined to every socket bound to the port; we turn it off on join.
IP_MULTICAST_ALL = 49
IPV6_MULTICAST_ALL = 29
#: RFC 3678 §5.1 protocol-independent source-specific API: struct group_source_req.
MCAST_JOIN_SOURCE_GROUP = 46
MCAST_LEAVE_SOURCE_GROUP = 47
#: ``SIOCGIFINDEX`` (linux/sockios.h): interface name to index, in the socket's namespace.
SIOCGIFINDEX = 0x8933
#: ``SIOCGSKNS`` (linux/sockios.h): a descriptor of the socket's network namespace.
SIOCGSKNS = 0x894C
#: ``IFNAMSIZ`` (linux/if.h): an interface name is at most 15 bytes plus the NUL.
IFNAMSIZ = 16
#: Largest TTL / hop limit (an 8-bit field in both IP headers).
MAX_TTL = 255
#: ``sizeof(struct sockaddr_storage)``; struct group_source_req aligns it to a pointer.
_SOCKADDR_STORAGE = 128
_POINTER = struct.calcsize("P")
_IF_INET6 = "/proc/thread-self/net/if_inet6"
_THREAD_NAMESPACE = "/proc/thread-self/ns/net"
_OPTIONS = "multicast options"


@dataclass(frozen=True, slots=True)
class _Interface:
    """A resolved interface: an index (0: let the kernel choose) or an IPv4 local address."""

    index: int = 0
    address: bytes = b"\0\0\0\0"  # IPv4 only: packed local address (ip_mreqn.imr_address)
    family: int = 0  # given as an address: its family (0: by name or index, either family)

    @property
    def by_address(self) -> bool:
        return self.address != b"\0\0\0\0"


def join(
    sock: socket.socket,
    group: str,
    *,
    interface: InterfaceLike | None = None,
    source: str | None = None,
) -> None:
    """Make ``sock`` a member of the multicast ``group``.

    Without ``source`` the socket gets the group's datagrams from every sender (any-source
    multicast: ``IP_ADD_MEMBERSHIP`` with struct ip_mreqn, ``IPV6_JOIN_GROUP``). With
    ``source`` it gets only that sender's (RFC 4607 source-specific multicast:
    ``IP_ADD_SOURCE_MEMBERSHIP`` or ``MCAST_JOIN_SOURCE_GROUP``); call again with another
    ``source`` to add senders (up to ``net.ipv4.igmp_max_msf`` / ``net.ipv6.mld_max_msf``).

    The socket also stops receiving groups it did not join (``IP_MULTICAST_ALL`` off: Linux
    otherwise hands a socket bound to the port every group any socket on the host joined).
    It still has to be bound to the group's port (to the group address, or to the wildcard
    address to get unicast datagrams to that port as well).

    Args:
        sock: an IPv4 or IPv6 datagram socket.
        group: the group's address (``"239.1.2.3"``, ``"ff1e::1"``; an IPv6 group may carry
            the interface as its scope, ``"ff02::1%eth0"``).
        interface: where to join (see the module docstring); ``None``: the interface of the
            route to the group.
        source: the one sender to accept, for source-specific membership.

    Raises:
        AddressError: ``group`` is not a multicast address, ``source`` or ``interface`` is
            not usable with this socket's family, the interface does not exist, or there is
            no route to the group and no interface was given.
        SocketkitError: already a member (of this group, or of this source in it, on this
            interface), or a source-specific join on a group joined for any source.
        ClosedResourceError: the socket is closed.
    """
    _membership(sock, "join", group, interface, source)


def leave(
    sock: socket.socket,
    group: str,
    *,
    interface: InterfaceLike | None = None,
    source: str | None = None,
) -> None:
    """End a membership made by :func:`join` with the same ``group`` and ``interface``.

    Without ``source`` the whole membership ends, whatever sources it had. With ``source``
    only that sender is dropped; dropping the last one ends the membership (RFC 3376 §3:
    INCLUDE mode with an empty source list is no membership at all).

    Raises:
        AddressError: as for :func:`join`.
        SocketkitError: the socket is not a member there (or not for that source).
        ClosedResourceError: the socket is closed.
    """
    _membership(sock, "leave", group, interface, source)


def set_options(
    sock: socket.socket,
    *,
    ttl: int | None = None,
    loopback: bool | None = None,
    interface: InterfaceLike | None = None,
) -> None:
    """Set how ``sock`` sends to multicast groups; ``None`` leaves an option as it is.

    Args:
        ttl: the IPv4 TTL / IPv6 hop limit of multicast datagrams, 0-255 (default 1: the
            local network only, RFC 1112 §6.1 and RFC 3493 §5.2; 0: this host only).
        loopback: whether members on this host (other sockets, other programs) get a copy of
            what this socket sends (default ``True``; ``IP_MULTICAST_LOOP``).
        interface: the interface multicast datagrams leave by (a name, an index or a local
            address; default: the route to the group). Unicast sends are not affected.

    Raises:
        AddressError: the interface does not exist or its address is of the other family.
        SocketkitError: ``ttl`` out of range.
        ClosedResourceError: the socket is closed.
    """
    families = _families(sock, _OPTIONS)
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise SocketkitError(f"{_OPTIONS}: ttl must be an int, not {type(ttl).__name__}")
        if not 0 <= ttl <= MAX_TTL:
            raise SocketkitError(f"{_OPTIONS}: ttl {ttl} out of range: expected 0-{MAX_TTL}")
    resolved = None
    if interface is not None:
        against = f"the socket is {_kind(families)}"
        resolved = _interface(sock, families, interface, _OPTIONS, against)
        if resolved.family:
            # A dual-stack socket given an address: that address's family only.
            families = (resolved.family,)
    try:
        for family in families:
            _send_options(sock, family, ttl, loopback, resolved)
    except OSError as exc:
        raise _translate(exc, _OPTIONS, interface, resolved) from exc


# --- the work ----------------------------------------------------------------------------------


def _send_options(
    sock: socket.socket,
    family: int,
    ttl: int | None,
    loopback: bool | None,
    resolved: _Interface | None,
) -> None:
    if family == socket.AF_INET:
        level, ttl_option, loop_option = (
            socket.IPPROTO_IP,
            socket.IP_MULTICAST_TTL,
            socket.IP_MULTICAST_LOOP,
        )
    else:
        level, ttl_option, loop_option = (
            socket.IPPROTO_IPV6,
            socket.IPV6_MULTICAST_HOPS,
            socket.IPV6_MULTICAST_LOOP,
        )
    if ttl is not None:
        sock.setsockopt(level, ttl_option, ttl)
    if loopback is not None:
        sock.setsockopt(level, loop_option, int(bool(loopback)))
    if resolved is not None:
        if family == socket.AF_INET:
            mreqn = struct.pack("4s4si", b"\0" * 4, resolved.address, resolved.index)
            sock.setsockopt(level, socket.IP_MULTICAST_IF, mreqn)
        else:
            sock.setsockopt(level, socket.IPV6_MULTICAST_IF, resolved.index)


def _membership(
    sock: socket.socket,
    verb: str,
    group: str,
    interface: InterfaceLike | None,
    source: str | None,
) -> None:
    action = f"{verb} {group}"
    if source is not None:
        action += f" from {source}"
    if interface is not None:
        action += f" on {interface}"
    families = _families(sock, action)
    group_ip = _ip(group, action, "")
    if not group_ip.is_multicast:
        where = (
            "IPv4 groups are in 224.0.0.0/4"
            if group_ip.version == 4
            else ("IPv6 groups are in ff00::/8")
        )
        raise AddressError(f"{action}: not a multicast address ({where})")
    want = group_ip.version
    family = socket.AF_INET if want == 4 else socket.AF_INET6
    if family not in families:
        # An IPv4 group on a dual-stack IPv6 socket is fine: Linux takes the IPv4 options
        # there (net/ipv6/ipv6_sockglue.c hands SOL_IP to the IPv4 code) and delivers the
        # group's datagrams as IPv4-mapped.
        needs = "an IPv4 or dual-stack socket" if want == 4 else "an IPv6 socket"
        raise AddressError(
            f"{action}: an IPv{want} group needs {needs} (this one is {_kind(families)})"
        )
    source_ip = None
    if source is not None:
        source_ip = _ip(source, action, "the source ")
        if source_ip.version != want:
            raise AddressError(
                f"{action}: the source is IPv{source_ip.version} but the group is IPv{want}"
            )
        if source_ip.is_multicast or source_ip.is_unspecified:
            raise AddressError(
                f"{action}: a source is a sender's unicast address, not a multicast address"
            )
    scope = getattr(group_ip, "scope_id", None)
    against = f"the group is IPv{want}"
    if scope:
        from_scope = _interface(sock, (family,), scope, action, against)
        if (
            interface is not None
            and _interface(sock, (family,), interface, action, against).index != from_scope.index
        ):
            raise AddressError(f"{action}: the group's scope names another interface")
        resolved = from_scope
    elif interface is not None:
        resolved = _interface(sock, (family,), interface, action, against)
    else:
        resolved = _Interface()
    joining = verb == "join"
    try:
        if joining:
            _receive_joined_groups_only(sock, family)
        if family == socket.AF_INET:
            _ipv4(sock, joining, group_ip.packed, resolved, source_ip)
        else:
            _ipv6(sock, joining, group_ip.packed, resolved, source_ip)
    except OSError as exc:
        raise _translate(
            exc, action, interface, resolved, membership=verb, with_source=source is not None
        ) from exc


def _ipv4(
    sock: socket.socket,
    joining: bool,
    group: bytes,
    where: _Interface,
    source: _IPAddress | None,
) -> None:
    if source is None:
        option = socket.IP_ADD_MEMBERSHIP if joining else socket.IP_DROP_MEMBERSHIP
        sock.setsockopt(
            socket.IPPROTO_IP, option, struct.pack("4s4si", group, where.address, where.index)
        )
    elif where.index:
        # struct ip_mreq_source names the interface by address only; an index needs the
        # RFC 3678 protocol-independent form.
        option = MCAST_JOIN_SOURCE_GROUP if joining else MCAST_LEAVE_SOURCE_GROUP
        sock.setsockopt(
            socket.IPPROTO_IP, option, _group_source_req(where.index, group, source.packed)
        )
    else:
        option = IP_ADD_SOURCE_MEMBERSHIP if joining else IP_DROP_SOURCE_MEMBERSHIP
        # struct ip_mreq_source: imr_multiaddr, imr_interface, imr_sourceaddr (Linux order).
        mreq = struct.pack("4s4s4s", group, where.address, source.packed)
        sock.setsockopt(socket.IPPROTO_IP, option, mreq)


def _ipv6(
    sock: socket.socket,
    joining: bool,
    group: bytes,
    where: _Interface,
    source: _IPAddress | None,
) -> None:
    if source is None:
        option = socket.IPV6_JOIN_GROUP if joining else socket.IPV6_LEAVE_GROUP
        sock.setsockopt(socket.IPPROTO_IPV6, option, struct.pack("16sI", group, where.index))
    else:
        option = MCAST_JOIN_SOURCE_GROUP if joining else MCAST_LEAVE_SOURCE_GROUP
        sock.setsockopt(
            socket.IPPROTO_IPV6, option, _group_source_req(where.index, group, source.packed)
        )


def _group_source_req(index: int, group: bytes, source: bytes) -> bytes:
    """struct group_source_req (RFC 3678 §5.1): an interface index, then two sockaddrs."""
    return struct.pack("I", index).ljust(_POINTER, b"\0") + _storage(group) + _storage(source)


def _storage(packed: bytes) -> bytes:
    if len(packed) == 4:
        sockaddr = struct.pack("=HH4s8x", socket.AF_INET, 0, packed)
    else:
        sockaddr = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, packed, 0)
    return sockaddr.ljust(_SOCKADDR_STORAGE, b"\0")


def _receive_joined_groups_only(sock: socket.socket, family: int) -> None:
    level, option = (
        (socket.IPPROTO_IP, IP_MULTICAST_ALL)
        if family == socket.AF_INET
        else (socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL)
    )
    try:
        sock.setsockopt(level, option, 0)
    except OSError as exc:
        if exc.errno != errno.ENOPROTOOPT:  # a kernel before 4.20 (IPv6): nothing to turn off
            raise


# --- checking and resolving input ----------------------------------------------------------


def _families(sock: socket.socket, action: str) -> tuple[int, ...]:
    """The IP families ``sock`` sends and receives: a dual-stack IPv6 socket has both."""
    if sock.fileno() < 0:
        raise ClosedResourceError(f"{action}: the socket is closed")
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise AddressError(f"{action}: multicast needs an IPv4 or IPv6 socket")
    if sock.type not in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        raise SocketkitError(f"{action}: multicast needs a datagram (UDP) socket")
    if sock.family == socket.AF_INET:
        return (socket.AF_INET,)
    try:
        v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    except OSError as exc:
        raise translate_os_error(exc, action) from exc
    return (socket.AF_INET6,) if v6only else (socket.AF_INET6, socket.AF_INET)


def _kind(families: tuple[int, ...]) -> str:
    if len(families) == 2:
        return "dual-stack"
    return "IPv4" if families == (socket.AF_INET,) else "IPv6 only"


def _ip(text: str, action: str, what: str) -> _IPAddress:
    if not isinstance(text, str):
        raise AddressError(f"{action}: {what}expected an address string, not {text!r}")
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise AddressError(f"{action}: {what}not an IP address") from None


def _interface(
    sock: socket.socket,
    families: tuple[int, ...],
    interface: InterfaceLike,
    action: str,
    against: str,
) -> _Interface:
    """Resolve ``interface``; an address must be of one of ``families`` (else: ``against``)."""
    if isinstance(interface, bool) or not isinstance(interface, (int, str)):
        raise AddressError(f"{action}: interface must be a name, an index or an address")
    if isinstance(interface, str) and interface.isascii() and interface.isdigit():
        interface = int(interface)
    if isinstance(interface, int):
        if interface < 1:
            raise AddressError(f"{action}: no interface with index {interface}")
        return _Interface(index=interface)
    text = interface.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return _Interface(index=_index_of_name(sock, text, action))
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    if family not in families:
        raise AddressError(
            f"{action}: interface {text} is an IPv{address.version} address but {against}"
        )
    if isinstance(address, ipaddress.IPv4Address):
        # ip_mreqn and ip_mreq_source take the address itself; the kernel finds the device.
        return _Interface(address=address.packed, family=family)
    if address.scope_id:
        index = _interface(sock, families, address.scope_id, action, against).index
    else:
        index = _index_of_ipv6(sock, address, action)
    return _Interface(index=index, family=family)


def _index_of_name(sock: socket.socket, name: str, action: str) -> int:
    encoded = name.encode("utf-8", "surrogateescape")
    if not encoded or len(encoded) >= IFNAMSIZ or b"\0" in encoded:
        raise AddressError(f"{action}: no interface named {name!r}")
    request = struct.pack(f"{IFNAMSIZ}si", encoded, 0)
    try:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, request)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise AddressError(f"{action}: no interface named {name!r}") from exc
        raise translate_os_error(exc, action) from exc
    index: int = struct.unpack_from("i", answer, IFNAMSIZ)[0]
    return index


def _index_of_ipv6(sock: socket.socket, address: ipaddress.IPv6Address, action: str) -> int:
    """The index of the one interface that has ``address`` (/proc/net/if_inet6 lists them)."""
    if not _in_this_namespace(sock):
        raise AddressError(
            f"{action}: the socket belongs to another network namespace than this thread;"
            " name the interface or give its index"
        )
    wanted = address.packed.hex()
    found: set[int] = set()
    try:
        with open(_IF_INET6, encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == wanted:
                    found.add(int(fields[1], 16))
    except OSError as exc:
        raise translate_os_error(exc, f"{action}: reading {_IF_INET6}") from exc
    if not found:
        raise AddressError(f"{action}: no interface has the address {address}")
    if len(found) > 1:
        raise AddressError(
            f"{action}: the address {address} is on several interfaces; name one instead"
        )
    return found.pop()


def _in_this_namespace(sock: socket.socket) -> bool:
    """Whether ``sock`` lives in the calling thread's network namespace (``SIOCGSKNS``).

    Unknown (an old kernel, or no CAP_NET_ADMIN for the ioctl) counts as yes.
    """
    try:
        namespace = fcntl.ioctl(sock.fileno(), SIOCGSKNS, 0)
    except OSError:
        return True
    try:
        return os.fstat(namespace).st_ino == os.stat(_THREAD_NAMESPACE).st_ino
    except OSError:
        return True
    finally:
        os.close(namespace)


# --- kernel refusals -----------------------------------------------------------------------


def _translate(
    exc: OSError,
    action: str,
    interface: InterfaceLike | None,
    resolved: _Interface | None,
    *,
    membership: str | None = None,
    with_source: bool = False,
) -> SocketkitError:
    code = exc.errno
    if code == errno.ENODEV or (code == errno.EADDRNOTAVAIL and membership is None):
        # ENODEV: no device with that index or address, or no route to the group when the
        # kernel had to choose; EADDRNOTAVAIL from IP_MULTICAST_IF: no local such address.
        if interface is None and (resolved is None or not (resolved.index or resolved.by_address)):
            return AddressError(
                f"{action}: no route to the group; name the interface (interface=...)"
            )
        if resolved is not None and resolved.by_address:
            shown = socket.inet_ntop(socket.AF_INET, resolved.address)
            return AddressError(f"{action}: no interface has the address {shown}")
        if resolved is not None and resolved.index:
            return AddressError(f"{action}: no interface with index {resolved.index}")
    # A second join of the group: EADDRINUSE; of a source already in its list: EADDRNOTAVAIL
    # (net/ipv4/igmp.c and net/ipv6/mcast.c, ``ip_mc_source`` / ``ip6_mc_source``).
    if membership == "join" and (
        code == errno.EADDRINUSE or (code == errno.EADDRNOTAVAIL and with_source)
    ):
        return SocketkitError(f"{action}: already a member of this group there")
    if membership == "leave" and code == errno.EADDRNOTAVAIL:
        return SocketkitError(f"{action}: not a member of this group there")
    if membership == "join" and code == errno.ENOBUFS:
        return SocketkitError(
            f"{action}: the kernel's limit of memberships or sources per socket is reached"
            " (net.ipv4.igmp_max_memberships, igmp_max_msf; net.ipv6.mld_max_msf)"
        )
    return translate_os_error(exc, action)
