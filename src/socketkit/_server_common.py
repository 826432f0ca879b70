"""What the sync and asyncio servers share: defaults, bound addresses, TLS contexts."""

from __future__ import annotations

import socket
import ssl

from ._addr import Address

#: Seconds ``Server.close()`` lets handlers finish before shutting their connections down.
DEFAULT_GRACE = 5.0
#: Handler threads of the sync server at once: each costs a thread stack and a read buffer, so
#: a flood of clients must not be able to start thousands. More clients wait in the backlog.
DEFAULT_MAX_CONNECTIONS_SYNC = 512
#: Connections the asyncio server runs at once (about 2 KiB each while idle); more wait in the
#: backlog.
DEFAULT_MAX_CONNECTIONS_AIO = 10_000
#: Connections from one IP address at once: one source cannot take every slot (half of them on
#: the sync server, a tenth on asyncio, where sources behind one NAT are more common). A
#: connection over it is closed at once (it cannot wait: the backlog is shared by every source).
DEFAULT_MAX_PER_IP_SYNC = 256
DEFAULT_MAX_PER_IP_AIO = 1_000
#: How long the accept loop backs off after it could not start a session (EMFILE, no thread).
ACCEPT_BACKOFF = 0.1
#: A client that has not finished the TLS handshake in 10 s is stalling or lost.
TLS_HANDSHAKE_TIMEOUT = 10.0


def bound_address(sock: socket.socket) -> Address:
    """The listener's real address (port 0 resolved)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode() if isinstance(name, bytes) else str(name)
        return Address(path=path)
    return Address(str(name[0]), int(name[1]))


class PerIPCounter:
    """Open connections per source IP address, against a bound (``None``: no bound).

    IPv4-mapped IPv6 peers (``::ffff:a.b.c.d``, a dual-stack listener's view of an IPv4 client)
    count as their IPv4 address, so one client cannot double its share. Unix peers have no
    address and are not counted. Not thread-safe: the sync server calls it under its lock.
    """

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    @staticmethod
    def key(peername: object) -> str | None:
        """The counting key of a ``getpeername()`` result (``None`` for Unix peers)."""
        if not isinstance(peername, tuple) or not peername:
            return None
        host = str(peername[0])
        return host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host

    def admit(self, key: str | None) -> bool:
        """Count a new connection from ``key``; ``False`` (and not counted) when over the bound."""
        if key is None or self.limit is None:
            return True
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: str | None) -> None:
        """One connection from ``key`` (admitted before) has ended."""
        if key is None or self.limit is None:
            return
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)


def check_limit(name: str, value: int | None) -> None:
    """A limit is a positive whole number, or ``None`` for none."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, not {value!r}")


def server_tls_context(tls: bool | ssl.SSLContext | None) -> ssl.SSLContext | None:
    """``True`` → an ephemeral self-signed server context; a context → itself; falsy → None."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls:
        from ._tls import server_context

        return server_context()
    return None
