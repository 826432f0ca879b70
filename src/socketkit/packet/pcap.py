"""Classic pcap files (libpcap ``sf-pcap.c`` format): streaming reader and writer.

File header (24 bytes): magic 0xA1B2C3D4 (microseconds) or 0xA1B23C4D (nanoseconds) in the
writer's byte order, version 2.4, thiszone, sigfigs, snaplen, linktype. Each record: a
16-byte header (seconds, micro/nanoseconds, captured length, original length) then the bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from .._errors import DecodeError
from . import fastpath
from ._chunks import read_more
from .fastpath import FAST_PATHS, TCP_FLAGS, no_fast_path
from .linktype import LinkType
from .record import Record
from .summary import DIGITS3, HMS_CACHE, hms_text, summary

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
#: largest record accepted when a file declares no usable snap length; bounds memory per
#: record on a damaged or hostile file (libpcap uses the same 256 KiB bound).
MAX_SNAPLEN = 262144
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


def read_pcap(
    fh: BinaryIO, head: bytes
) -> tuple[int, int, bool, Iterator[Record], Iterator[list[str]]]:
    """Parse a pcap file header and return ``(linktype, snaplen, nanosecond, records,
    line_batches)``: two generators over the same records (use one): Record objects, or
    lists of summary lines with time stamps (the fused fast path).

    ``head`` holds the bytes already read from ``fh`` (at least the 4-byte magic).

    Raises:
        DecodeError: (layer ``"pcap"``) bad magic or a truncated file header, at once; later,
            from the iterator, after the last good record, for a damaged record.
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
    lines = _lines(fh, head, order, nanosecond, snaplen, linktype)
    return linktype, snaplen, nanosecond, records, lines


def _records(  # noqa: PLR0917 - internal generator
    fh: BinaryIO, buf: bytes, order: str, nanosecond: bool, snaplen: int, linktype: int
) -> Iterator[Record]:
    unpack = struct.Struct(order + "IIII").unpack_from
    new = tuple.__new__  # Record(...) runs Python code per call; this is 3x cheaper
    scale = 1 if nanosecond else 1000
    limit = snaplen if 0 < snaplen <= MAX_SNAPLEN else MAX_SNAPLEN
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
            raise DecodeError(
                "pcap", base + pos + 8, f"record length {caplen} beyond the snap length {limit}"
            )
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
        yield new(Record, (sec * 1_000_000_000 + frac * scale, buf[pos + 16 : end], orig, linktype))
        pos = end


#: summary lines handed out per batch by the fused loop
LINE_BATCH = 1024


def _lines(  # noqa: PLR0917 - internal generator
    fh: BinaryIO, buf: bytes, order: str, nanosecond: bool, snaplen: int, linktype: int
) -> Iterator[list[str]]:
    """Batches of ``summary(data, linktype, ts_ns)`` lines, fused with the record walk: no
    Record objects, no nanosecond arithmetic (the hot loop of ``sniff -r``). A damaged
    record: the batch of lines before it is yielded, then DecodeError."""
    fast = FAST_PATHS.get(linktype, no_fast_path)
    unpack = struct.Struct(order + "IIII").unpack_from
    limit = snaplen if 0 < snaplen <= MAX_SNAPLEN else MAX_SNAPLEN
    base = 0
    pos = 24
    size = len(buf)
    hms_get = HMS_CACHE.get
    out: list[str] = []
    append = out.append
    left = LINE_BATCH
    error: DecodeError | None = None
    # the hot loop's names, bound locally (LOAD_FAST instead of a global lookup per packet)
    ether = linktype == LinkType.ETHERNET
    t4ts, icmp4, ts_option, flag_text = (
        fastpath.T4TS_UNPACK,
        fastpath.I4_UNPACK,
        fastpath.TS,
        TCP_FLAGS,
    )
    flows4_get, flow4 = fastpath.FLOWS4.get, fastpath.flow4
    pairs4_get, pair4 = fastpath.PAIRS4.get, fastpath.pair4
    udp4_get = fastpath.UDP4.get
    t6ts, udp6, icmp6 = fastpath.T6TS_UNPACK, fastpath.U6_UNPACK, fastpath.I6_UNPACK
    flows6_get, flow6 = fastpath.FLOWS6.get, fastpath.flow6
    pairs6_get, pair6 = fastpath.PAIRS6.get, fastpath.pair6
    ip4_head = fastpath.ETH_IP4_HEAD
    d3 = DIGITS3  # f"{x:06d}" costs ~250 ns (format-spec parsing); two lookups ~40 ns
    while True:
        if size - pos < 16:
            base += pos
            buf = read_more(fh, buf, pos, 16)
            pos = 0
            size = len(buf)
            if size < 16:
                if size:
                    error = DecodeError("pcap", base, "file ends inside a record header")
                break
        sec, frac, caplen, _orig = unpack(buf, pos)
        if caplen > limit:
            error = DecodeError(
                "pcap", base + pos + 8, f"record length {caplen} beyond the snap length {limit}"
            )
            break
        end = pos + 16 + caplen
        if end > size:
            base += pos
            buf = read_more(fh, buf, pos, 16 + caplen)
            pos = 0
            size = len(buf)
            end = 16 + caplen
            if end > size:
                error = DecodeError(
                    "pcap", base + size, f"file ends inside a record ({caplen} bytes expected)"
                )
                break
        data = buf[pos + 16 : end]
        pos = end
        if nanosecond:
            frac //= 1000
        if frac >= 1_000_000:  # a damaged fraction: carry into the seconds, as ts_ns does
            sec += frac // 1_000_000
            frac %= 1_000_000
        hms = hms_get(sec) or hms_text(sec)
        # Ethernet -> IPv4 (no options, not a fragment, length >= 28): fastpath.fast_ethernet's
        # three commonest cases inlined (no call, no separate time string); tests check the
        # lines equal summary()'s.
        if ether and caplen >= 42:
            etype, ver_ihl, total, frag, proto = ip4_head(data, 0)
        else:
            etype = 0
        if etype == 0x0800 and ver_ihl == 0x45 and not frag & 0x3FFF and total >= 28:
            if proto == 6 and caplen >= 66:
                _total, seq, ack, off, flags, win, _urp, opt, tsval, tsecr = t4ts(data, 14)
                if off >> 4 == 8 and opt == ts_option and (flags & 0x37) == 0x10 and total >= 52:
                    key = data[26:38]
                    flow = flows4_get(key) or flow4(key)
                    plen = total - 52
                    if plen:
                        append(
                            f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {flow}"
                            f"Flags [{flag_text[flags]}], seq {seq}:{(seq + plen) & 0xFFFFFFFF}"
                            f", ack {ack}, win {win}, options [nop,nop,TS val {tsval} "
                            f"ecr {tsecr}], length {plen}"
                        )
                    else:
                        append(
                            f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {flow}"
                            f"Flags [{flag_text[flags]}], ack {ack}, win {win}, "
                            f"options [nop,nop,TS val {tsval} ecr {tsecr}], length 0"
                        )
                    left -= 1
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = LINE_BATCH
                    continue
            elif proto == 17:
                line = udp4_get(data[26:40])
                if line is not None:
                    append(f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {line}")
                    left -= 1
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = LINE_BATCH
                    continue
            elif proto == 1:
                _total, icmp_type, ident, seq = icmp4(data, 14)
                if icmp_type == 8 or icmp_type == 0:  # noqa: PLR1714 - faster than a tuple
                    key = data[26:34]
                    pair = pairs4_get(key) or pair4(key)
                    kind = "request" if icmp_type == 8 else "reply"
                    append(
                        f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} "
                        f"{pair}ICMP echo {kind}, id {ident}, seq {seq}, length {total - 20}"
                    )
                    left -= 1
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = LINE_BATCH
                    continue
        elif etype == 0x86DD and ver_ihl >> 4 == 6 and caplen >= 62:
            # Ethernet -> IPv6 (no extension headers): the same three cases
            nxt = data[20]
            if nxt == 6 and caplen >= 86:
                plen, seq, ack, off, flags, win, _urp, opt, tsval, tsecr = t6ts(data, 14)
                if off >> 4 == 8 and opt == ts_option and (flags & 0x37) == 0x10 and plen >= 32:
                    key = data[22:58]
                    flow = flows6_get(key) or flow6(key)
                    plen -= 32
                    if plen:
                        append(
                            f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {flow}"
                            f"Flags [{flag_text[flags]}], seq {seq}:{(seq + plen) & 0xFFFFFFFF}"
                            f", ack {ack}, win {win}, options [nop,nop,TS val {tsval} "
                            f"ecr {tsecr}], length {plen}"
                        )
                    else:
                        append(
                            f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {flow}"
                            f"Flags [{flag_text[flags]}], ack {ack}, win {win}, "
                            f"options [nop,nop,TS val {tsval} ecr {tsecr}], length 0"
                        )
                    left -= 1
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = LINE_BATCH
                    continue
            elif nxt == 17:
                plen, ulen = udp6(data, 14)
                if ulen >= 8 and plen >= 8:
                    key = data[22:58]
                    flow = flows6_get(key) or flow6(key)
                    append(
                        f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {flow}UDP, length {ulen - 8}"
                    )
                    left -= 1
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = LINE_BATCH
                    continue
            elif nxt == 58:
                plen, icmp_type, ident, seq = icmp6(data, 14)
                if plen >= 8 and (icmp_type == 128 or icmp_type == 129):  # noqa: PLR1714
                    key = data[22:54]
                    pair = pairs6_get(key) or pair6(key)
                    kind = "request" if icmp_type == 128 else "reply"
                    append(
                        f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} "
                        f"{pair}ICMP6, echo {kind}, id {ident}, seq {seq}, length {plen}"
                    )
                    left -= 1
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = LINE_BATCH
                    continue
        head = f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} "
        line = fast(data, head)
        append(line if line is not None else head + summary(data, linktype))
        left -= 1
        if not left:
            yield out
            out = []
            append = out.append
            left = LINE_BATCH
    if out:
        yield out
    if error is not None:
        raise error


class PcapWriter:
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
        self._owned = not hasattr(fileobj, "write")
        self._fh: BinaryIO = (
            open(fileobj, "wb")  # type: ignore[arg-type]  # noqa: SIM115 - owned
            if self._owned
            else fileobj  # type: ignore[assignment]
        )
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._div = 1 if nanosecond else 1000
        self._closed = False
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

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fh.flush()
        if self._owned:
            self._fh.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
