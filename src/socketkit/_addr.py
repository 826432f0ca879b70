"""Address strings: ``host:port``, ``[v6addr]:port``, ``:port``, ``port``, ``unix:/path``,
``unix:@abstract``; resolution order (RFC 6724 from getaddrinfo, then RFC 8305 §4 interleaving).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from ._errors import AddressError, ResolutionError

__all__ = [
    "Address",
    "AddressLike",
    "check_port",
    "parse_port",
    "SockAddr",
    "format_sockaddr",
    "interleave_families",
    "parse_address",
    "parse_service",
    "resolve",
]

#: What the public API accepts as an address.
AddressLike: TypeAlias = "str | int | tuple[str, int] | Address"
#: A resolved target: (family, sockaddr) as getaddrinfo returns it.
SockAddr: TypeAlias = "tuple[int, tuple[str, int] | tuple[str, int, int, int] | str]"

UNIX_PREFIX = "unix:"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed, not yet resolved, address.

    ``host`` is ``None`` for "every local address" (listening only); ``path`` is set for Unix
    sockets (an abstract name starts with a NUL byte, written ``unix:@name``).
    """

    host: str | None = None
    port: int = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            shown = "@" + self.path[1:] if self.path.startswith("\0") else self.path
            return UNIX_PREFIX + shown
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"


def check_port(port: int, what: str = "port") -> int:
    """``port`` if it is 0-65535, else AddressError naming ``what``."""
    if not 0 <= port <= 65535:
        raise AddressError(f"{what} {port} out of range: expected 0-65535")
    return port


def parse_port(text: str, original: str | None = None) -> int:
    """A port number from text (``original``: the whole address, for the message).

    Raises:
        AddressError: not a number, or out of range.
    """
    where = "" if original is None or original == text else f" in address {original!r}"
    if not (text.isascii() and text.isdigit()):
        raise AddressError(f"bad port {text!r}{where}: expected a number 0-65535")
    port = int(text)
    if port > 65535:
        raise AddressError(f"port {port} out of range{where}: expected 0-65535")
    return port


def parse_service(text: str, proto: str = "tcp") -> int:
    """A port number, or a service name from the services database (``ssh``, ``http``:
    ``/etc/services``) for ``proto`` (``"tcp"`` or ``"udp"``), as netcat takes them.

    Raises:
        AddressError: neither a port number 0-65535 nor a known service.
    """
    if text.isascii() and text.isdigit():
        return parse_port(text)
    try:
        return socket.getservbyname(text, proto)
    except (OSError, UnicodeError):
        raise AddressError(
            f"bad port {text!r}: not a number 0-65535 nor a {proto} service name known to "
            "this host (/etc/services)"
        ) from None


def parse_address(value: AddressLike, *, default_host: str | None = None) -> Address:
    """Parse ``value`` into an :class:`Address`.

    Args:
        value: ``"host:port"``, ``"[::1]:port"``, ``":port"``, ``"port"``, ``"unix:/path"``,
            ``"unix:@name"``, an ``int`` port, a ``(host, port)`` tuple or an ``Address``.
        default_host: the host used when ``value`` gives only a port (``None``: every address).

    Raises:
        AddressError: bad syntax or a port out of range.
    """
    if isinstance(value, Address):
        return value
    if isinstance(value, bool):
        raise AddressError(f"not an address: {value!r}")
    if isinstance(value, int):
        return Address(default_host, parse_port(str(value), str(value)))
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[0], str) or not isinstance(value[1], int):
            raise AddressError(f"not an address: {value!r}; expected (host, port)")
        return Address(value[0] or default_host, parse_port(str(value[1]), str(value)))
    if not isinstance(value, str):
        raise AddressError(f"not an address: {value!r}")
    text = value.strip()
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        if not path:
            raise AddressError(f"empty Unix socket path in {value!r}")
        if path.startswith("@"):
            path = "\0" + path[1:]
        return Address(path=path)
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise AddressError(f"bad address {value!r}: expected [v6addr]:port")
        return Address(text[1:end] or default_host, parse_port(text[end + 2 :], value))
    if text.isascii() and text.isdigit():
        return Address(default_host, parse_port(text, value))
    host, sep, port = text.rpartition(":")
    if not sep:
        raise AddressError(f"bad address {value!r}: expected host:port, [v6]:port or unix:/path")
    if ":" in host:
        raise AddressError(f"bad address {value!r}: write IPv6 addresses as [v6addr]:port")
    return Address(host or default_host, parse_port(port, value))


def interleave_families(
    infos: Iterable[tuple[int, tuple[object, ...]]],
) -> list[tuple[int, tuple[object, ...]]]:
    """Order resolved addresses for connecting (RFC 8305 §4).

    getaddrinfo already sorts by RFC 6724 preference; keep that order within each family and
    alternate families, starting with the family of the first (most preferred) address, so a
    broken IPv6 path costs one attempt delay, not all of them.
    """
    items = list(infos)
    if not items:
        return []
    first_family = items[0][0]
    first = [i for i in items if i[0] == first_family]
    other = [i for i in items if i[0] != first_family]
    out: list[tuple[int, tuple[object, ...]]] = []
    for index in range(max(len(first), len(other))):
        if index < len(first):
            out.append(first[index])
        if index < len(other):
            out.append(other[index])
    return out


def resolve(
    address: Address,
    *,
    type: int = socket.SOCK_STREAM,  # the getaddrinfo name
    family: int = socket.AF_UNSPEC,
    numeric: bool = False,
    passive: bool = False,
) -> list[tuple[int, tuple[object, ...]]]:
    """Resolve ``address`` (not Unix) to ``[(family, sockaddr), ...]``, interleaved.

    Raises:
        ResolutionError: the name did not resolve (the message says which name and why).
    """
    flags = socket.AI_ADDRCONFIG if address.host not in (None, "localhost") else 0
    if numeric:
        flags |= socket.AI_NUMERICHOST
    if passive:
        flags |= socket.AI_PASSIVE
    try:
        infos = socket.getaddrinfo(address.host, address.port, family, type, 0, flags)
    except socket.gaierror as exc:
        if numeric and exc.errno == socket.EAI_NONAME:
            raise ResolutionError(
                f"{address.host!r} is not a numeric address, and names are not looked up (-n)"
            ) from exc
        raise ResolutionError(f"cannot resolve {address.host!r}: {exc.strerror}") from exc
    except UnicodeError as exc:
        raise ResolutionError(f"cannot resolve {address.host!r}: bad host name") from exc
    seen: set[tuple[int, tuple[object, ...]]] = set()
    unique = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        key = (int(fam), tuple(sockaddr))
        if key not in seen:
            seen.add(key)
            unique.append(key)
    if not unique:
        raise ResolutionError(f"cannot resolve {address.host!r}: no usable address")
    return interleave_families(unique)


def format_sockaddr(sockaddr: object) -> str:
    """``('::1', 80, 0, 0)`` → ``[::1]:80``; ``('1.2.3.4', 80)`` → ``1.2.3.4:80``; Unix paths
    as ``unix:/path`` (``unix:@name`` for abstract, ``unix:`` for unnamed)."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = str(sockaddr[0]), sockaddr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(sockaddr, bytes):
        sockaddr = sockaddr.decode("utf-8", "replace")
    if isinstance(sockaddr, str):
        if sockaddr.startswith("\0"):
            return UNIX_PREFIX + "@" + sockaddr[1:]
        return UNIX_PREFIX + sockaddr
    return str(sockaddr)
