"""``socketkit traceroute``: the routers on the way to a host, like traceroute(8)."""

from __future__ import annotations

import argparse
import socket
import sys

from ._rawargs import int_range, seconds, usage_error
from .exit_codes import ExitStatus

SUMMARY = "trace the route to a host (like traceroute)"
DESCRIPTION = (
    "Send probes with rising TTL/hop limit to HOST and print who answers at each hop, like "
    "traceroute. UDP probes (default, ports 33434 and up) need no privilege; -I sends ICMP "
    "echo probes (raw socket as root, unprivileged ICMP socket otherwise)."
)
EPILOG = """examples:
  socketkit traceroute -n 198.18.2.2
  socketkit traceroute -I -q 1 -w 1 -m 10 example.org

output: one line per hop: hop number, address (name and address without -n), one RTT per
probe, '*' for a probe nobody answered; !H !N !P !X mark unreachable answers.
exit codes: 0 done (also when the target was not reached, like traceroute), 2 usage (a value
out of range), 3 HOST did not resolve, 4 network or host unreachable, 8 ICMP probes without
permission (the message says why and how to allow them), 130 interrupted, 141 stdout closed.
More: socketkit help traceroute."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="host name or IPv4/IPv6 address to trace")
    parser.add_argument(
        "-I",
        dest="icmp",
        action="store_true",
        help="ICMP echo probes (raw socket as root, else an ICMP datagram socket)",
    )
    parser.add_argument(
        "-U", dest="icmp", action="store_false", help="UDP probes (default; no privilege needed)"
    )
    parser.add_argument(
        "-m",
        dest="max_ttl",
        type=int_range(1, 255),
        default=30,
        metavar="MAX_TTL",
        help="the last TTL / hop limit tried, 1..255 (default 30)",
    )
    parser.add_argument(
        "-f",
        dest="first_ttl",
        type=int_range(1, 255),
        default=1,
        metavar="FIRST_TTL",
        help="the first TTL tried, at most MAX_TTL (default 1)",
    )
    parser.add_argument(
        "-q",
        dest="nqueries",
        type=int_range(1, 10),
        default=3,
        metavar="NQUERIES",
        help="probes per hop, 1..10 (default 3)",
    )
    parser.add_argument(
        "-w",
        dest="wait",
        type=seconds,
        default=5.0,
        metavar="WAIT",
        help="seconds to wait for the answers of one hop (default 5)",
    )
    parser.add_argument(
        "-p",
        dest="port",
        type=int_range(1, 65535),
        default=33434,
        metavar="PORT",
        help="UDP probes: the first destination port, +1 per probe, 65535 wraps to 1 "
        "(default 33434)",
    )
    parser.add_argument(
        "-n", dest="numeric", action="store_true", help="print addresses only (no reverse DNS)"
    )
    parser.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const=socket.AF_INET,
        help="IPv4 only (default: IPv4 first, then IPv6)",
    )
    parser.add_argument(
        "-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 only"
    )


def run(args: argparse.Namespace) -> int:
    from ..raw.ping import resolve
    from ..raw.trace import TraceReport, iter_traceroute

    if args.first_ttl > args.max_ttl:
        return usage_error(
            "traceroute", f"-f {args.first_ttl} is beyond the last TTL (-m {args.max_ttl})"
        )
    family, address = resolve(args.host, args.family or 0)
    report = TraceReport(args.host, address, "icmp" if args.icmp else "udp")
    names: dict[str, str] = {}
    # Every check (values, permission) before the header line.
    hops = iter_traceroute(
        address,
        max_ttl=args.max_ttl,
        nqueries=args.nqueries,
        wait=args.wait,
        method="icmp" if args.icmp else "udp",
        port=args.port,
        first_ttl=args.first_ttl,
        family=family,
        report=report,
    )
    length = 60 if family == socket.AF_INET else 80
    try:
        print(
            f"traceroute to {args.host} ({address}), {args.max_ttl} hops max, "
            f"{length} byte packets",
            flush=True,
        )
        for hop in hops:
            parts = [f"{hop.ttl:2d} "]
            last: str | None = None
            for probe in hop.probes:
                if probe.address is None:
                    parts.append(" *")
                    continue
                if probe.address != last:
                    parts.append(" " + _label(probe.address, args.numeric, names))
                    last = probe.address
                note = f" {probe.note}" if probe.note else ""
                parts.append(f"  {probe.rtt_ms or 0.0:.3f} ms{note}")
            sys.stdout.write("".join(parts) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    finally:
        hops.close()
    return ExitStatus.OK


def _label(address: str, numeric: bool, cache: dict[str, str]) -> str:
    if numeric:
        return address
    if address not in cache:
        try:
            name = socket.gethostbyaddr(address)[0]
        except OSError:
            name = address
        cache[address] = address if name == address else f"{name} ({address})"
    return cache[address]
