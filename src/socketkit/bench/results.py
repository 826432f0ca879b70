"""Typed bench results, and their rendering in iperf3's ``-J`` schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..proto.iperf3 import BenchParams, ExchangeResults

__all__ = [
    "BenchResult",
    "IntervalReport",
    "IntervalStream",
    "StreamSummary",
    "Sum",
    "TcpSample",
]


def _bps(nbytes: int, seconds: float) -> float:
    return 8.0 * nbytes / seconds if seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TcpSample:
    """A TCP sender's TCP_INFO at the end of an interval, as iperf3 reports it: the
    retransmits during the interval; cwnd and the peer's window in bytes; RTTs in µs."""

    retransmits: int
    snd_cwnd: int
    snd_wnd: int
    rtt: int
    rttvar: int
    pmtu: int


@dataclass(frozen=True, slots=True)
class IntervalStream:
    id: int
    sender: bool  # True when this side sent on the stream
    bytes: int
    bits_per_second: float
    packets: int = 0
    tcp: TcpSample | None = None  # TCP streams this side sends on
    udp: bool = False  # a UDP stream (``packets`` is iperf3's field then)
    #: UDP streams this side receives: the jitter now, and the datagrams of the interval
    #: that never arrived (iperf3's receiver figures; ``packets`` the sequence numbers).
    jitter_ms: float | None = None
    lost_packets: int = 0


@dataclass(frozen=True, slots=True)
class IntervalReport:
    """One ``-i`` interval: seconds since the test started (after ``-O`` warm-up)."""

    start: float
    end: float
    streams: tuple[IntervalStream, ...]
    omitted: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.streams)

    @property
    def bits_per_second(self) -> float:
        return _bps(self.bytes, self.seconds)

    def to_json(self, *, socket_ids: dict[int, int] | None = None) -> dict[str, Any]:
        ids = socket_ids or {}
        streams = [self._stream_json(s, ids) for s in self.streams]
        out: dict[str, Any] = {"streams": streams}
        for key, sender in (("sum", True), ("sum_bidir_reverse", False)):
            part = [s for s in self.streams if s.sender is sender]
            if key == "sum" and not part:
                part = list(self.streams)
            elif not part:
                continue
            nbytes = sum(s.bytes for s in part)
            total: dict[str, Any] = {
                "start": self.start,
                "end": self.end,
                "seconds": self.seconds,
                "bytes": nbytes,
                "bits_per_second": _bps(nbytes, self.seconds),
            }
            samples = [s.tcp for s in part if s.tcp is not None]
            if samples:
                total["retransmits"] = sum(t.retransmits for t in samples)
            received = [s for s in part if s.jitter_ms is not None]
            if received:
                lost = sum(s.lost_packets for s in received)
                packets = sum(s.packets for s in received)
                total["jitter_ms"] = sum(s.jitter_ms or 0.0 for s in received) / len(received)
                total["lost_packets"] = lost
            if any(s.udp for s in part):
                total["packets"] = packets = sum(s.packets for s in part)
            if received:
                total["lost_percent"] = 100.0 * lost / packets if packets else 0.0
            out[key] = total | {"omitted": self.omitted, "sender": part[0].sender}
        return out

    def _stream_json(self, s: IntervalStream, ids: dict[int, int]) -> dict[str, Any]:
        """One stream's interval in iperf3's order of fields."""
        one: dict[str, Any] = {
            "socket": ids.get(s.id, s.id),
            "start": self.start,
            "end": self.end,
            "seconds": self.seconds,
            "bytes": s.bytes,
            "bits_per_second": s.bits_per_second,
        }
        if s.tcp is not None:
            t = s.tcp
            one |= {
                "retransmits": t.retransmits,
                "snd_cwnd": t.snd_cwnd,
                "snd_wnd": t.snd_wnd,
                "rtt": t.rtt,
                "rttvar": t.rttvar,
                "pmtu": t.pmtu,
            }
        if s.jitter_ms is not None:
            one["jitter_ms"] = s.jitter_ms
            one["lost_packets"] = s.lost_packets
        if s.udp:
            one["packets"] = s.packets
        if s.jitter_ms is not None:
            one["lost_percent"] = 100.0 * s.lost_packets / s.packets if s.packets else 0.0
        return one | {"omitted": self.omitted, "sender": s.sender}


@dataclass(frozen=True, slots=True)
class Sum:
    """A total over streams in one direction, as one side measured it."""

    bytes: int
    seconds: float
    retransmits: int = -1
    jitter_ms: float = 0.0
    lost_packets: int = 0
    packets: int = 0
    out_of_order: int = 0

    @property
    def bits_per_second(self) -> float:
        return _bps(self.bytes, self.seconds)

    @property
    def lost_percent(self) -> float:
        return 100.0 * self.lost_packets / self.packets if self.packets else 0.0

    def to_json(
        self, *, sender: bool, udp: bool, retransmits: bool | None = None
    ) -> dict[str, Any]:
        """iperf3's layout; ``retransmits`` (default: ``sender``) says whether a TCP sum has
        that field (iperf3 writes it in every ``sum_sent``, whichever side sent)."""
        out: dict[str, Any] = {
            "start": 0,
            "end": self.seconds,
            "seconds": self.seconds,
            "bytes": self.bytes,
            "bits_per_second": self.bits_per_second,
        }
        if udp:
            out |= {
                "jitter_ms": self.jitter_ms,
                "lost_packets": self.lost_packets,
                "packets": self.packets,
                "lost_percent": self.lost_percent,
            }
        elif sender if retransmits is None else retransmits:
            out["retransmits"] = max(self.retransmits, 0)
        out["sender"] = sender
        return out


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One stream seen from both ends: ``sent`` by one side, ``received`` by the other.

    ``local_sender`` says whether this side (the one holding the result) was the sender.
    UDP figures come from the receiving end; ``kernel_drops`` are datagrams the receiving
    kernel discarded because the socket queue was full (-1: unknown, e.g. iperf3 peer).
    """

    id: int
    local_sender: bool
    sent_bytes: int
    received_bytes: int
    seconds: float
    retransmits: int = -1
    jitter_ms: float = 0.0
    lost_packets: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    kernel_drops: int = -1
    rtt_us: int = 0
    gso: bool = False
    received_seconds: float = 0.0  # the receiver's own duration (0: same as ``seconds``)

    @property
    def receiver_seconds(self) -> float:
        return self.received_seconds or self.seconds

    @property
    def bits_per_second(self) -> float:
        return _bps(self.received_bytes, self.receiver_seconds)

    @property
    def lost_percent(self) -> float:
        return 100.0 * self.lost_packets / self.packets_sent if self.packets_sent else 0.0


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Everything one test measured, returned by :func:`socketkit.bench.run`."""

    params: BenchParams
    host: str
    port: int
    streams: tuple[StreamSummary, ...]
    sum_sent: Sum
    sum_received: Sum
    sum_sent_reverse: Sum | None = None  # --bidir: the server -> client direction
    sum_received_reverse: Sum | None = None
    cpu_local: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu_remote: tuple[float, float, float] = (0.0, 0.0, 0.0)
    intervals: tuple[IntervalReport, ...] = ()
    latency: dict[str, float] | None = None
    local_rtt_us: int = 0
    remote_rtt_us: int = 0
    remote: ExchangeResults | None = None
    start_info: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    congestion: str = ""  # this side's TCP congestion control

    @property
    def bits_per_second(self) -> float:
        """The headline figure: what the receiving side counted, client -> server (or the
        reverse direction with ``-R``)."""
        return self.sum_received.bits_per_second

    def _tcp_extremes(self, stream_id: int) -> dict[str, int]:
        """iperf3's ``max_snd_cwnd``, ``max_snd_wnd`` and RTT figures of a stream over its
        intervals' TCP_INFO samples (zeros where this side did not send on it)."""
        samples = [
            st.tcp
            for report in self.intervals
            for st in report.streams
            if st.id == stream_id and st.tcp is not None
        ]
        rtts = [t.rtt for t in samples]
        return {
            "max_snd_cwnd": max((t.snd_cwnd for t in samples), default=0),
            "max_snd_wnd": max((t.snd_wnd for t in samples), default=0),
            "max_rtt": max(rtts, default=0),
            "min_rtt": min(rtts, default=0),
            "mean_rtt": sum(rtts) // len(rtts) if rtts else 0,
        }

    def to_iperf3_json(self) -> dict[str, Any]:
        """The result in iperf3's ``-J`` layout (fields iperf3 has), plus a ``socketkit``
        object with what iperf3 lacks (latency percentiles, both RTTs, kernel drops)."""
        udp = self.params.protocol == "udp"
        end: dict[str, Any] = {"streams": []}
        for s in self.streams:
            if udp:
                end["streams"].append(
                    {
                        "udp": {
                            "socket": s.id,
                            "start": 0,
                            "end": s.seconds,
                            "seconds": s.seconds,
                            "bytes": s.sent_bytes if s.local_sender else s.received_bytes,
                            "bits_per_second": _bps(
                                s.sent_bytes if s.local_sender else s.received_bytes, s.seconds
                            ),
                            "jitter_ms": s.jitter_ms,
                            "lost_packets": s.lost_packets,
                            "packets": s.packets_sent,
                            "lost_percent": s.lost_percent,
                            "out_of_order": s.out_of_order,
                            "sender": s.local_sender,
                        }
                    }
                )
            else:
                base = {"socket": s.id, "start": 0, "end": s.seconds, "seconds": s.seconds}
                end["streams"].append(
                    {
                        "sender": base
                        | {
                            "bytes": s.sent_bytes,
                            "bits_per_second": _bps(s.sent_bytes, s.seconds),
                            "retransmits": max(s.retransmits, 0),
                        }
                        | self._tcp_extremes(s.id)
                        | {"sender": s.local_sender},
                        "receiver": base
                        | {
                            "end": s.receiver_seconds,
                            "seconds": s.receiver_seconds,
                            "bytes": s.received_bytes,
                            "bits_per_second": s.bits_per_second,
                            "sender": s.local_sender,
                        },
                    }
                )
        client_sends = not self.params.reverse or self.params.bidirectional
        if udp:
            end["sum"] = self.sum_received.to_json(sender=client_sends, udp=True)
        end["sum_sent"] = self.sum_sent.to_json(sender=client_sends, udp=udp, retransmits=True)
        end["sum_received"] = self.sum_received.to_json(sender=client_sends, udp=udp)
        if self.sum_sent_reverse is not None and self.sum_received_reverse is not None:
            end["sum_sent_bidir_reverse"] = self.sum_sent_reverse.to_json(
                sender=False, udp=udp, retransmits=True
            )
            end["sum_received_bidir_reverse"] = self.sum_received_reverse.to_json(
                sender=False, udp=udp
            )
        end["cpu_utilization_percent"] = {
            "host_total": self.cpu_local[0],
            "host_user": self.cpu_local[1],
            "host_system": self.cpu_local[2],
            "remote_total": self.cpu_remote[0],
            "remote_user": self.cpu_remote[1],
            "remote_system": self.cpu_remote[2],
        }
        if not udp:
            # iperf3: the sending side's algorithm, and the receiving side's.
            remote = self.remote.congestion_used if self.remote is not None else ""
            mine, theirs = (self.congestion, remote) if client_sends else (remote, self.congestion)
            if mine:
                end["sender_tcp_congestion"] = mine
            if theirs:
                end["receiver_tcp_congestion"] = theirs
        extra: dict[str, Any] = {
            "local_tcp_rtt_us": self.local_rtt_us,
            "remote_tcp_rtt_us": self.remote_rtt_us,
            "kernel_drops": [s.kernel_drops for s in self.streams],
            "duplicates": sum(s.duplicates for s in self.streams),
            "gso": any(s.gso for s in self.streams),
        }
        if self.latency is not None:
            extra["latency"] = self.latency
        if self.errors:
            extra["errors"] = list(self.errors)
        return {
            "start": self.start_info,
            "intervals": [i.to_json() for i in self.intervals if not i.omitted],
            "end": end,
            "socketkit": extra,
        }
