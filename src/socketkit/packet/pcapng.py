"""pcapng files (draft-ietf-opsawg-pcapng): streaming reader and writer.

Blocks: Section Header (0x0A0D0D0A, byte-order magic 0x1A2B3C4D), Interface Description (1;
linktype, snaplen, options such as ``if_tsresol`` = 9 and ``if_tsoffset`` = 14), Enhanced
Packet (6), Simple Packet (3), the obsolete Packet block (2). Other blocks are skipped. Every
block is padded to 32 bits and repeats its total length at the end.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .._errors import DecodeError
from ._chunks import read_more
from .pcap import DEFAULT_SNAPLEN
from .record import Record
from .writer import CaptureFileWriter

__all__ = ["MAX_BLOCK", "SHB_TYPE", "Interface", "PcapngWriter", "read_pcapng"]

SHB_TYPE = 0x0A0D0D0A
_BOM = 0x1A2B3C4D
_IDB, _SPB, _OPB, _EPB = 1, 3, 2, 6
#: largest block accepted (Wireshark's wiretap bound is 16 MiB of packet data); bounds
#: the memory one block of a damaged or hostile file can ask for.
MAX_BLOCK = 16 * 1024 * 1024 + 4096
#: Interfaces per section; a file asking for more is damaged (bounds the table).
MAX_INTERFACES = 65536


@dataclass(frozen=True, slots=True)
class Interface:
    """One Interface Description Block: link type, snap length, and the time scale."""

    linktype: int
    snaplen: int
    tsresol: int  # the raw if_tsresol octet (6 = microseconds)
    tsoffset_ns: int
    name: str | None = None

    def to_ns(self, ticks: int) -> int:
        resol = self.tsresol
        if resol & 0x80:  # negative power of two
            return int((ticks * 1_000_000_000) >> (resol & 0x7F)) + self.tsoffset_ns
        if resol <= 9:
            return int(ticks * 10 ** (9 - resol)) + self.tsoffset_ns
        return int(ticks // 10 ** (resol - 9)) + self.tsoffset_ns


def read_pcapng(fh: BinaryIO, head: bytes) -> tuple[int, int, Iterator[Record]]:
    """Parse the first section up to its first interface; returns ``(linktype, snaplen,
    records)``. ``head`` holds bytes already read from ``fh``.

    Raises:
        DecodeError: (layer ``"pcapng"``) a bad or truncated header, at once; from the
            iterator, after the last good record, for a damaged block.
    """
    head = read_more(fh, head, 0, 12)
    if len(head) < 12:
        raise DecodeError("pcapng", len(head), "file ends inside the section header")
    if int.from_bytes(head[:4], "little") != SHB_TYPE:
        raise DecodeError("pcapng", 0, "not a pcapng section header")
    records = _records(fh, head)
    first = next(records, None)  # runs up to the first interface (a packet needs one)
    if not isinstance(first, Interface):
        return 0, 0, iter(())
    return first.linktype, first.snaplen, _without_interfaces(records)


def _without_interfaces(blocks: Iterator[Record | Interface]) -> Iterator[Record]:
    for item in blocks:
        if type(item) is Record:
            yield item


def _parse_options(buf: bytes, start: int, end: int, order: str) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    unpack = struct.Struct(order + "HH").unpack_from
    pos = start
    while pos + 4 <= end:  # bounded: each step advances >= 4 bytes
        code, length = unpack(buf, pos)
        if code == 0:
            break
        value_end = pos + 4 + length
        if value_end > end:
            break  # a damaged option list: keep what was read (the block itself is sound)
        options.setdefault(code, buf[pos + 4 : value_end])
        pos = value_end + (-length % 4)
    return options


def _interface(buf: bytes, pos: int, length: int, order: str) -> Interface:
    if length < 20:
        raise DecodeError("pcapng", pos, f"interface block length {length} < 20")
    linktype, _res, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
    options = _parse_options(buf, pos + 16, pos + length - 4, order)
    tsresol = options.get(9, b"\x06")[:1] or b"\x06"
    resol = tsresol[0]
    if (resol & 0x80 and resol & 0x7F > 64) or (not resol & 0x80 and resol > 18):
        raise DecodeError("pcapng", pos, f"unsupported if_tsresol {resol}")
    offset_raw = options.get(14, b"")
    tsoffset = struct.unpack(order + "q", offset_raw)[0] if len(offset_raw) == 8 else 0
    name_raw = options.get(2)
    name = name_raw.decode("utf-8", "replace").rstrip("\0") if name_raw is not None else None
    return Interface(linktype, snaplen, resol, tsoffset * 1_000_000_000, name)


def _records(fh: BinaryIO, buf: bytes) -> Iterator[Record | Interface]:
    order = "<"
    new = tuple.__new__  # Record(...) runs Python code per call; this is 3x cheaper
    head = struct.Struct("<II").unpack_from
    interfaces: list[Interface] = []
    base = 0
    pos = 0
    size = len(buf)
    while True:
        if size - pos < 12:
            base += pos
            buf = read_more(fh, buf, pos, 12)
            pos = 0
            size = len(buf)
            if size < 12:
                if size == 0:
                    return
                raise DecodeError("pcapng", base, "file ends inside a block header")
        btype, length = head(buf, pos)
        if btype == SHB_TYPE:
            bom = int.from_bytes(buf[pos + 8 : pos + 12], "little")
            if bom == _BOM:
                order = "<"
            elif bom == int.from_bytes(_BOM.to_bytes(4, "big"), "little"):
                order = ">"
            else:
                raise DecodeError("pcapng", base + pos + 8, "bad byte-order magic")
            head = struct.Struct(order + "II").unpack_from
            btype, length = head(buf, pos)
            interfaces = []
        if length < 12 or length % 4 or length > MAX_BLOCK:
            raise DecodeError("pcapng", base + pos + 4, f"bad block length {length}")
        end = pos + length
        if end > size:
            base += pos
            buf = read_more(fh, buf, pos, length)
            pos = 0
            size = len(buf)
            end = length
            if end > size:
                raise DecodeError("pcapng", base + size, "file ends inside a block")
        (trailer,) = struct.unpack_from(order + "I", buf, end - 4)
        if trailer != length:
            raise DecodeError("pcapng", base + end - 4, "block length trailer does not match")
        if btype in (_EPB, _OPB):
            if length < 32:
                raise DecodeError("pcapng", base + pos, f"packet block length {length} < 32")
            if btype == _EPB:
                iface, high, low, caplen, orig = struct.unpack_from(order + "IIIII", buf, pos + 8)
            else:
                iface, _drops, high, low, caplen, orig = struct.unpack_from(
                    order + "HHIIII", buf, pos + 8
                )
            if iface >= len(interfaces):
                raise DecodeError("pcapng", base + pos + 8, f"unknown interface {iface}")
            if 32 + caplen > length:
                raise DecodeError(
                    "pcapng", base + pos + 20, f"captured length {caplen} beyond the block"
                )
            info = interfaces[iface]
            if 0 < info.snaplen < caplen:
                raise DecodeError(
                    "pcapng",
                    base + pos + 20,
                    f"record length {caplen} beyond the snap length {info.snaplen}",
                )
            yield new(
                Record,
                (info.to_ns((high << 32) | low), buf[pos + 28 : pos + 28 + caplen], orig,
                 info.linktype),
            )  # fmt: skip
        elif btype == _SPB:
            if not interfaces:
                raise DecodeError("pcapng", base + pos, "simple packet before any interface")
            if length < 16:
                raise DecodeError("pcapng", base + pos, f"simple packet block length {length}")
            info = interfaces[0]
            (orig,) = struct.unpack_from(order + "I", buf, pos + 8)
            caplen = min(orig, length - 16)
            if info.snaplen:
                caplen = min(caplen, info.snaplen)
            yield Record(0, buf[pos + 12 : pos + 12 + caplen], orig, info.linktype)
        elif btype == _IDB:
            if len(interfaces) >= MAX_INTERFACES:
                raise DecodeError("pcapng", base + pos, "too many interfaces")
            info = _interface(buf, pos, length, order)
            interfaces.append(info)
            yield info
        pos = end


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


class PcapngWriter(CaptureFileWriter):
    """Write a pcapng file (little-endian) that tshark and tcpdump read without warnings.

    Args:
        fileobj: a binary file object (or a path, which is opened and owned).
        linktype: LINKTYPE of interface 0.
        snaplen: records longer than this are cut to it.
        nanosecond: timestamps in nanoseconds (``if_tsresol`` = 9) instead of microseconds.
        interface_name: optional ``if_name`` option for interface 0.

    More interfaces: :meth:`add_interface`; :meth:`write` takes ``interface=``.
    """

    def __init__(
        self,
        fileobj: BinaryIO | str | os.PathLike[str],
        linktype: int,
        snaplen: int = DEFAULT_SNAPLEN,
        nanosecond: bool = False,
        *,
        interface_name: str | None = None,
    ) -> None:
        super().__init__(fileobj)
        self._interfaces: list[tuple[int, int]] = []  # (snaplen, divisor to ticks)
        shb = struct.pack("<IHHq", _BOM, 1, 0, -1) + _option(4, b"socketkit") + b"\0\0\0\0"
        self._fh.write(_block(SHB_TYPE, shb))
        self.add_interface(linktype, snaplen, nanosecond, name=interface_name)

    def add_interface(
        self, linktype: int, snaplen: int = DEFAULT_SNAPLEN, nanosecond: bool = False, *,
        name: str | None = None,
    ) -> int:  # fmt: skip
        """Describe another interface; returns its index for :meth:`write`."""
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"linktype must be 0..65535, not {linktype}")
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be 1..2**32-1, not {snaplen}")
        options = b""
        if name:
            options += _option(2, name.encode())
        options += _option(9, bytes([9 if nanosecond else 6]))
        body = struct.pack("<HHI", linktype, 0, snaplen) + options + b"\0\0\0\0"
        self._fh.write(_block(_IDB, body))
        self._interfaces.append((snaplen, 1 if nanosecond else 1000))
        return len(self._interfaces) - 1

    def write(
        self,
        ts_ns: int,
        data: bytes | bytearray | memoryview,
        orig_len: int | None = None,
        interface: int = 0,
    ) -> None:
        """Append one Enhanced Packet Block.

        Raises:
            ValueError: a negative time, an unknown interface, or the writer is closed.
        """
        if self._closed:
            raise ValueError("write to a closed PcapngWriter")
        if ts_ns < 0:
            raise ValueError(f"negative timestamp {ts_ns}")
        if not 0 <= interface < len(self._interfaces):
            raise ValueError(f"unknown interface {interface}")
        snaplen, div = self._interfaces[interface]
        size = len(data)
        if orig_len is None or orig_len < size:
            orig_len = size
        if size > snaplen:
            data = data[:snaplen]
            size = snaplen
        ticks = ts_ns // div
        if ticks >> 64:
            raise ValueError(f"timestamp {ts_ns} ns does not fit a pcapng block")
        pad = -size % 4
        length = 32 + size + pad
        fh = self._fh
        fh.write(
            struct.pack(
                "<IIIIIII", _EPB, length, interface, ticks >> 32, ticks & 0xFFFFFFFF, size,
                orig_len,
            )
        )  # fmt: skip
        fh.write(data)
        fh.write(b"\0" * pad + length.to_bytes(4, "little"))
