"""One captured packet as read from or written to a capture file."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Record"]


class Record(NamedTuple):
    """A captured packet.

    Attributes:
        ts_ns: capture time, nanoseconds since the Unix epoch (UTC).
        data: the captured bytes (at most the snap length).
        orig_len: the packet's length on the wire (>= ``len(data)`` when the capture cut it).
        linktype: the LINKTYPE of ``data`` (:class:`~socketkit.packet.LinkType`).
    """

    ts_ns: int
    data: bytes
    orig_len: int
    linktype: int
