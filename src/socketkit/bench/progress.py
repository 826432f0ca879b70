"""Human output: iperf3-style interval lines and summaries."""

from __future__ import annotations

import sys
from typing import TextIO

from .results import BenchResult, IntervalReport
from .units import format_bits, format_bytes

__all__ = ["LiveView", "print_partial_summary", "print_summary"]


class LiveView:
    """Prints each interval as iperf3 does, on a terminal as in a pipe or a file (a
    progress bar on a terminal hid the lines iperf3 users read)."""

    def __init__(self, total_seconds: float, *, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.total = total_seconds
        self._header = False

    def __call__(self, report: IntervalReport) -> None:
        if not self._header:
            self.out.write("[ ID] Interval           Transfer     Bitrate\n")
            self._header = True
        tag = " (omitted)" if report.omitted else ""
        for s in report.streams:
            self.out.write(
                f"[{s.id:3d}] {report.start:6.2f}-{report.end:<6.2f} sec  "
                f"{format_bytes(s.bytes):>12}  {format_bits(s.bits_per_second):>16}"
                f"{'' if s.sender else '  (received)'}{tag}\n"
            )
        if len(report.streams) > 1:
            self.out.write(
                f"[SUM] {report.start:6.2f}-{report.end:<6.2f} sec  "
                f"{format_bytes(report.bytes):>12}  {format_bits(report.bits_per_second):>16}"
                f"{tag}\n"
            )
        self.out.flush()

    def finish(self) -> None:
        self.out.flush()


def print_summary(result: BenchResult, out: TextIO | None = None) -> None:
    """The end-of-test lines: sender and receiver totals per direction, loss, latency."""
    w = (out or sys.stdout).write
    p = result.params
    udp = p.protocol == "udp"
    w("- - - - - - - - - - - - - - - - - - - - - - - - -\n")
    directions = [("", result.sum_sent, result.sum_received)]
    if result.sum_sent_reverse is not None and result.sum_received_reverse is not None:
        directions.append((" reverse", result.sum_sent_reverse, result.sum_received_reverse))
    for label, sent, received in directions:
        secs = sent.seconds
        retr = f"  retransmits {sent.retransmits}" if not udp and sent.retransmits >= 0 else ""
        w(
            f"[SUM]{label:8} 0.00-{secs:<6.2f} sec  {format_bytes(sent.bytes):>12}  "
            f"{format_bits(sent.bits_per_second):>16}  sender{retr}\n"
        )
        extra = ""
        if udp:
            extra = (
                f"  jitter {received.jitter_ms:.3f} ms  lost {received.lost_packets}/"
                f"{received.packets} ({received.lost_percent:.2g}%)"
                f"  out-of-order {received.out_of_order}"
            )
        w(
            f"[SUM]{label:8} 0.00-{secs:<6.2f} sec  {format_bytes(received.bytes):>12}  "
            f"{format_bits(received.bits_per_second):>16}  receiver{extra}\n"
        )
    if udp:
        drops = [s.kernel_drops for s in result.streams if s.kernel_drops >= 0]
        if drops:
            w(f"kernel receive-queue drops: {sum(drops)} (receiver socket statistics)\n")
        dups = sum(s.duplicates for s in result.streams)
        if dups:
            w(f"duplicates: {dups}\n")
        if any(s.gso for s in result.streams):
            w("UDP GSO/GRO: on\n")
    if result.local_rtt_us or result.remote_rtt_us:
        parts = []
        if result.local_rtt_us:
            parts.append(f"client {result.local_rtt_us} us")
        if result.remote_rtt_us:
            parts.append(f"server {result.remote_rtt_us} us")
        else:
            parts.append("the server did not report its own (an iperf3 server does not)")
        w(f"TCP RTT (TCP_INFO): {', '.join(parts)}\n")
    if result.latency:
        lat = result.latency
        w(
            f"latency ({int(lat['count'])} round trips of {p.latency_size} B, "
            f"{p.parallel} in flight): p50 {lat['p50_us']:.1f} us  p90 {lat['p90_us']:.1f} us  "
            f"p99 {lat['p99_us']:.1f} us  p99.9 {lat['p99_9_us']:.1f} us  "
            f"max {lat['max_us']:.1f} us\n"
        )
    loc, rem = result.cpu_local, result.cpu_remote
    w(f"CPU utilization: local {loc[0]:.1f}% (user {loc[1]:.1f}%, system {loc[2]:.1f}%), ")
    w(f"remote {rem[0]:.1f}% (user {rem[1]:.1f}%, system {rem[2]:.1f}%)\n")


def print_partial_summary(
    reports: list[IntervalReport], *, udp: bool, out: TextIO | None = None
) -> None:
    """After Ctrl-C: what this side counted in the intervals reported (the peer's figures
    were never exchanged), a line per direction, as iperf3 prints its partial summary."""
    w = (out or sys.stdout).write
    counted = [r for r in reports if not r.omitted]
    if not counted:
        return
    start, end = counted[0].start, counted[-1].end
    seconds = max(end - start, 1e-9)
    w("- - - - - - - - - - - - - - - - - - - - - - - - -\n")
    for sender, role in ((True, "sender"), (False, "receiver")):
        streams = [s for r in counted for s in r.streams if s.sender is sender]
        if not streams:
            continue
        nbytes = sum(s.bytes for s in streams)
        extra = ""
        if sender and not udp:
            retransmits = [s.tcp.retransmits for s in streams if s.tcp is not None]
            extra = f"  retransmits {sum(retransmits)}" if retransmits else ""
        w(
            f"[SUM]         {start:.2f}-{end:<6.2f} sec  {format_bytes(nbytes):>12}  "
            f"{format_bits(8.0 * nbytes / seconds):>16}  {role}{extra}  (interrupted: this "
            "side's count only)\n"
        )
