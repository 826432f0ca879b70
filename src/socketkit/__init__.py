"""socketkit: sockets from Python and from the shell, done right and fast.

The public API is re-exported here and imported lazily (PEP 562), so ``import socketkit``
and the command line start fast. ``socketkit.aio`` holds the asyncio twins of the stream API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it. One table: adding a public name is one line here.
_EXPORTS: dict[str, str] = {
    # errors
    "SocketkitError": "socketkit._errors",
    "AddressError": "socketkit._errors",
    "ResolutionError": "socketkit._errors",
    "ConnectError": "socketkit._errors",
    "ConnectionRefused": "socketkit._errors",
    "ConnectTimeout": "socketkit._errors",
    "SocketkitTimeout": "socketkit._errors",
    "ReadTimeout": "socketkit._errors",
    "WriteTimeout": "socketkit._errors",
    "BrokenStreamError": "socketkit._errors",
    "ClosedResourceError": "socketkit._errors",
    "IncompleteReadError": "socketkit._errors",
    "ProtocolError": "socketkit._errors",
    "LocalProtocolError": "socketkit._errors",
    "RemoteProtocolError": "socketkit._errors",
    "DecodeError": "socketkit._errors",
    "TLSError": "socketkit._errors",
    "AccessDenied": "socketkit._errors",
    "PermissionDenied": "socketkit._errors",
    "MissingDependency": "socketkit._errors",
    # addresses
    "Address": "socketkit._addr",
    "parse_address": "socketkit._addr",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from ._addr import Address, parse_address
    from ._errors import (
        AccessDenied,
        AddressError,
        BrokenStreamError,
        ClosedResourceError,
        ConnectError,
        ConnectionRefused,
        ConnectTimeout,
        DecodeError,
        IncompleteReadError,
        LocalProtocolError,
        MissingDependency,
        PermissionDenied,
        ProtocolError,
        ReadTimeout,
        RemoteProtocolError,
        ResolutionError,
        SocketkitError,
        SocketkitTimeout,
        TLSError,
        WriteTimeout,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'socketkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
