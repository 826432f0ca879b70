"""``socketkit traceroute``: the routers on the way to a host, like traceroute(8)."""

from __future__ import annotations

import argparse
import socket
import sys

from ..raw.trace import DEFAULT_HERE, DEFAULT_NEAR, DEFAULT_SIM_QUERIES, DEFAULT_WAIT
from ._rawargs import int_range, seconds, usage_error
from .exit_codes import ExitStatus

SUMMARY = "trace the route to a host (like traceroute)"
DESCRIPTION = (
    "Send probes with rising TTL/hop limit to HOST and print who answers at each hop, like "
    "Linux traceroute: up to 16 probes in flight at once (-N), and the trace ends at the "
    "target or at a router that says it is unreachable (!N !H !P !X). UDP probes (default, "
    "ports 33434 and up) and TCP SYN probes (-T) need no privilege; -I sends ICMP echo "
    "probes (raw socket as root, unprivileged ICMP socket otherwise)."
)
EPILOG = """examples:
  socketkit traceroute -n 198.18.2.2
  socketkit traceroute -I -q 1 -w 1 -m 10 example.org

output: one line per hop: hop number, address (name and address without -n), one RTT per
probe, '*' for a probe nobody answered; !H !N !P !X mark unreachable answers (the last hop).
exit codes: 0 done (also when the target was not reached, like traceroute), 2 usage (a value
out of range, an unknown -i interface, a -s address that is not local), 3 HOST did not
resolve, 4 network or host unreachable, 8 ICMP probes without permission (the message says
why and how to allow them), 130 interrupted, 141 stdout closed.
More: socketkit help traceroute."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="host name or IPv4/IPv6 address to trace")
    parser.add_argument(
        "-I",
        dest="method",
        action="store_const",
        const="icmp",
        help="ICMP echo probes (raw socket as root, else an ICMP datagram socket; default: UDP)",
    )
    parser.add_argument(
        "-U",
        dest="method",
        action="store_const",
        const="udp",
        help="UDP probes (the default; no privilege needed)",
    )
    parser.add_argument(
        "-T",
        dest="method",
        action="store_const",
        const="tcp",
        help="TCP SYN probes to -p PORT (default 80) by a non-blocking connect(): no "
        "privilege needed; an answer of the target (SYN-ACK or RST) ends the trace",
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
        type=_waits,
        default=(DEFAULT_WAIT, DEFAULT_HERE, DEFAULT_NEAR),
        metavar="MAX[,HERE,NEAR]",
        help="seconds a probe waits for its answer at most; less once a probe of the same "
        "hop was answered (HERE times its round trip) or of a later hop (NEAR times it); "
        "0 turns a factor off (default 5,3,10, as Linux traceroute)",
    )
    parser.add_argument(
        "-N",
        dest="sim_queries",
        type=int_range(1, 255),
        default=DEFAULT_SIM_QUERIES,
        metavar="SQUERIES",
        help="probes in flight at once, across the hops, 1..255 (default 16; 1 sends one "
        "after another)",
    )
    parser.add_argument(
        "-z",
        dest="sendwait",
        type=_sendwait,
        default=0.0,
        metavar="SENDWAIT",
        help="least time between two probes: seconds, or milliseconds when above 10 (default 0)",
    )
    parser.add_argument(
        "-p",
        dest="port",
        type=int_range(1, 65535),
        metavar="PORT",
        help="UDP probes: the first destination port, +1 per probe, 65535 wraps to 1 "
        "(default 33434); TCP probes (-T): the port of every SYN (default 80)",
    )
    parser.add_argument(
        "-s",
        dest="source",
        metavar="SRC_ADDR",
        help="send from this local address (default: as the route says)",
    )
    parser.add_argument(
        "-i",
        dest="interface",
        metavar="IFACE",
        help="send through this interface (SO_BINDTODEVICE; default: as the route says)",
    )
    parser.add_argument(
        "-n",
        dest="numeric",
        action="store_true",
        help="print addresses only (default: name and address, by reverse DNS)",
    )
    parser.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const=socket.AF_INET,
        help="IPv4 only (default: IPv4 first, then IPv6)",
    )
    parser.add_argument(
        "-6",
        dest="family",
        action="store_const",
        const=socket.AF_INET6,
        help="IPv6 only (default: IPv4 first, then IPv6)",
    )


def _waits(text: str) -> tuple[float, float, float]:
    """Linux traceroute's -w MAX[,HERE[,NEAR]]: numbers >= 0; left out, HERE and NEAR keep
    their defaults."""
    parts = text.split(",")
    if len(parts) > 3:
        raise argparse.ArgumentTypeError(f"{text!r}: want MAX[,HERE,NEAR]")
    values = [DEFAULT_WAIT, DEFAULT_HERE, DEFAULT_NEAR]
    for i, part in enumerate(parts):
        values[i] = seconds(part)
    return values[0], values[1], values[2]


def _sendwait(text: str) -> float:
    """Linux traceroute's -z: seconds, or milliseconds when above 10."""
    value = seconds(text)
    return value / 1000.0 if value > 10 else value


def run(args: argparse.Namespace) -> int:
    from .._errors import AddressError
    from ..raw.ping import resolve
    from ..raw.trace import TraceReport, iter_traceroute

    if args.first_ttl > args.max_ttl:
        return usage_error(
            "traceroute", f"-f {args.first_ttl} is beyond the last TTL (-m {args.max_ttl})"
        )
    method = args.method or "udp"
    family, address = resolve(args.host, args.family or 0)
    report = TraceReport(args.host, address, method)
    names: dict[str, str] = {}
    wait, here, near = args.wait
    # Every check (values, permission, -s and -i) before the header line.
    try:
        hops = iter_traceroute(
            address,
            max_ttl=args.max_ttl,
            nqueries=args.nqueries,
            wait=wait,
            here=here,
            near=near,
            method=method,
            port=args.port,
            first_ttl=args.first_ttl,
            family=family,
            report=report,
            sim_queries=args.sim_queries,
            sendwait=args.sendwait,
            source=args.source,
            interface=args.interface,
        )
    except AddressError as exc:
        text = str(exc)
        for flag, value in (("-i", args.interface), ("-s", args.source)):
            if value is not None and text.startswith(f"{value}: "):
                return usage_error("traceroute", f"argument {flag}: {text}")
        raise
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
