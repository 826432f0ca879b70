"""The fused pcap summary loop: walk classic pcap records and format summary lines in one
loop, with no Record objects (what ``CaptureFile.summaries()``/``write_summaries()`` and so
``socketkit sniff -r`` run).

The commonest packets (Ethernet -> IPv4 without options / IPv6 without extension headers ->
TCP ACK or PSH-ACK with timestamps, UDP, ICMP/ICMPv6 echo) are formatted inline from the
structs and caches of :mod:`.fastpath` (no call, the time written straight into the line);
everything else goes through ``fastpath`` and then :func:`.summary.summary`. Tests and the
fuzzer check every line equals ``summary(data, linktype, ts_ns)`` for the same record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from .._errors import DecodeError
from . import fastpath
from ._chunks import read_more
from .fastpath import FAST_PATHS, TCP_FLAGS, is_dns6, no_fast_path
from .linktype import LinkType
from .summary import DIGITS3, HMS_CACHE, hms_text, summary

if TYPE_CHECKING:
    from .printer import TcpSequences

__all__ = ["pcap_summary_batches"]


def pcap_summary_batches(
    fh: BinaryIO,
    buf: bytes,
    order: str,
    nanosecond: bool,
    linktype: int,
    *,
    keep: int,
    limit: int,
    sequences: TcpSequences | None = None,
) -> Iterator[list[str]]:
    """Lists of summary lines (with time stamps) for the pcap records after the file header
    (``buf`` holds the bytes read so far, the header included). One list per buffer refill
    (about 1 MiB of input), so memory stays bounded and a pipe's lines come as it delivers.
    A record is cut to ``keep`` bytes (the snap length); one longer than ``limit`` (the link
    type's maximum) is damage, as in libpcap. With ``sequences`` TCP numbers are relative,
    as tcpdump prints them by default (:class:`~.printer.TcpSequences`).

    Raises:
        DecodeError: a damaged record; the lines before it have been yielded.
    """
    fast = FAST_PATHS.get(linktype, no_fast_path)
    unpack = struct.Struct(order + "IIII").unpack_from
    base = 0  # file offset of buf[0]
    pos = 24
    size = len(buf)
    hms_get = HMS_CACHE.get
    last_sec = -1
    hms = ""
    out: list[str] = []
    append = out.append
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
    relative = sequences is not None
    rel_get = sequences.get if sequences is not None else None
    rel_start = sequences.start if sequences is not None else None
    rewrite = sequences.rewrite if sequences is not None else None
    d3 = DIGITS3  # f"{x:06d}" costs ~250 ns (format-spec parsing); two lookups ~40 ns
    while True:
        while size - pos >= 16:  # every record wholly inside buf
            sec, frac, caplen, _orig = unpack(buf, pos)
            end = pos + 16 + caplen
            if end > size or caplen > limit:
                break
            if caplen > keep:  # libpcap keeps the snap length's worth (sf-pcap.c)
                caplen = keep
                data = buf[pos + 16 : pos + 16 + keep]
            else:
                data = buf[pos + 16 : end]
            pos = end
            if nanosecond:
                frac //= 1000
            if frac >= 1_000_000:  # a damaged fraction: carry into the seconds, as ts_ns does
                sec += frac // 1_000_000
                frac %= 1_000_000
            if sec != last_sec:
                last_sec = sec
                hms = hms_get(sec) or hms_text(sec)
            if ether and caplen >= 42:
                etype, ver_ihl, total, frag, proto = ip4_head(data, 0)
            else:
                etype = 0
            if etype == 0x0800 and ver_ihl == 0x45 and not frag & 0x3FFF and total >= 28:
                if proto == 6 and caplen >= 66:
                    _total, seq, ack, off, flags, win, _urp, opt, tsval, tsecr = t4ts(data, 14)
                    if (
                        off >> 4 == 8
                        and opt == ts_option
                        and (flags & 0x37) == 0x10
                        and total >= 52
                    ):
                        key = data[26:38]
                        flow = flows4_get(key) or flow4(key)
                        plen = total - 52
                        if relative:
                            bases = rel_get(key)  # type: ignore[misc]
                            if bases is None:
                                rel_start(key, seq, ack)  # type: ignore[misc]
                            else:
                                seq = (seq - bases[0]) & 0xFFFFFFFF
                                ack = (ack - bases[1]) & 0xFFFFFFFF
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
                        continue
                elif proto == 17:
                    line = udp4_get(data[26:40])
                    if line is not None:
                        append(f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {line}")
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
                        if relative:
                            bases = rel_get(key)  # type: ignore[misc]
                            if bases is None:
                                rel_start(key, seq, ack)  # type: ignore[misc]
                            else:
                                seq = (seq - bases[0]) & 0xFFFFFFFF
                                ack = (ack - bases[1]) & 0xFFFFFFFF
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
                        continue
                elif nxt == 17:
                    plen, ulen = udp6(data, 14)
                    if ulen >= 8 and plen >= 8 and not is_dns6(data, 54):
                        key = data[22:58]
                        flow = flows6_get(key) or flow6(key)
                        append(
                            f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} {flow}"
                            f"UDP, length {ulen - 8}"
                        )
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
                        continue
            head = f"{hms}.{d3[frac // 1000]}{d3[frac % 1000]} "
            line = fast(data, head)
            if line is None:
                line = head + summary(data, linktype)
            append(line if rewrite is None else rewrite(line, data, linktype))
        # the buffer holds no whole record at pos: hand out the lines, then read on
        if out:
            yield out
            out = []
            append = out.append
        need = 16
        if size - pos >= 16:
            caplen = unpack(buf, pos)[2]
            if caplen > limit:
                from .pcap import record_too_long

                raise DecodeError("pcap", base + pos + 8, record_too_long(caplen, keep, limit))
            need = 16 + caplen
        base += pos
        buf = read_more(fh, buf, pos, need)
        pos = 0
        size = len(buf)
        if size < need:
            if size == 0:
                return
            if size < 16:
                raise DecodeError("pcap", base, "file ends inside a record header")
            raise DecodeError(
                "pcap", base + size, f"file ends inside a record ({need - 16} bytes expected)"
            )
