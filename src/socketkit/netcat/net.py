"""Opening sockets for netcat sessions: connect (with source address and timeout), UDP and
TCP/Unix listeners, and the address text shown to users."""

from __future__ import annotations

import errno
import socket
import time

from .._addr import Address, format_sockaddr, resolve
from .._connect_common import HAPPY_EYEBALLS_DELAY, connect_failure
from .._errors import (
    AddressError,
    ConnectionRefused,
    PermissionDenied,
    SocketkitError,
    SocketkitTimeout,
    translate_os_error,
)
from .._sockets import DEFAULT_BACKLOG, bound_unix_socket, open_listeners
from .options import NetcatOptions

__all__ = ["dial", "open_tcp_listeners", "open_udp_listener", "shown_target"]


def _family(opts: NetcatOptions) -> int:
    return {4: socket.AF_INET, 6: socket.AF_INET6}.get(opts.family, socket.AF_UNSPEC)


def shown_target(opts: NetcatOptions) -> str:
    if opts.unix_path is not None:
        return format_sockaddr(opts.unix_path)
    return str(Address(opts.host, opts.port))


def dial(
    opts: NetcatOptions, *, port: int | None = None, timeout: float | None = None
) -> socket.socket:
    """A connected, blocking socket to ``opts``' target (``port`` overrides, for ``-z``).

    Addresses are tried in resolver order (RFC 6724, families interleaved, RFC 8305 §4); TCP
    without a source address races them (Happy Eyeballs), the rest tries one after another.

    Raises:
        ResolutionError: the host did not resolve. ConnectionRefused: refused everywhere.
        ConnectTimeout: ``timeout`` (default ``opts.connect_timeout``) ran out.
        PermissionDenied / SocketkitError: binding the source address failed.
    """
    kind = socket.SOCK_DGRAM if opts.udp else socket.SOCK_STREAM
    timeout = opts.connect_timeout if timeout is None else timeout
    if opts.unix_path is not None:
        return _dial_unix(opts.unix_path, kind, timeout)
    target = Address(opts.host, opts.port if port is None else port)
    infos = resolve(target, type=kind, family=_family(opts), numeric=opts.numeric)
    failures: list[tuple[str, BaseException]] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    if kind == socket.SOCK_STREAM and opts.source_host is None and opts.source_port is None:
        # Happy Eyeballs (RFC 8305), as the library's connect: a dead first address costs
        # 250 ms, not a whole connect timeout (nc and ncat try one address after another).
        # Imported here: that module pulls in ssl, which plain sessions do not need.
        from .._sync.connect import happy_eyeballs

        sock = happy_eyeballs(str(target), infos, deadline, HAPPY_EYEBALLS_DELAY, None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    for family, sockaddr in infos:
        where = format_sockaddr(sockaddr)
        sock = socket.socket(family, kind)
        try:
            bind_source(sock, opts, family)
            if kind == socket.SOCK_DGRAM:
                _multicast_options(sock, opts)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                sock.close()
                raise connect_failure(str(target), failures, timed_out=True)
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            sock.settimeout(None)
            if kind == socket.SOCK_STREAM and family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            sock.close()
            raise connect_failure(str(target), failures, timed_out=True) from None
        except SocketkitError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            failures.append((where, exc))
    raise connect_failure(str(target), failures, timed_out=False)


def _dial_unix(path: str, kind: int, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, kind)
    where = format_sockaddr(path)
    try:
        if kind == socket.SOCK_DGRAM:
            # A datagram peer can only answer an address: take an abstract one the kernel
            # picks (autobind), which needs no file and no cleanup. nc.openbsd binds a
            # temporary file in /tmp for the same reason.
            sock.bind("")
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
    except TimeoutError as exc:
        sock.close()
        raise SocketkitTimeout(f"cannot connect to {where}: timed out") from exc
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise ConnectionRefused(f"cannot connect to {where}: {exc.strerror}") from exc
        raise translate_os_error(exc, f"connect to {where}") from exc
    return sock


def _multicast_options(sock: socket.socket, opts: NetcatOptions) -> None:
    """``connect -u --multicast-*``: set before connect(), so the interface named also picks
    the route to the group (a host with no route for it can still send out of IFACE)."""
    if (opts.multicast_ttl, opts.multicast_loop, opts.multicast_interface) == (None, None, None):
        return
    from .._multicast import set_options

    set_options(
        sock,
        ttl=opts.multicast_ttl,
        loopback=opts.multicast_loop,
        interface=opts.multicast_interface,
    )


def bind_source(sock: socket.socket, opts: NetcatOptions, family: int) -> None:
    """Bind ``sock`` to ``-s``/``-p`` (SO_REUSEADDR), if given."""
    if opts.source_host is None and opts.source_port is None:
        return
    host = opts.source_host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    port = opts.source_port or 0
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        infos = socket.getaddrinfo(host, port, family, sock.type, 0, socket.AI_PASSIVE)
        sock.bind(infos[0][4])
    except socket.gaierror as exc:
        raise AddressError(f"bad source address {host!r} for this family: {exc.strerror}") from exc
    except OSError as exc:
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermissionDenied(f"cannot bind source {where}: permission denied") from exc
        raise translate_os_error(exc, f"bind source {where}") from exc


def _listen_address(opts: NetcatOptions) -> Address:
    if opts.unix_path is not None:
        return Address(path=opts.unix_path)
    host = opts.host
    if host is None and opts.family == 4:
        host = "0.0.0.0"
    elif host is None and opts.family == 6:
        host = "::"
    return Address(host, opts.port)


def open_tcp_listeners(opts: NetcatOptions) -> list[socket.socket]:
    """Listening TCP (or Unix stream) sockets for ``listen``.

    Raises:
        PermissionDenied: privileged port as non-root. SocketkitError: address in use, ...
    """
    return open_listeners(
        _listen_address(opts),
        backlog=DEFAULT_BACKLOG,
        family=_family(opts),
        numeric=opts.numeric,
    )


def open_udp_listener(opts: NetcatOptions) -> socket.socket:
    """One bound UDP socket for ``listen -u`` (dual-stack ``[::]`` when no host is given)."""
    address = _listen_address(opts)
    if address.path is not None:
        return bound_unix_socket(address.path, socket.SOCK_DGRAM)
    candidates: list[tuple[int, tuple[object, ...]]]
    if address.host is None:
        candidates = [
            (socket.AF_INET6, ("::", address.port)),
            (socket.AF_INET, ("0.0.0.0", address.port)),
        ]
    else:
        candidates = resolve(
            address,
            type=socket.SOCK_DGRAM,
            family=_family(opts),
            numeric=opts.numeric,
            passive=True,
        )
    last: BaseException | None = None
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(
                    socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if address.host is None else 1
                )
            sock.bind(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            where = format_sockaddr(sockaddr)
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(
                    f"cannot listen on {where}: permission denied (ports below 1024 need root "
                    "or CAP_NET_BIND_SERVICE; pick a port >= 1024)"
                ) from exc
            if exc.errno == errno.EADDRINUSE:
                raise SocketkitError(f"cannot listen on {where}: address already in use") from exc
            last = translate_os_error(exc, f"listen on {where}")
    assert last is not None
    raise last
