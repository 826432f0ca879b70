"""Socket creation shared by the sync and asyncio backends: listeners, options, Unix paths."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from ._addr import Address, format_sockaddr, resolve
from ._errors import AddressError, PermissionDenied, SocketkitError, translate_os_error

#: Listen backlog. Large, because an overflowing accept queue drops SYNs that retry only after
#: a second (docs/design.md, measured trap 4); the kernel caps it at net.core.somaxconn (4096 here).
DEFAULT_BACKLOG = 4096


def set_stream_options(sock: socket.socket) -> None:
    """TCP_NODELAY on TCP sockets: socketkit writes whole messages, so Nagle only adds delay
    (trio and asyncio make the same choice)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def open_listeners(
    address: Address,
    *,
    backlog: int = DEFAULT_BACKLOG,
    reuse_port: bool = False,
    family: int = socket.AF_UNSPEC,
    numeric: bool = False,
) -> list[socket.socket]:
    """Bound, listening, blocking sockets for ``address``.

    * ``unix:/path``: one AF_UNIX socket; a stale socket file (nobody listening) is replaced.
    * no host: one dual-stack ``[::]`` socket (IPv4 too, via V6ONLY=0), or ``0.0.0.0``
      where IPv6 is missing.
    * a host name: one socket per resolved address (``localhost`` → 127.0.0.1 and ::1), of
      ``family`` only when one is given (an address of the other family does not resolve).

    Raises:
        PermissionDenied: a privileged port without the privilege (the message says so).
        SocketkitError: the address is in use, not local, etc. (one line, with the address).
    """
    if address.path is not None:
        return [_unix_listener(address.path, backlog)]
    if address.host is None:
        try:
            return [_inet_listener(socket.AF_INET6, ("::", address.port), backlog, reuse_port,
                                   dual=True)]  # fmt: skip
        except (OSError, SocketkitError):
            return [_inet_listener(socket.AF_INET, ("0.0.0.0", address.port), backlog, reuse_port)]
    listeners: list[socket.socket] = []
    try:
        port = address.port
        for fam, sockaddr in resolve(address, passive=True, family=family, numeric=numeric):
            if port:
                sockaddr = (sockaddr[0], port, *sockaddr[2:])
            sock = _inet_listener(fam, sockaddr, backlog, reuse_port)
            listeners.append(sock)
            # With port 0, bind the other families to the port the kernel picked first.
            port = port or sock.getsockname()[1]
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def _inet_listener(
    family: int, sockaddr: tuple[object, ...], backlog: int, reuse_port: bool, *, dual: bool = False
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, format_sockaddr(sockaddr)) from exc
    return sock


def _unix_listener(path: str, backlog: int) -> socket.socket:
    sock = bound_unix_socket(path, socket.SOCK_STREAM)
    try:
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, format_sockaddr(path)) from exc
    return sock


def bound_unix_socket(path: str, kind: int) -> socket.socket:
    """An AF_UNIX socket of ``kind`` (stream or datagram) bound at ``path``; a stale socket
    file (nobody bound to it any more) is replaced, a live one is an error."""
    if not path.startswith("\0"):
        _remove_stale_unix_socket(path, kind)
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, format_sockaddr(path)) from exc
    return sock


def _remove_stale_unix_socket(path: str, kind: int) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        return
    if not stat.S_ISSOCK(mode):
        raise AddressError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, kind)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # a leftover of a dead server
    except OSError:
        pass
    else:
        raise SocketkitError(f"cannot listen on unix:{path}: another server is listening there")
    finally:
        probe.close()


def _bind_error(exc: OSError, where: str) -> SocketkitError:
    if where.startswith("unix:/") or where.startswith("unix:."):
        folder = os.path.dirname(os.path.abspath(where.removeprefix("unix:"))) or "/"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.isdir(folder):
            return AddressError(f"cannot listen on {where}: no such directory {folder}")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return PermissionDenied(
                f"cannot listen on {where}: cannot create the socket file in {folder}: "
                f"{(exc.strerror or str(exc)).lower()}"
            )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(
            f"cannot listen on {where}: permission denied (ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE; pick a port >= 1024)"
        )
    if exc.errno == errno.EADDRINUSE:
        return SocketkitError(f"cannot listen on {where}: address already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return AddressError(f"cannot listen on {where}: not an address of this machine")
    return translate_os_error(exc, f"listen on {where}")


def cleanup_unix_path(sock: socket.socket) -> None:
    """Remove the filesystem entry of a Unix listener we created."""
    if sock.family != socket.AF_UNIX:
        return
    try:
        name = sock.getsockname()
    except OSError:
        return
    if isinstance(name, str) and name and not name.startswith("\0"):
        with contextlib.suppress(OSError):
            os.unlink(name)
