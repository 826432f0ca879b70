"""Exit codes of every ``socketkit`` command (documented in docs/cli.md)."""

from __future__ import annotations

import enum
import errno

from .._errors import (
    AccessDenied,
    AddressError,
    BrokenStreamError,
    ConnectError,
    ConnectionRefused,
    DecodeError,
    MissingDependency,
    PermissionDenied,
    ProtocolError,
    ResolutionError,
    SocketkitError,
    SocketkitTimeout,
    TLSError,
)


class ExitStatus(enum.IntEnum):
    """What a ``socketkit`` process returns. Stable: scripts may rely on these numbers."""

    OK = 0
    #: The job ran and its answer is "no": no ping reply, a closed port in ``-z``, a mismatch.
    FAILURE = 1
    #: Bad command line or bad address syntax (argparse uses 2 as well).
    USAGE = 2
    #: A host name did not resolve.
    RESOLVE = 3
    #: Connection refused, unreachable, or reset by the peer.
    REFUSED = 4
    #: A connect, idle or overall timeout expired.
    TIMEOUT = 5
    #: TLS handshake or certificate verification failed.
    TLS = 6
    #: An allow/deny list refused the peer, or the peer refused access (e.g. a busy bench server).
    ACCESS_DENIED = 7
    #: The operating system refused: privileged port, raw sockets without CAP_NET_RAW.
    PERMISSION = 8
    #: A local file could not be read or written (missing file, full disk).
    IO = 9
    #: The peer or a file broke the protocol or format (malformed packet, pcap, frame).
    PROTOCOL = 10
    #: A library or system package is missing; the message says which to install.
    MISSING_DEPENDENCY = 11
    #: A bug in socketkit; run again with --debug for the traceback and report it.
    INTERNAL = 70
    #: Ctrl-C (SIGINT).
    INTERRUPTED = 130


# Most specific first: the first class in an error's MRO found here decides.
_BY_ERROR: dict[type[BaseException], ExitStatus] = {
    ResolutionError: ExitStatus.RESOLVE,
    AddressError: ExitStatus.USAGE,
    SocketkitTimeout: ExitStatus.TIMEOUT,
    ConnectionRefused: ExitStatus.REFUSED,
    BrokenStreamError: ExitStatus.REFUSED,
    TLSError: ExitStatus.TLS,
    AccessDenied: ExitStatus.ACCESS_DENIED,
    PermissionDenied: ExitStatus.PERMISSION,
    DecodeError: ExitStatus.PROTOCOL,
    ProtocolError: ExitStatus.PROTOCOL,
    MissingDependency: ExitStatus.MISSING_DEPENDENCY,
    SocketkitError: ExitStatus.FAILURE,
}


#: What a connect attempt gets when the peer refused or no route leads there: exit 4, as a
#: refusal (docs/cli.md: "connection refused, unreachable, or reset").
_UNREACHABLE = {
    errno.ECONNREFUSED,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.ECONNRESET,
}


def status_for(exc: BaseException) -> ExitStatus:
    """The exit status for an error (``INTERNAL`` for anything that is not ours or an OSError)."""
    if (
        type(exc) is ConnectError
        and exc.attempts
        and all(isinstance(err, OSError) and err.errno in _UNREACHABLE for _, err in exc.attempts)
    ):
        return ExitStatus.REFUSED  # every address refused or unreachable
    for cls in type(exc).__mro__:
        if cls in _BY_ERROR:
            return _BY_ERROR[cls]
    if isinstance(exc, OSError):
        return ExitStatus.IO
    return ExitStatus.INTERNAL
