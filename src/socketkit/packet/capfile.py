"""``open_capture_file``: read pcap or pcapng, detected from the first bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from .._errors import DecodeError
from ._chunks import read_more
from .pcap import PCAP_MAGIC_NS, PCAP_MAGIC_US, read_pcap
from .pcapng import SHB_TYPE, read_pcapng
from .record import Record

__all__ = ["CaptureFile", "open_capture_file"]

_PCAP_MAGICS = {
    m.to_bytes(4, order) for m in (PCAP_MAGIC_US, PCAP_MAGIC_NS) for order in ("little", "big")
}


class CaptureFile:
    """An open capture file: iterate it for :class:`Record` objects (streamed, constant
    memory). Also a context manager; ``close()`` closes the file if it was opened from a path.

    Attributes:
        format: ``"pcap"`` or ``"pcapng"``.
        linktype: the LINKTYPE of the file (pcapng: of its first interface; each
            ``Record.linktype`` is authoritative).
        snaplen: the declared snap length.
        nanosecond: pcap only: whether the file has nanosecond timestamps.
    """

    def __init__(  # noqa: PLR0917 - built only by open_capture_file
        self,
        fh: BinaryIO,
        owned: bool,
        fmt: str,
        linktype: int,
        snaplen: int,
        nanosecond: bool,
        records: Iterator[Record],
    ) -> None:
        self._fh = fh
        self._owned = owned
        self.format = fmt
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._records = records

    def __iter__(self) -> Iterator[Record]:
        return self._records

    def __next__(self) -> Record:
        return next(self._records)

    def close(self) -> None:
        """Close the file if ``open_capture_file`` opened it. Idempotent."""
        if self._owned:
            self._fh.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_capture_file(path_or_fileobj: str | os.PathLike[str] | BinaryIO) -> CaptureFile:
    """Open a pcap (µs or ns, either byte order) or pcapng file for streaming reads.

    Args:
        path_or_fileobj: a path, or a binary file object (a pipe works: nothing seeks).

    Returns:
        A :class:`CaptureFile`: iterate it for ``Record(ts_ns, data, orig_len, linktype)``.

    Raises:
        DecodeError: (layer ``"pcap"`` or ``"pcapng"``) not a capture file, or its header
            is damaged. Iterating raises DecodeError after the last good record when a later
            record is damaged (records before the damage are delivered first).
        OSError: the path cannot be opened.
    """
    owned = not hasattr(path_or_fileobj, "read")
    fh: BinaryIO = (
        open(path_or_fileobj, "rb", buffering=0)  # type: ignore[assignment,arg-type]  # noqa: SIM115
        if owned
        else path_or_fileobj
    )
    try:
        head = read_more(fh, b"", 0, 4)
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            linktype, snaplen, nano, records = read_pcap(fh, head)
            return CaptureFile(fh, owned, "pcap", linktype, snaplen, nano, records)
        if len(magic) == 4 and int.from_bytes(magic, "little") == SHB_TYPE:
            linktype, snaplen, records = read_pcapng(fh, head)
            return CaptureFile(fh, owned, "pcapng", linktype, snaplen, False, records)
        if len(magic) < 4:
            raise DecodeError("pcap", len(magic), "file too short for a capture file header")
        raise DecodeError("pcap", 0, f"bad magic 0x{magic.hex()}: not a pcap or pcapng file")
    except BaseException:
        if owned:
            fh.close()
        raise
