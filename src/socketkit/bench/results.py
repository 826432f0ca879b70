"""Typed bench results, and their rendering in iperf3's ``-J`` schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..proto.iperf3 import BenchParams, ExchangeResults

__all__ = ["BenchResult", "IntervalReport", "IntervalStream", "StreamSummary", "Sum"]


def _bps(nbytes: int, seconds: float) -> float:
    return 8.0 * nbytes / seconds if seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class IntervalStream:
    id: int
    sender: bool  # True when this side sent on the stream
    bytes: int
    bits_per_second: float
    packets: int = 0


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
        streams = [
            {
                "socket": ids.get(s.id, s.id),
                "start": self.start,
                "end": self.end,
                "seconds": self.seconds,
                "bytes": s.bytes,
                "bits_per_second": s.bits_per_second,
                "packets": s.packets,
                "omitted": self.omitted,
                "sender": s.sender,
            }
            for s in self.streams
        ]
        out: dict[str, Any] = {"streams": streams}
        for key, sender in (("sum", True), ("sum_bidir_reverse", False)):
            part = [s for s in self.streams if s.sender is sender]
            if key == "sum" and not part:
                part = list(self.streams)
            elif not part:
                continue
            nbytes = sum(s.bytes for s in part)
            out[key] = {
                "start": self.start,
                "end": self.end,
                "seconds": self.seconds,
                "bytes": nbytes,
                "bits_per_second": _bps(nbytes, self.seconds),
                "omitted": self.omitted,
                "sender": part[0].sender,
            }
        return out


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

    def to_json(self, *, sender: bool, udp: bool) -> dict[str, Any]:
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
        elif sender:
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

    @property
    def bits_per_second(self) -> float:
        """The headline figure: what the receiving side counted, client -> server (or the
        reverse direction with ``-R``)."""
        return self.sum_received.bits_per_second

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
                            "sender": s.local_sender,
                        },
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
        end["sum_sent"] = self.sum_sent.to_json(sender=client_sends, udp=udp)
        end["sum_received"] = self.sum_received.to_json(sender=client_sends, udp=udp)
        if self.sum_sent_reverse is not None and self.sum_received_reverse is not None:
            end["sum_sent_bidir_reverse"] = self.sum_sent_reverse.to_json(sender=False, udp=udp)
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
