"""``socketkit ping``: ICMP echo, output and exit codes like iputils ping."""

from __future__ import annotations

import argparse
import socket
import sys

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

exit codes: 0 at least one reply, 1 no reply, 3 HOST did not resolve,
8 no permission (the message says how to enable unprivileged ping). See docs/ping.md."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("-c", dest="count", type=int, metavar="COUNT", help="stop after COUNT")
    parser.add_argument(
        "-i", dest="interval", type=float, default=1.0, metavar="SECONDS", help="default 1"
    )
    parser.add_argument(
        "-W",
        dest="timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for replies after the last request (default 10)",
    )
    parser.add_argument(
        "-s", dest="size", type=int, default=56, metavar="SIZE", help="data bytes (default 56)"
    )
    parser.add_argument("-t", dest="ttl", type=int, metavar="TTL", help="IP TTL / hop limit")
    parser.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET)
    parser.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6)
    parser.add_argument("-q", dest="quiet", action="store_true", help="only the statistics")
    parser.add_argument(
        "--method",
        choices=("auto", "raw", "dgram"),
        default="auto",
        help="socket kind (default: raw if allowed, else dgram)",
    )


def run(args: argparse.Namespace) -> int:
    from ..raw.ping import PingReport, iter_ping, resolve

    if args.count is not None and args.count <= 0:
        print("socketkit ping: -c must be > 0", file=sys.stderr)
        return ExitStatus.USAGE
    family, address = resolve(args.host, args.family or 0)
    report = PingReport(args.host, address, args.method)
    ipv6 = family == socket.AF_INET6
    if ipv6:
        print(f"PING {args.host} ({address}) {args.size} data bytes", flush=True)
    else:
        print(f"PING {args.host} ({address}) {args.size}({args.size + 28}) bytes of data.")
    out = sys.stdout
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
        probes.close()
    stats = report.stats
    if stats is None:
        return ExitStatus.FAILURE
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
