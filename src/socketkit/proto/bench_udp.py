"""iperf3's UDP datagrams, sans-I/O: the header, the connect handshake, loss and jitter.

Header (iperf_udp.c): ``sec`` u32 BE, ``usec`` u32 BE, then the sequence number as u32 BE,
or u64 BE when ``udp_counters_64bit`` was negotiated. Sequence numbers start at 1.

Loss accounting follows ``iperf_udp_recv`` so both tools agree on the numbers: a jump forward
counts the gap as lost; a datagram at or below the highest sequence number seen counts as out
of order (iperf3's ``out_of_order``, unchanged), and a late one takes one back from the lost
count. Unlike iperf3, a *duplicate* (a datagram that already arrived) does not take one back:
the receiver remembers which sequence numbers are still missing, so it tells the two apart
and counts duplicates exactly (iperf3 reports ``lost - duplicates`` as lost on a path that
duplicates). Jitter is RFC 1889 style, ``J += (|D| - J) / 16``, in seconds.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CONNECT_MSG",
    "MAX_MISSING",
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

#: How many missing sequence numbers a receiver remembers (to tell a late datagram from a
#: duplicate); bounds the memory a stream with heavy loss, or a forged huge sequence number,
#: can take. Older ones fall back to iperf3's rule (out of order, one fewer lost).
MAX_MISSING: Final = 1 << 16

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
    receiver's ``packets``); ``received`` is how many datagrams actually arrived, duplicates
    included. ``errors`` is the number of sequence numbers below ``packet_count`` that never
    arrived; ``out_of_order`` counts arrivals at or below the highest number seen (late and
    duplicate datagrams, as iperf3 counts them); ``duplicates`` those that had arrived before.
    """

    packet_count: int = 0
    received: int = 0
    errors: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    jitter: float = 0.0
    _prev_transit: float | None = None
    #: Sequence numbers not (yet) arrived, as half-open ranges ``[_starts[i], _ends[i])``,
    #: oldest first: a gap is one range whatever its length, so a lossy stream costs O(1) per
    #: gap. At most MAX_MISSING numbers in all.
    _starts: list[int] = field(default_factory=list)
    _ends: list[int] = field(default_factory=list)
    #: How many numbers the ranges hold.
    missing_count: int = 0
    #: Below this sequence number, whether a datagram arrived is no longer known.
    _horizon: int = 1

    @property
    def missing_runs(self) -> int:
        """How many ranges of missing sequence numbers are remembered."""
        return len(self._starts)

    def _gap(self, first: int, end: int) -> None:
        """Sequence numbers ``first`` .. ``end - 1`` are missing (all above every range)."""
        starts, ends = self._starts, self._ends
        if end - first >= MAX_MISSING:
            starts.clear()
            ends.clear()
            self.missing_count = 0
            first = end - MAX_MISSING
            self._horizon = first
        starts.append(first)
        ends.append(end)
        self.missing_count += end - first
        excess = self.missing_count - MAX_MISSING
        if excess <= 0:
            return
        # Forget the oldest numbers: whole ranges, then the front of the next one.
        self.missing_count = MAX_MISSING
        whole = 0
        while ends[whole] - starts[whole] <= excess:
            excess -= ends[whole] - starts[whole]
            whole += 1
        self._horizon = ends[whole - 1] if whole else self._horizon
        del starts[:whole], ends[:whole]
        if excess:
            starts[0] += excess
            self._horizon = starts[0]

    def _arrived_late(self, seq: int) -> bool:
        """Take ``seq`` out of the missing ranges; False if it was not missing."""
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, seq) - 1
        if i < 0 or seq >= ends[i]:
            return False
        start, end = starts[i], ends[i]
        if end - start == 1:
            del starts[i], ends[i]
        elif seq == start:
            starts[i] = seq + 1
        elif seq == end - 1:
            ends[i] = seq
        else:  # split the range around it
            ends[i] = seq
            starts.insert(i + 1, seq + 1)
            ends.insert(i + 1, end)
        self.missing_count -= 1
        return True

    def record(self, seq: int, sent: float, arrived: float) -> None:
        """Account one datagram: sequence ``seq`` sent at ``sent``, received at ``arrived``."""
        self.received += 1
        if seq > self.packet_count:
            if seq > self.packet_count + 1:
                self.errors += seq - 1 - self.packet_count
                self._gap(self.packet_count + 1, seq)
            self.packet_count = seq
        else:
            self.out_of_order += 1  # late or repeated: iperf3 counts both as out of order
            if self._arrived_late(seq):  # late: no longer lost
                self.errors -= 1
            elif seq >= self._horizon:  # it had arrived: a duplicate, not a late datagram
                self.duplicates += 1
            elif self.errors > 0:  # too old to tell: iperf3's rule
                self.errors -= 1
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
        if first > self.packet_count + 1:
            self.errors += first - 1 - self.packet_count
            self._gap(self.packet_count + 1, first)
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
    def late(self) -> int:
        """Datagrams that arrived after one with a higher sequence number (first copies)."""
        return self.out_of_order - self.duplicates

    @property
    def unique(self) -> int:
        """Distinct datagrams that arrived."""
        return self.received - self.duplicates

    def trailing(self, sent: int) -> int:
        """Datagrams lost after the last one that arrived, when the sender's highest
        sequence number is ``sent``: no later arrival showed their gap, so ``errors``
        cannot include them (iperf3's receiver does not count them either)."""
        return max(0, sent - self.packet_count)

    @property
    def lost_percent(self) -> float:
        return 100.0 * self.errors / self.packet_count if self.packet_count else 0.0
