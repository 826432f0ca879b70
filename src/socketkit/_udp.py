"""What the sync and asyncio datagram sockets share: :class:`Datagram`, socket creation from
the address syntax of streams, destination resolution, ancillary-data parsing and the mapping
of ``OSError`` to the socketkit error tree for datagrams (``EMSGSIZE`` with its limit).

Address syntax (as streams): ``host:port``, ``[v6]:port``, ``:port``, a port ``int``,
``unix:/path`` and ``unix:@abstract`` (Unix datagram sockets).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ._addr import Address, AddressLike, format_sockaddr, parse_address, resolve
from ._errors import (
    AddressError,
    ClosedResourceError,
    ConnectionRefused,
    DatagramTooLarge,
    PermissionDenied,
    SocketkitError,
    translate_os_error,
)
from ._sockets import bound_unix_socket

__all__ = [
    "DEFAULT_MAX_SIZE",
    "IPV4_MAX_PAYLOAD",
    "IPV6_MAX_PAYLOAD",
    "Datagram",
    "Destinations",
    "open_udp_socket",
]

#: ``max_size`` default: the largest UDP payload any IP datagram can carry (65535 minus the
#: 8-byte UDP header is 65527 for IPv6, less for IPv4), so a UDP datagram is never cut by
#: default; a Unix datagram can be longer, and is then reported as ``truncated``.
DEFAULT_MAX_SIZE = 65535
#: The largest UDP payload over IPv4: 65535 (IPv4 total length) - 20 (IP header) - 8 (UDP).
IPV4_MAX_PAYLOAD = 65507
#: The largest UDP payload over IPv6 without jumbograms: 65535 (payload length) - 8 (UDP).
IPV6_MAX_PAYLOAD = 65527
#: Linux ``SO_RXQ_OVFL`` (asm-generic/socket.h): each datagram carries the socket's count of
#: receive-queue drops as ancillary data. Python's ``socket`` module does not export it.
SO_RXQ_OVFL = 40
#: Linux ``IP_MTU`` (linux/in.h) and ``IPV6_MTU`` (linux/in6.h): the path MTU the kernel
#: knows for a connected socket. Not exported by Python's ``socket`` module.
IP_MTU = 14
IPV6_MTU = 24
#: Linux ``IP_MTU_DISCOVER``/``IPV6_MTU_DISCOVER`` and their ``*_PMTUDISC_DO`` value: set the
#: don't-fragment bit and never fragment locally, so a datagram over the path MTU fails with
#: EMSGSIZE instead of going out in fragments (ip(7), ipv6(7)). Not exported by Python 3.11.
IP_MTU_DISCOVER = 10
IPV6_MTU_DISCOVER = 23
PMTUDISC_DO = 2
#: Bytes of IP + UDP header under the path MTU: 20 + 8 (IPv4), 40 + 8 (IPv6).
_IPV4_OVERHEAD = 28
_IPV6_OVERHEAD = 48
#: A Unix datagram fails with EMSGSIZE above SO_SNDBUF minus this (net/unix/af_unix.c,
#: ``unix_dgram_sendmsg``: ``len > sk->sk_sndbuf - 32``).
_UNIX_SNDBUF_RESERVE = 32
#: Room for one SO_RXQ_OVFL control message (a 32-bit counter).
ANCILLARY_SIZE = socket.CMSG_SPACE(4)
#: Resolved destinations kept per socket (``send(to="name:port")``): bounded, so a program
#: sending to many addresses does not grow memory; the oldest entry is dropped first.
_DESTINATION_CACHE = 256


#: A datagram payload as ``send`` takes it.
Buffer: TypeAlias = "bytes | bytearray | memoryview"


@dataclass(frozen=True, slots=True)
class Datagram:
    """One received datagram.

    Attributes:
        data: the payload (at most the socket's ``max_size`` bytes).
        address: the sender as the kernel gives it: ``(host, port)`` (IPv4),
            ``(host, port, flowinfo, scope_id)`` (IPv6), ``"/path"`` or ``b"\\0name"`` (Unix),
            ``None`` for a Unix sender that is not bound to a name. Pass it back to ``send``
            as ``to`` to reply.
        truncated: the datagram was longer than ``max_size`` and ``data`` is only its start
            (the kernel's ``MSG_TRUNC``); the rest is gone.
        dropped_before: datagrams the kernel dropped from this socket's receive queue (it was
            full) since the previous datagram this socket received (``SO_RXQ_OVFL``); ``None``
            where the kernel does not tell.
    """

    data: bytes
    address: Any
    truncated: bool = False
    dropped_before: int | None = None

    @property
    def peer(self) -> str:
        """The sender formatted like stream addresses: ``127.0.0.1:5000``, ``[::1]:5000``,
        ``unix:/path``, ``unix:@name`` (``unix:`` for an unbound Unix sender)."""
        return format_sockaddr("" if self.address is None else self.address)


_set_data, _set_address, _set_truncated, _set_dropped = (
    Datagram.__dict__[name].__set__ for name in ("data", "address", "truncated", "dropped_before")
)
_new_object = object.__new__


def make_datagram(
    data: bytes, address: Any, truncated: bool, dropped_before: int | None
) -> Datagram:
    """``Datagram(data, address, truncated, dropped_before)`` without the frozen dataclass's
    ``__init__`` (which sets each field through ``object.__setattr__`` by name): the slots are
    set through their descriptors, about twice as fast, for the per-datagram receive path."""
    datagram: Datagram = _new_object(Datagram)
    _set_data(datagram, data)
    _set_address(datagram, address)
    _set_truncated(datagram, truncated)
    _set_dropped(datagram, dropped_before)
    return datagram


def open_udp_socket(
    local: AddressLike | None,
    remote: AddressLike | None,
    *,
    family: int | None,
    reuse_port: bool,
    reuse_address: bool = False,
    broadcast: bool,
    receive_buffer: int | None,
    send_buffer: int | None,
    dont_fragment: bool = False,
) -> tuple[socket.socket, bool]:
    """A bound (and, with ``remote``, connected) blocking datagram socket.

    Returns ``(socket, owns_path)``: ``owns_path`` is true when we created a Unix socket file
    that closing should remove.

    * ``unix:/path`` / ``unix:@name`` (local or remote): an ``AF_UNIX`` datagram socket. A
      stale socket file at the local path (nobody bound there any more) is replaced. Without
      a local address, the socket is bound to a kernel-chosen abstract name (Linux autobind),
      so the peer can reply.
    * a local address without a host (``:port``, a port number, ``None``) and no remote:
      one dual-stack ``[::]`` socket (IPv4 too), or ``0.0.0.0`` where IPv6 is missing.
    * otherwise the family of the local host or of the remote's first resolved address.

    Raises:
        AddressError: bad syntax, a Unix address mixed with an IP one, or an unresolvable name.
        PermissionDenied: a privileged port without the privilege.
        SocketkitError: the address is in use, the remote is unreachable, etc.
    """
    here = parse_address(local) if local is not None else None
    there = parse_address(remote) if remote is not None else None
    if (here is not None and here.is_unix) or (there is not None and there.is_unix):
        if (here is not None and not here.is_unix) or (there is not None and not there.is_unix):
            raise AddressError(
                f"cannot mix a Unix and an IP address (local {here}, remote {there})"
            )
        if family not in (None, socket.AF_UNIX):
            raise AddressError(f"a unix: address needs family AF_UNIX, not {family!r}")
        if dont_fragment:
            raise AddressError("dont_fragment is for UDP over IP, not Unix datagram sockets")
        return _open_unix(here, there, send_buffer, receive_buffer)
    want = socket.AF_UNSPEC if family is None else int(family)
    if want not in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
        raise AddressError(f"family must be AF_INET, AF_INET6 or AF_UNIX, not {family!r}")
    target: tuple[int, tuple[Any, ...]] | None = None
    if there is not None:
        if not there.host:
            raise AddressError(f"remote address {there} has no host")
        if there.port == 0:
            raise AddressError(f"remote address {there} has no port")
        target = resolve(there, type=socket.SOCK_DGRAM, family=want)[0]
        want = target[0]
    bind_to: tuple[Any, ...] | None = None
    dual = False
    if here is not None and here.host is not None:
        infos = resolve(here, type=socket.SOCK_DGRAM, family=want, passive=True)
        fam, bind_to = infos[0]
        want = fam
    elif want == socket.AF_UNSPEC:
        want, dual = (socket.AF_INET6, True) if socket.has_ipv6 else (socket.AF_INET, False)
    port = here.port if here is not None else 0
    if bind_to is None:
        bind_to = ("::", port, 0, 0) if want == socket.AF_INET6 else ("0.0.0.0", port)
    try:
        return _open_inet(
            want, bind_to, target, dual=dual, reuse_port=reuse_port,
            reuse_address=reuse_address, broadcast=broadcast, send_buffer=send_buffer,
            receive_buffer=receive_buffer, dont_fragment=dont_fragment,
        ), False  # fmt: skip
    except SocketkitError as exc:
        cause = exc.__cause__
        if not dual or not (
            isinstance(cause, OSError) and cause.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)
        ):
            raise  # (a port in use is named as [::]:port, the socket that was asked for)
    # No IPv6 here after all (a kernel booted with ipv6.disable=1): plain IPv4.
    return _open_inet(
        socket.AF_INET, ("0.0.0.0", port), target, dual=False, reuse_port=reuse_port,
        reuse_address=reuse_address, broadcast=broadcast, send_buffer=send_buffer,
        receive_buffer=receive_buffer, dont_fragment=dont_fragment,
    ), False  # fmt: skip


def _set_buffers(sock: socket.socket, send_buffer: int | None, receive_buffer: int | None) -> None:
    for option, value, name in (
        (socket.SO_SNDBUF, send_buffer, "send_buffer"),
        (socket.SO_RCVBUF, receive_buffer, "receive_buffer"),
    ):
        if value is None:
            continue
        if value <= 0:
            raise ValueError(f"{name} must be positive, not {value}")
        sock.setsockopt(socket.SOL_SOCKET, option, value)


def _open_inet(
    family: int,
    bind_to: tuple[Any, ...],
    target: tuple[int, tuple[Any, ...]] | None,
    *,
    dual: bool,
    reuse_port: bool,
    reuse_address: bool = False,
    broadcast: bool,
    send_buffer: int | None,
    receive_buffer: int | None,
    dont_fragment: bool,
) -> socket.socket:
    where = format_sockaddr(bind_to)
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise translate_os_error(exc, f"create a UDP socket for {where}") from exc
    try:
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            _set_buffers(sock, send_buffer, receive_buffer)
            enable_drop_counter(sock)
            if dont_fragment:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DO)
                if family == socket.AF_INET or dual:  # (IPv4 on a dual-stack socket too)
                    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DO)
        except OSError as exc:
            raise translate_os_error(exc, f"set up the UDP socket for {where}") from exc
        try:
            sock.bind(bind_to)
        except OSError as exc:
            raise bind_error(exc, where) from exc
        if target is not None:
            there = format_sockaddr(target[1])
            try:
                sock.connect(target[1])
            except OSError as exc:
                raise translate_os_error(exc, f"connect the UDP socket to {there}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _open_unix(
    here: Address | None,
    there: Address | None,
    send_buffer: int | None,
    receive_buffer: int | None,
) -> tuple[socket.socket, bool]:
    owns_path = False
    if here is not None:
        assert here.path is not None
        sock = bound_unix_socket(here.path, socket.SOCK_DGRAM)
        owns_path = not here.path.startswith("\0")
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        try:
            if here is None:
                sock.bind("")  # Linux autobind: a unique abstract name, so replies can come back
            _set_buffers(sock, send_buffer, receive_buffer)
        except OSError as exc:
            raise translate_os_error(exc, "set up the Unix datagram socket") from exc
        if there is not None:
            assert there.path is not None
            try:
                sock.connect(there.path)
            except OSError as exc:
                raise translate_os_error(
                    exc, f"connect the Unix datagram socket to {there}"
                ) from exc
    except BaseException:
        if owns_path:
            cleanup_path(sock)
        sock.close()
        raise
    return sock, owns_path


def bind_error(exc: OSError, where: str) -> SocketkitError:
    """The error for a failed ``bind`` of a datagram socket to ``where``."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(
            f"cannot bind to {where}: permission denied (ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE; pick a port >= 1024)"
        )
    if exc.errno == errno.EADDRINUSE:
        return SocketkitError(
            f"cannot bind to {where}: address already in use (another socket is bound "
            "there: pick another port, or share it: reuse_address/reuse_port in Python)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return AddressError(f"cannot bind to {where}: not an address of this machine")
    return translate_os_error(exc, f"bind to {where}")


def enable_drop_counter(sock: socket.socket) -> bool:
    """Ask the kernel to attach its receive-queue drop count to each datagram (SO_RXQ_OVFL).
    False where the option does not exist (then ``dropped_before`` is ``None``)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    except OSError:
        return False
    return True


def cleanup_path(sock: socket.socket) -> None:
    """Remove the socket file of a Unix datagram socket bound to a path we created."""
    try:
        name = sock.getsockname()
    except OSError:
        return
    if isinstance(name, str) and name and not name.startswith("\0"):
        with contextlib.suppress(OSError):
            os.unlink(name)


_SOL_SOCKET = socket.SOL_SOCKET
_NATIVE = sys.byteorder
_from_bytes = int.from_bytes


class DropCounter:
    """Turns the kernel's cumulative SO_RXQ_OVFL counter into per-datagram counts.

    With SO_RXQ_OVFL on, Linux attaches the counter only once it is non-zero
    (``sock_recv_drops``): a datagram without it means no drop so far.
    """

    __slots__ = ("enabled", "total")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.total = 0

    def update(self, ancdata: list[tuple[int, int, bytes]]) -> int | None:
        """``dropped_before`` for a datagram that came with ``ancdata``.

        Once the socket has dropped anything, every datagram carries the counter: this runs
        per datagram, so the common case (the counter is the only control message, unchanged)
        is kept to a few operations."""
        if not self.enabled:
            return None
        for level, kind, value in ancdata:
            if kind == SO_RXQ_OVFL and level == _SOL_SOCKET and len(value) == 4:
                count = _from_bytes(value, _NATIVE)
                if count == self.total:
                    return 0
                dropped: int = (count - self.total) & 0xFFFFFFFF  # a u32 in the kernel: wraps
                self.total = count
                return dropped
        return 0


def ipv4_mapped(address: Any) -> bool:
    """True for an IPv4-mapped IPv6 sockaddr (``::ffff:a.b.c.d``): the address of an IPv4
    peer of a dual-stack socket; datagrams to it go out over IPv4, with IPv4's limits."""
    host = address[0] if isinstance(address, tuple) and address else ""
    return isinstance(host, str) and host.lower().startswith("::ffff:") and "." in host


def _to_ipv4(sock: socket.socket, to: Any) -> bool:
    """True when a dual-stack IPv6 socket sends to an IPv4 peer (``to``, or its remote)."""
    address = to
    if address is None:
        try:
            address = sock.getpeername()
        except OSError:
            return False
    return ipv4_mapped(address)


def too_large(
    sock: socket.socket, size: int, action: str = "send", to: Any = None
) -> DatagramTooLarge:
    """The :class:`DatagramTooLarge` for an ``EMSGSIZE`` on ``sock`` sending ``size`` bytes
    (to ``to``, or to the connected peer): the limit is the protocol's maximum payload when
    ``size`` is above it (IPv4's for an IPv4 peer of a dual-stack socket), else the path MTU
    the kernel knows for a connected socket (``IP_MTU``/``IPV6_MTU``) minus the headers."""
    family = sock.family
    if family == socket.AF_UNIX:
        try:
            limit = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - _UNIX_SNDBUF_RESERVE
        except OSError:
            limit = 0
        return DatagramTooLarge(size, limit, "the socket's send buffer (SO_SNDBUF - 32)")
    v6 = family == socket.AF_INET6 and not _to_ipv4(sock, to)
    maximum = IPV6_MAX_PAYLOAD if v6 else IPV4_MAX_PAYLOAD
    if size > maximum and action.startswith("send"):
        over = "IPv6" if v6 else "IPv4"
        return DatagramTooLarge(size, maximum, f"the largest UDP payload over {over}")
    try:
        if family == socket.AF_INET6:  # (an IPv4 peer of a dual-stack socket too)
            mtu = sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)
        else:
            mtu = sock.getsockopt(socket.IPPROTO_IP, IP_MTU)
    except OSError:  # not connected: the kernel keeps no path MTU for "any destination"
        return DatagramTooLarge(size, maximum, "the kernel refused it (EMSGSIZE)")
    limit = mtu - (_IPV6_OVERHEAD if v6 else _IPV4_OVERHEAD)
    reason = f"the path MTU ({mtu}) minus the IP and UDP headers"
    if not action.startswith("send"):  # a pending ICMP "fragmentation needed", reported late
        return DatagramTooLarge(
            0,
            limit,
            reason,
            f"{action}: an earlier datagram was too large for the path: the limit is {limit} "
            f"bytes ({reason})",
        )
    return DatagramTooLarge(size, limit, reason)


def datagram_error(
    sock: socket.socket,
    exc: OSError,
    action: str,
    size: int = 0,
    *,
    to: Any = None,
    remote: str | None = None,
) -> SocketkitError:
    """Translate an ``OSError`` of a datagram socket (one place): EMSGSIZE with its limit,
    EBADF as closed, ICMP port unreachable on a connected socket and dead Unix destinations
    as ConnectionRefused, a missing Unix destination as AddressError, the rest as for streams.
    ``to`` is the kernel address a send went to (``None``: the connected remote, formatted
    in ``remote``: the kernel forgets it when a Unix peer closes)."""
    code = exc.errno
    if code == errno.EMSGSIZE:
        return too_large(sock, size, action, to)
    if code == errno.EBADF or sock.fileno() < 0:
        return ClosedResourceError(f"{action}: the datagram socket is closed")
    unix = sock.family == socket.AF_UNIX
    there = remote
    if to is not None:
        there = format_sockaddr(to)
    if unix and code == errno.ENOENT and there is not None:
        return AddressError(f"{action}: no socket at {there}")
    if code == errno.ECONNREFUSED:
        if unix and to is not None:
            return ConnectionRefused(f"{action}: nothing is bound at {there} (a stale socket file)")
        if unix:
            return ConnectionRefused(
                f"{action}: {there or 'the peer'} is closed (nothing receives there)"
            )
        return ConnectionRefused(
            f"{action}: {there} refused an earlier datagram: nothing is "
            "listening there (ICMP port unreachable)"
        )
    if code == errno.EACCES and not unix and action.startswith("send"):
        # udp_sendmsg: a broadcast route without SO_BROADCAST (ip(7)); a firewall says EPERM
        where = f"{action} ({there})" if there else action
        return PermissionDenied(
            f"{where}: permission denied: a broadcast address needs a socket opened with "
            "broadcast=True"
        )
    if code == errno.ENOTCONN and unix:
        return ClosedResourceError(f"{action}: the Unix datagram peer went away")
    return translate_os_error(exc, action if there is None else f"{action} ({there})")


def _is_numeric(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host.partition("%")[0])
            return True
    return False


def needs_lookup(value: AddressLike | None) -> bool:
    """True when ``value`` names a host that needs a DNS lookup (not numeric, not Unix)."""
    if value is None or isinstance(value, int):
        return False
    try:
        address = parse_address(value)
    except AddressError:
        return False
    return address.host is not None and not _is_numeric(address.host)


class Destinations:
    """Resolves ``send(to=...)`` values for one socket, with a small bounded cache.

    A kernel sockaddr tuple of the socket's own family goes straight through; an IPv4 target
    on a dual-stack IPv6 socket becomes its IPv4-mapped IPv6 address (``::ffff:a.b.c.d``).
    """

    __slots__ = ("_cache", "_dual", "_family")

    def __init__(self, sock: socket.socket) -> None:
        self._family = sock.family
        self._dual = False
        if sock.family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self._dual = not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        self._cache: dict[Any, Any] = {}

    def lookup(self, to: Any) -> Any:
        """The kernel sockaddr for ``to``. Raises AddressError / ResolutionError."""
        family = self._family
        if family == socket.AF_INET and type(to) is tuple and len(to) == 2:
            return to
        if family == socket.AF_INET6 and type(to) is tuple and len(to) == 4:
            return to
        if family == socket.AF_UNIX and isinstance(to, (str, bytes)):
            if isinstance(to, str):
                if to.startswith("unix:"):
                    return self._cached(to, self._resolve)
                if "/" not in to and _is_inet_address(to):
                    raise AddressError(
                        f"cannot send to {to} from a Unix datagram socket (a Unix destination "
                        "is unix:/path, unix:@name or a file path)"
                    )
            return to
        try:
            return self._cached(to, self._resolve)
        except TypeError as exc:  # unhashable
            raise AddressError(f"not an address: {to!r}") from exc

    def known(self, to: Any) -> Any:
        """The cached sockaddr for ``to``, or ``None`` (nothing is looked up)."""
        try:
            return self._cache.get(to)
        except TypeError:
            return None

    def _cached(self, to: Any, make: Callable[[Any], Any]) -> Any:
        found = self._cache.get(to)
        if found is None:
            found = make(to)
            if len(self._cache) >= _DESTINATION_CACHE:
                del self._cache[next(iter(self._cache))]
            self._cache[to] = found
        return found

    def _resolve(self, to: Any) -> Any:
        address = parse_address(to)
        if self._family == socket.AF_UNIX:
            if address.path is None:
                raise AddressError(f"cannot send to {address} from a Unix datagram socket")
            return address.path
        if address.path is not None:
            raise AddressError(f"cannot send to {address} from a UDP socket")
        if not address.host:
            raise AddressError(f"destination {address} has no host")
        if address.port == 0:
            raise AddressError(f"destination {address} has no port")
        infos = resolve(address, type=socket.SOCK_DGRAM)
        for fam, sockaddr in infos:
            if fam == self._family:
                return sockaddr
        if self._family == socket.AF_INET6 and self._dual:
            for fam, sockaddr in infos:
                if fam == socket.AF_INET:
                    return (f"::ffff:{sockaddr[0]}", sockaddr[1], 0, 0)
        have = "IPv6" if self._family == socket.AF_INET6 else "IPv4"
        raise AddressError(
            f"cannot send to {address}: no {have} address for it on this {have} socket"
        )


def _is_inet_address(text: str) -> bool:
    """True when ``text`` reads as an IP ``host:port`` (not as a file name)."""
    try:
        address = parse_address(text)
    except SocketkitError:
        return False
    return address.path is None and bool(address.host) and address.port > 0


def payload_size(item: Any) -> int:
    """The length in bytes of a batch item (a payload or a ``(payload, address)`` pair)."""
    data = item[0] if type(item) is tuple else item
    return len(memoryview(data).cast("B"))


def prepare_batch(
    destinations: Destinations, items: Sequence[Any], to: Any, connected: bool
) -> tuple[Sequence[Any], Any]:
    """``send_many``'s items and ``to`` with every address resolved to a kernel sockaddr.

    Items without an address of their own are passed through untouched (no copy); they need
    ``to`` or a connected socket.
    """
    if not items:
        raise ValueError("send_many needs at least one datagram")
    default = None if to is None else destinations.lookup(to)
    if not any(type(item) is tuple for item in items):
        if default is None and not connected:
            raise AddressError("send_many: no destination: give to=, or open with remote=")
        return items, default
    out: list[Any] = []
    for item in items:
        if type(item) is tuple:
            data, address = item
            out.append((data, destinations.lookup(address)))
        elif default is None and not connected:
            raise AddressError("send_many: no destination: give to=, or open with remote=")
        else:
            out.append(item)
    return out, default
