"""``open_capture_file``: read pcap or pcapng, detected from the first bytes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, TextIO, TypeVar

from .._errors import DecodeError
from ._chunks import read_more
from .pcap import PCAP_MAGIC_NS, PCAP_MAGIC_US, read_pcap
from .pcapng import SHB_TYPE, read_pcapng
from .record import Record
from .summary import summary

if TYPE_CHECKING:
    from .printer import TcpSequences

__all__ = ["CaptureFile", "open_capture_file"]

_T = TypeVar("_T")

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
        line_batches: Callable[..., Iterator[list[str]]] | None = None,
    ) -> None:
        self._fh = fh
        self._owned = owned
        self.format = fmt
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._records = self._closing(records) if owned else records
        self._batches = line_batches
        self._mode: str | None = None

    def _claim(self, mode: str) -> None:
        if self._mode is None:
            self._mode = mode
        elif self._mode != mode:
            raise ValueError("a CaptureFile is read either as records or as summaries, not both")

    def __iter__(self) -> Iterator[Record]:
        self._claim("records")
        return self._records

    def __next__(self) -> Record:
        self._claim("records")
        return next(self._records)

    def _closing(self, items: Iterator[_T]) -> Iterator[_T]:
        """Close the owned file when ``items`` ends (exhausted or an error)."""
        try:
            yield from items
        finally:
            self.close()

    def summaries(self, *, sequences: TcpSequences | None = None) -> Iterator[str]:
        """Iterate ``summary(data, linktype, ts_ns)`` lines (no newline), one per record, as
        ``tcpdump -n -S -r`` prints them (time first). For classic pcap the record walk and
        the fast summary path are fused (no Record objects). With ``sequences`` (a
        :class:`~socketkit.packet.printer.TcpSequences`) TCP numbers are relative, as
        ``tcpdump -n -r`` prints them.

        Raises:
            DecodeError: as iterating records does (after the lines before the damage).
            ValueError: the file is already being read as records.
        """
        return itertools.chain.from_iterable(self._summary_batches(sequences))

    def write_summaries(self, out: TextIO, *, sequences: TcpSequences | None = None) -> int:
        """Write every record's summary line (with ``\n``) to ``out``, in blocks: the
        fastest way to print a capture file (what ``socketkit sniff -r`` does).
        ``sequences`` as for :meth:`summaries`.

        Returns:
            The number of lines written.

        Raises:
            DecodeError: a damaged record; every line before it has been written.
        """
        count = 0
        write = out.write
        for batch in self._summary_batches(sequences):
            count += len(batch)
            batch.append("")
            write("\n".join(batch))
        return count

    def _summary_batches(self, sequences: TcpSequences | None) -> Iterator[list[str]]:
        self._claim("summaries")
        if self._batches is not None:
            batches = self._batches(sequences=sequences)
            return self._closing(batches) if self._owned else batches
        return _batched_lines(self._records, sequences)

    def close(self) -> None:
        """Close the file if ``open_capture_file`` opened it (done by itself when the
        records run out). Idempotent."""
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


def _batched_lines(
    records: Iterator[Record], sequences: TcpSequences | None, size: int = 1024
) -> Iterator[list[str]]:
    out: list[str] = []
    try:
        for rec in records:
            line = summary(rec.data, rec.linktype, rec.ts_ns)
            if sequences is not None:
                line = sequences.rewrite(line, rec.data, rec.linktype)
            out.append(line)
            if len(out) >= size:
                yield out
                out = []
    except DecodeError:
        if out:  # the lines before the damage first, then the error
            yield out
        raise
    if out:
        yield out


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
            linktype, snaplen, nano, records, batches = read_pcap(fh, head)
            return CaptureFile(fh, owned, "pcap", linktype, snaplen, nano, records, batches)
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
