"""``socketkit traceroute``: the routers on the way to a host, like traceroute(8)."""

from __future__ import annotations

import argparse
import socket
import sys

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
exit codes: 0 done (also when the target was not reached, like traceroute), 3 HOST did not
resolve, 8 ICMP probes without permission. See docs/traceroute.md."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("-I", dest="icmp", action="store_true", help="ICMP echo probes")
    parser.add_argument("-U", dest="icmp", action="store_false", help="UDP probes (default)")
    parser.add_argument("-m", dest="max_ttl", type=int, default=30, metavar="MAX_TTL")
    parser.add_argument("-f", dest="first_ttl", type=int, default=1, metavar="FIRST_TTL")
    parser.add_argument("-q", dest="nqueries", type=int, default=3, metavar="NQUERIES")
    parser.add_argument(
        "-w", dest="wait", type=float, default=5.0, metavar="WAIT", help="seconds per hop"
    )
    parser.add_argument("-p", dest="port", type=int, default=33434, metavar="PORT")
    parser.add_argument("-n", dest="numeric", action="store_true", help="no reverse DNS")
    parser.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET)
    parser.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6)


def run(args: argparse.Namespace) -> int:
    from ..raw.ping import resolve
    from ..raw.trace import TraceReport, iter_traceroute

    family, address = resolve(args.host, args.family or 0)
    length = 60 if family == socket.AF_INET else 80
    print(
        f"traceroute to {args.host} ({address}), {args.max_ttl} hops max, {length} byte packets",
        flush=True,
    )
    report = TraceReport(args.host, address, "icmp" if args.icmp else "udp")
    names: dict[str, str] = {}
    try:
        for hop in iter_traceroute(
            address,
            max_ttl=args.max_ttl,
            nqueries=args.nqueries,
            wait=args.wait,
            method="icmp" if args.icmp else "udp",
            port=args.port,
            first_ttl=args.first_ttl,
            family=family,
            report=report,
        ):
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
