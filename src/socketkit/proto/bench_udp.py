"""iperf3's UDP datagrams, sans-I/O: the header, the connect handshake, loss and jitter.

Header (iperf_udp.c): ``sec`` u32 BE, ``usec`` u32 BE, then the sequence number as u32 BE,
or u64 BE when ``udp_counters_64bit`` was negotiated. Sequence numbers start at 1.

Loss accounting copies ``iperf_udp_recv`` so both tools agree on the numbers: a jump forward
counts the gap as lost; a late datagram counts as out of order and takes one back from the
lost count. Jitter is RFC 1889 style, ``J += (|D| - J) / 16``, in seconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CONNECT_MSG",
    "CONNECT_REPLIES",
    "CONNECT_REPLY",
    "GRO_REPLY",
    "UdpReceiveStats",
    "header_size",
    "pack_header",
    "unpack_header",
]

#: What a 3.12+ client sends: the int 0x36373839 in host order; "9876" on the wire.
CONNECT_MSG: Final = b"9876"
#: The 3.12+ server reply (0x39383736, "6789").
CONNECT_REPLY: Final = b"6789"
#: Before 3.12 the server replied 987654321 in host order (b1 68 de 3a on little-endian).
LEGACY_REPLY: Final = struct.pack("<I", 987654321)
LEGACY_REPLY_BE: Final = struct.pack(">I", 987654321)
#: socketkit extension: a socketkit server that enabled UDP_GRO answers this instead of
#: CONNECT_REPLY, but only to a client that asked with ``socketkit_gro`` in its params.
GRO_REPLY: Final = b"SKGR"
CONNECT_REPLIES: Final = frozenset({CONNECT_REPLY, LEGACY_REPLY, LEGACY_REPLY_BE, GRO_REPLY})

_H32 = struct.Struct("!III")
_H64 = struct.Struct("!IIQ")


def header_size(counters_64bit: bool) -> int:
    return _H64.size if counters_64bit else _H32.size


def pack_header(
    buf: bytearray | memoryview, offset: int, now: float, seq: int, counters_64bit: bool
) -> None:
    """Write the header for datagram ``seq`` sent at ``now`` (seconds since the epoch)."""
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    if counters_64bit:
        _H64.pack_into(buf, offset, sec & 0xFFFFFFFF, usec, seq)
    else:
        _H32.pack_into(buf, offset, sec & 0xFFFFFFFF, usec, seq & 0xFFFFFFFF)


def unpack_header(
    buf: bytes | bytearray | memoryview, offset: int, counters_64bit: bool
) -> tuple[float, int]:
    """(send time in seconds, sequence number)."""
    if counters_64bit:
        sec, usec, seq = _H64.unpack_from(buf, offset)
    else:
        sec, usec, seq = _H32.unpack_from(buf, offset)
    return sec + usec / 1_000_000, seq


@dataclass(slots=True)
class UdpReceiveStats:
    """Loss, reordering, duplicates and jitter of one received UDP stream (iperf3 rules).

    ``packet_count`` is the highest sequence number seen (what iperf3 reports as the
    receiver's ``packets``); ``received`` is how many datagrams actually arrived.
    """

    packet_count: int = 0
    received: int = 0
    errors: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    jitter: float = 0.0
    _prev_transit: float | None = None

    def record(self, seq: int, sent: float, arrived: float) -> None:
        """Account one datagram: sequence ``seq`` sent at ``sent``, received at ``arrived``."""
        self.received += 1
        if seq >= self.packet_count + 1:
            if seq > self.packet_count + 1:
                self.errors += seq - 1 - self.packet_count
            self.packet_count = seq
        else:
            # Late or repeated. iperf3 cannot tell the two apart; we count both as iperf3
            # does (out of order, one fewer lost) and keep a duplicate estimate beside it:
            # more arrivals than the highest sequence number means some came twice.
            self.out_of_order += 1
            if self.errors > 0:
                self.errors -= 1
            self.duplicates = max(0, self.received - self.packet_count)
        transit = arrived - sent
        if self._prev_transit is not None:
            delta = abs(transit - self._prev_transit)
            self.jitter += (delta - self.jitter) / 16.0
        self._prev_transit = transit

    def record_run(self, first: int, count: int, sent: float, arrived: float) -> bool:
        """Account ``count`` datagrams numbered ``first`` .. ``first + count - 1`` that came
        together (one GRO batch, all stamped ``sent``). Returns False, changing nothing, when
        the run does not simply continue the sequence; then record them one by one."""
        if first <= self.packet_count:
            return False
        self.errors += first - 1 - self.packet_count
        self.packet_count = first + count - 1
        self.received += count
        transit = arrived - sent
        if self._prev_transit is not None:
            # The datagrams of a run share one send time and one arrival time: the first one
            # moves the jitter estimate; the others have a zero transit difference.
            self.jitter += (abs(transit - self._prev_transit) - self.jitter) / 16.0
            self.jitter *= (15.0 / 16.0) ** (count - 1)
        self._prev_transit = transit
        return True

    @property
    def lost_percent(self) -> float:
        return 100.0 * self.errors / self.packet_count if self.packet_count else 0.0
