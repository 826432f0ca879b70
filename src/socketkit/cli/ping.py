"""``socketkit ping``: ICMP echo, output and exit codes like iputils ping."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys

from ._rawargs import int_range, seconds, usage_error
from .exit_codes import ExitStatus

SUMMARY = "send ICMP echo requests (like ping)"
DESCRIPTION = (
    "Send ICMP (IPv4) or ICMPv6 echo requests to HOST and print each reply and the statistics, "
    "like iputils ping. Uses a raw socket when privileged (root/CAP_NET_RAW), otherwise an "
    "unprivileged ICMP datagram socket (Linux net.ipv4.ping_group_range)."
)
EPILOG = """examples:
  socketkit ping -c 3 127.0.0.1
  socketkit ping -6 -c 5 -i 0.2 -W 1 ::1

exit codes: 0 at least one reply (also after Ctrl-C), 1 no reply, 2 usage (a value out of
range), 3 HOST did not resolve, 4 network or host unreachable, 8 no permission (the message
says why and how to allow it), 130 interrupted before the first request, 141 stdout closed.
More: socketkit help ping."""

#: iputils' limits: 1..255 for the TTL, 65507 data bytes over IPv4 (65535 - 20 IPv4 - 8 ICMP),
#: 65527 over IPv6 (65535 - 8 ICMPv6; the IPv6 header is not in the payload length).
_TTL = int_range(1, 255)
_SIZE = int_range(0, 65527)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="host name or IPv4/IPv6 address to ping")
    parser.add_argument(
        "-c",
        dest="count",
        type=int_range(1),
        metavar="COUNT",
        help="stop after COUNT requests and their replies (default: until Ctrl-C)",
    )
    parser.add_argument(
        "-i",
        dest="interval",
        type=seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between requests (default 1)",
    )
    parser.add_argument(
        "-W",
        dest="timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for replies after the last request (default 10)",
    )
    parser.add_argument(
        "-s",
        dest="size",
        type=_SIZE,
        default=56,
        metavar="SIZE",
        help="data bytes per request, 0..65507 over IPv4, 0..65527 over IPv6 (default 56: "
        "64 ICMP bytes)",
    )
    parser.add_argument(
        "-t",
        dest="ttl",
        type=_TTL,
        metavar="TTL",
        help="IP TTL / IPv6 hop limit, 1..255 (default: the system's, usually 64)",
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const=socket.AF_INET,
        help="IPv4 only (default: IPv4 first, then IPv6)",
    )
    family.add_argument(
        "-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 only"
    )
    parser.add_argument(
        "-q", dest="quiet", action="store_true", help="print only the header and the statistics"
    )
    parser.add_argument(
        "--method",
        choices=("auto", "raw", "dgram"),
        default="auto",
        help="socket kind: raw (needs CAP_NET_RAW), dgram (needs net.ipv4.ping_group_range) "
        "or auto (default: raw if allowed, else dgram)",
    )


def run(args: argparse.Namespace) -> int:
    from ..raw.ping import MAX_SIZE, PingReport, iter_ping, resolve

    family, address = resolve(args.host, args.family or 0)
    if family == socket.AF_INET and args.size > MAX_SIZE:  # argparse allowed IPv6's limit
        return usage_error(
            "ping",
            f"argument -s: {args.size}: out of range for IPv4 ({address}): "
            f"0 <= value <= {MAX_SIZE}",
        )
    report = PingReport(args.host, address, args.method)
    # Every check (values, permission, socket options) before the header, as iputils does.
    probes = iter_ping(
        address,
        count=args.count,
        interval=args.interval,
        timeout=args.timeout,
        size=args.size,
        ttl=args.ttl,
        family=family,
        method=args.method,
        report=report,
    )
    out = sys.stdout
    if family == socket.AF_INET6:
        out.write(f"PING {args.host} ({address}) {args.size} data bytes\n")
    else:
        out.write(f"PING {args.host} ({address}) {args.size}({args.size + 28}) bytes of data.\n")
    out.flush()
    try:
        for probe in probes:
            if args.quiet:
                continue
            if probe.error is not None:
                out.write(f"From {probe.address} icmp_seq={probe.seq} {probe.error}\n")
            else:
                ttl = "" if probe.ttl is None else f" ttl={probe.ttl}"
                dup = " (DUP!)" if probe.duplicate else ""
                out.write(
                    f"{probe.size} bytes from {probe.address}: icmp_seq={probe.seq}{ttl} "
                    f"time={_ms(probe.rtt_ms or 0.0)} ms{dup}\n"
                )
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        probes.close()
    # From here on the answer is known: like iputils, a further Ctrl-C changes nothing.
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    stats = report.stats
    if stats is None:  # interrupted before the first request
        return ExitStatus.INTERRUPTED
    parts = [f"{stats.transmitted} packets transmitted", f"{stats.received} received"]
    if stats.duplicates:
        parts.append(f"+{stats.duplicates} duplicates")
    if stats.errors:
        parts.append(f"+{stats.errors} errors")
    parts.append(f"{stats.loss_percent:g}% packet loss")
    parts.append(f"time {stats.time_ms}ms")
    out.write(f"\n--- {args.host} ping statistics ---\n" + ", ".join(parts) + "\n")
    if stats.rtt_min is not None:
        out.write(
            f"rtt min/avg/max/mdev = {stats.rtt_min:.3f}/{stats.rtt_avg:.3f}/"
            f"{stats.rtt_max:.3f}/{stats.rtt_mdev:.3f} ms\n"
        )
    out.flush()
    return ExitStatus.OK if stats.received else ExitStatus.FAILURE


def _ms(value: float) -> str:
    # iputils: three significant-ish digits ("0.045", "12.3", "105")
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"
