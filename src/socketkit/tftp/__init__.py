"""TFTP (RFC 1350 with options: RFC 2347, 2348, 2349, 7440): a client and a server.

>>> import socketkit.tftp as tftp
>>> report = tftp.get("127.0.0.1:6969", "boot.img", blksize=1428)   # doctest: +SKIP
>>> with tftp.serve("/srv/tftp", ":6969") as server:                  # doctest: +SKIP
...     server.serve_forever()

The protocol itself (packets, state machines) is sans-I/O in :mod:`socketkit.proto.tftp`.
"""

from __future__ import annotations

from ..proto.tftp import (
    MalformedPacket,
    PeerAccessDenied,
    PeerBusy,
    PeerError,
    TftpError,
    TransferInterrupted,
    TransferTimeout,
)
from ._client import TransferReport, get, put
from ._server import TftpServer, serve

__all__ = [
    "MalformedPacket",
    "PeerAccessDenied",
    "PeerBusy",
    "PeerError",
    "TftpError",
    "TftpServer",
    "TransferInterrupted",
    "TransferReport",
    "TransferTimeout",
    "get",
    "put",
    "serve",
]
