"""What the sync and asyncio servers share: defaults, bound addresses, TLS contexts."""

from __future__ import annotations

import socket
import ssl

from ._addr import Address

#: Seconds ``Server.close()`` lets handlers finish before shutting their connections down.
DEFAULT_GRACE = 5.0
#: A client that has not finished the TLS handshake in 10 s is stalling or lost.
TLS_HANDSHAKE_TIMEOUT = 10.0


def bound_address(sock: socket.socket) -> Address:
    """The listener's real address (port 0 resolved)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode() if isinstance(name, bytes) else str(name)
        return Address(path=path)
    return Address(str(name[0]), int(name[1]))


def server_tls_context(tls: bool | ssl.SSLContext | None) -> ssl.SSLContext | None:
    """``True`` → an ephemeral self-signed server context; a context → itself; falsy → None."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls:
        from ._tls import server_context

        return server_context()
    return None
