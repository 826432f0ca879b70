"""What the sync and asyncio connect paths share: defaults, failure reports, TLS contexts."""

from __future__ import annotations

import errno
import ssl
from collections.abc import Sequence

from ._errors import ConnectError, ConnectionRefused, ConnectTimeout

#: A SYN retried for 30 s means nobody is there; the OS default (~127 s on Linux) is too long.
DEFAULT_CONNECT_TIMEOUT = 30.0
#: RFC 8305 §5 recommends 250 ms between connection attempts.
HAPPY_EYEBALLS_DELAY = 0.25
_REFUSALS = {errno.ECONNREFUSED}


def connect_failure(
    shown: str, failures: Sequence[tuple[str, BaseException]], *, timed_out: bool
) -> ConnectError:
    """One error naming every attempt: ``cannot connect to h:p: 1.2.3.4:80 refused; ...``."""
    if len(failures) == 1 and failures[0][0] == shown:  # one attempt: name it once
        parts = [_brief(failures[0][1])]
    else:
        parts = [f"{where} {_brief(exc)}" for where, exc in failures]
    if timed_out:
        parts.append("timed out")
    message = f"cannot connect to {shown}: " + ("; ".join(parts) or "no address to try")
    if timed_out:
        return ConnectTimeout(message, failures)
    refused = failures and all(
        isinstance(exc, OSError) and exc.errno in _REFUSALS for _, exc in failures
    )
    if refused:
        return ConnectionRefused(message, failures)
    return ConnectError(message, failures)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def tls_context_for(tls: bool | ssl.SSLContext | None) -> ssl.SSLContext | None:
    """``True`` → a verifying default client context; a context → itself; falsy → None."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls:
        from ._tls import client_context

        return client_context()
    return None
