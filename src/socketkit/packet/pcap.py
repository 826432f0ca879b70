"""Classic pcap files (libpcap ``sf-pcap.c`` format): streaming reader and writer.

File header (24 bytes): magic 0xA1B2C3D4 (microseconds) or 0xA1B23C4D (nanoseconds) in the
writer's byte order, version 2.4, thiszone, sigfigs, snaplen, linktype. Each record: a
16-byte header (seconds, micro/nanoseconds, captured length, original length) then the bytes.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

from .._errors import DecodeError
from ._chunks import read_more
from .fused import pcap_summary_batches
from .record import Record
from .writer import CaptureFileWriter

__all__ = [
    "DEFAULT_SNAPLEN",
    "MAX_SNAPLEN",
    "PCAP_MAGIC_NS",
    "PCAP_MAGIC_US",
    "PcapWriter",
    "read_pcap",
]

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
#: tcpdump's default snap length (libpcap MAXIMUM_SNAPLEN).
DEFAULT_SNAPLEN = 262144
#: largest record accepted for most link types, whatever the file's snap length; bounds memory
#: per record on a damaged or hostile file (libpcap's MAXIMUM_SNAPLEN).
MAX_SNAPLEN = 262144
#: libpcap's larger per-link-type maxima (``max_snaplen_for_dlt`` in pcap-common.c):
#: LINKTYPE_DBUS 128 MiB, LINKTYPE_USBPCAP 1 MiB, LINKTYPE_EBHSCR 8 MiB.
_MAX_RECORD = {231: 128 << 20, 249: 1 << 20, 279: 8 << 20}


def max_record_length(linktype: int) -> int:
    """The longest record libpcap accepts for ``linktype``; a longer one is damage."""
    return _MAX_RECORD.get(linktype, MAX_SNAPLEN)


def kept_length(snaplen: int, linktype: int) -> int:
    """How many bytes of a record are kept: the file's snap length, or the link type's maximum
    when the header declares 0 or more than that (libpcap's ``pcap_adjust_snapshot``)."""
    most = max_record_length(linktype)
    return snaplen if 0 < snaplen <= most else most


_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


def read_pcap(
    fh: BinaryIO, head: bytes
) -> tuple[int, int, bool, Iterator[Record], Callable[..., Iterator[list[str]]]]:
    """Parse a pcap file header and return ``(linktype, snaplen, nanosecond, records,
    line_batches)``: two generators over the same records (use one): Record objects, or
    lists of summary lines with time stamps (the fused fast path).

    ``head`` holds the bytes already read from ``fh`` (at least the 4-byte magic).

    A record longer than the snap length is read as libpcap reads it (sf-pcap.c): accepted up
    to the link type's maximum (262144 bytes for most) and cut to the snap length, its
    ``orig_len`` kept; files with a snap length smaller than their records are common (tools
    that write the header's snap length wrong).

    Raises:
        DecodeError: (layer ``"pcap"``) bad magic or a truncated file header, at once; later,
            from the iterator, after the last good record, for a damaged record (one longer
            than the link type's maximum, or cut by the end of the file).
    """
    head = read_more(fh, head, 0, 24)
    if len(head) < 4:
        raise DecodeError("pcap", 0, "file too short for a pcap header")
    magic_le = int.from_bytes(head[:4], "little")
    order = "<"
    if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        magic = magic_le
    else:
        magic = int.from_bytes(head[:4], "big")
        order = ">"
        if magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            raise DecodeError("pcap", 0, f"bad magic 0x{magic_le:08x}")
    if len(head) < 24:
        raise DecodeError("pcap", len(head), "file ends inside the pcap file header")
    _magic, major, _minor, _zone, _sigfigs, snaplen, linktype_field = struct.unpack_from(
        order + "IHHiIII", head
    )
    if major != 2:
        raise DecodeError("pcap", 4, f"unsupported pcap version {major}")
    nanosecond = magic == PCAP_MAGIC_NS
    linktype = linktype_field & 0xFFFF  # bits 16-31: FCS length and flags (pcap-common.c)
    records = _records(fh, head, order, nanosecond, snaplen, linktype)
    lines = functools.partial(
        pcap_summary_batches, fh, head, order, nanosecond, linktype,
        keep=kept_length(snaplen, linktype), limit=max_record_length(linktype),
    )  # fmt: skip
    return linktype, snaplen, nanosecond, records, lines


def _records(  # noqa: PLR0917 - internal generator
    fh: BinaryIO, buf: bytes, order: str, nanosecond: bool, snaplen: int, linktype: int
) -> Iterator[Record]:
    unpack = struct.Struct(order + "IIII").unpack_from
    new = tuple.__new__  # Record(...) runs Python code per call; this is 3x cheaper
    scale = 1 if nanosecond else 1000
    keep = kept_length(snaplen, linktype)
    limit = max_record_length(linktype)
    base = 0  # file offset of buf[0]
    pos = 24
    size = len(buf)
    while True:
        if size - pos < 16:
            base += pos
            buf = read_more(fh, buf, pos, 16)
            pos = 0
            size = len(buf)
            if size < 16:
                if size == 0:
                    return
                raise DecodeError("pcap", base, "file ends inside a record header")
        sec, frac, caplen, orig = unpack(buf, pos)
        if caplen > limit:
            raise DecodeError("pcap", base + pos + 8, record_too_long(caplen, keep, limit))
        end = pos + 16 + caplen
        if end > size:
            base += pos
            buf = read_more(fh, buf, pos, 16 + caplen)
            pos = 0
            size = len(buf)
            end = 16 + caplen
            if end > size:
                raise DecodeError(
                    "pcap", base + size, f"file ends inside a record ({caplen} bytes expected)"
                )
        stop = end if caplen <= keep else pos + 16 + keep
        yield new(
            Record, (sec * 1_000_000_000 + frac * scale, buf[pos + 16 : stop], orig, linktype)
        )
        pos = end


def record_too_long(caplen: int, keep: int, limit: int) -> str:
    """libpcap's two reasons for refusing a record (sf-pcap.c)."""
    if caplen > keep:
        return f"record length {caplen} beyond the snap length {keep} (and the maximum {limit})"
    return f"record length {caplen} beyond the maximum {limit}"


class PcapWriter(CaptureFileWriter):
    """Write a classic pcap file that tcpdump, tshark and libpcap read without warnings.

    Args:
        fileobj: a binary file object (or a path, which is opened and owned).
        linktype: LINKTYPE of every record (e.g. ``LinkType.ETHERNET``).
        snaplen: records longer than this are cut to it (``orig_len`` keeps the wire length).
        nanosecond: write the nanosecond magic (0xA1B23C4D) instead of microseconds.

    ``write`` and ``close``; a context manager. Closing flushes, and closes the file only when
    the writer opened it. The header is written at once.
    """

    def __init__(
        self,
        fileobj: BinaryIO | str | os.PathLike[str],
        linktype: int,
        snaplen: int = DEFAULT_SNAPLEN,
        nanosecond: bool = False,
    ) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be 1..2**32-1, not {snaplen}")
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"linktype must be 0..65535, not {linktype}")
        super().__init__(fileobj)
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._div = 1 if nanosecond else 1000
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._fh.write(_FILE_HEADER.pack(magic, 2, 4, 0, 0, snaplen, linktype))

    def write(
        self, ts_ns: int, data: bytes | bytearray | memoryview, orig_len: int | None = None
    ) -> None:
        """Append one record.

        Args:
            ts_ns: capture time in nanoseconds since the epoch (0 .. 2**32 seconds).
            data: the packet; cut to ``snaplen`` if longer.
            orig_len: the wire length; defaults to ``len(data)``.

        Raises:
            ValueError: negative or out-of-range time, or the writer is closed.
        """
        if self._closed:
            raise ValueError("write to a closed PcapWriter")
        sec, rem = divmod(ts_ns, 1_000_000_000)
        if not 0 <= sec <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {ts_ns} ns does not fit a pcap record")
        size = len(data)
        if orig_len is None or orig_len < size:
            orig_len = size
        if size > self.snaplen:
            data = data[: self.snaplen]
            size = self.snaplen
        fh = self._fh
        fh.write(_RECORD.pack(sec, rem // self._div, size, orig_len))
        fh.write(data)
