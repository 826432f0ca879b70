"""``socketkit ping``: ICMP echo, output and exit codes like iputils ping."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time

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
  socketkit ping -w 5 -c 3 -D -O 198.18.2.2     # up to 5 s for 3 replies
SIGQUIT (Ctrl-\\) prints the running summary, as iputils, and goes on.

exit codes: 0 at least one reply (also after Ctrl-C), 1 no reply (or, with -w and -c, fewer
than COUNT replies by the deadline), 2 usage (a value out of range, -f or -i below 0.002
when not root, an unknown -I interface or address), 3 HOST did not resolve, 4 network or
host unreachable, 8 no permission (the message says why and how to allow it),
130 interrupted before the first request, 141 stdout closed.
More: socketkit help ping."""

#: iputils' limits: 1..255 for the TTL, 65507 data bytes over IPv4 (65535 - 20 IPv4 - 8 ICMP),
#: 65527 over IPv6 (65535 - 8 ICMPv6; the IPv6 header is not in the payload length).
_TTL = int_range(1, 255)
_SIZE = int_range(0, 65527)


def _pattern(text: str) -> bytes:
    """iputils -p: hex digits, two per byte, at most 16 bytes (longer patterns are cut)."""
    if not text or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"patterns must be specified as hex digits: {text}")
    return bytes(int(text[i : i + 2], 16) for i in range(0, min(len(text), 32), 2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="host name or IPv4/IPv6 address to ping")
    parser.add_argument(
        "-c",
        dest="count",
        type=int_range(1),
        metavar="COUNT",
        help="stop after COUNT requests and their replies; with -w, after COUNT replies "
        "(default: until Ctrl-C)",
    )
    parser.add_argument(
        "-i",
        dest="interval",
        type=seconds,
        metavar="SECONDS",
        help="seconds between requests; below 0.002 only as root (default 1; with -f: as "
        "fast as replies come, at least every 0.01)",
    )
    parser.add_argument(
        "-w",
        dest="deadline",
        type=int_range(0, 2147483647),
        metavar="DEADLINE",
        help="stop after DEADLINE seconds whatever was sent or received, or at the first ICMP "
        "error; exit 1 if fewer than COUNT replies came (default: none; 0 is none)",
    )
    parser.add_argument(
        "-W",
        dest="timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="after the last request, wait this long for replies while none came; once one "
        "came, twice the longest round trip (at least the interval), as iputils (default 10)",
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
    parser.add_argument(
        "-p",
        dest="pattern",
        type=_pattern,
        metavar="PATTERN",
        help="fill the data after its 16-byte timestamp with these hex bytes, up to 16 "
        "(e.g. ff00; default: the byte values 0, 1, 2, ...)",
    )
    parser.add_argument(
        "-I",
        dest="source",
        metavar="IFACE|ADDR",
        help="send from this interface (SO_BINDTODEVICE) or local address (default: as the "
        "route says)",
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
        "-6",
        dest="family",
        action="store_const",
        const=socket.AF_INET6,
        help="IPv6 only (default: IPv4 first, then IPv6)",
    )
    parser.add_argument(
        "-q",
        dest="quiet",
        action="store_true",
        help="print only the header and the statistics (default: a line per reply)",
    )
    parser.add_argument(
        "-n",
        dest="numeric",
        action="store_true",
        help="numeric addresses only (default: when HOST is a name, replies show the "
        "reverse-DNS name too, as iputils)",
    )
    parser.add_argument(
        "-D",
        dest="timestamps",
        action="store_true",
        help="start each reply line with the Unix time, [seconds.microseconds] (default off)",
    )
    parser.add_argument(
        "-O",
        dest="outstanding",
        action="store_true",
        help="say 'no answer yet for icmp_seq=N' when the next request is due (default off)",
    )
    parser.add_argument(
        "-a", dest="audible", action="store_true", help="ring the bell on each reply (default off)"
    )
    parser.add_argument(
        "-f",
        dest="flood",
        action="store_true",
        help="flood (root only): '.' per request, a backspace per reply; the next request "
        "as soon as all are answered (default off)",
    )
    parser.add_argument(
        "--method",
        choices=("auto", "raw", "dgram"),
        default="auto",
        help="socket kind: raw (needs CAP_NET_RAW), dgram (needs net.ipv4.ping_group_range) "
        "or auto (default: raw if allowed, else dgram)",
    )


#: iputils: an interval below 2 ms (and so -f) is for root only.
_USER_MIN_INTERVAL = 0.002


def run(args: argparse.Namespace) -> int:
    from .._errors import AddressError
    from ..raw.ping import MAX_SIZE, PingReport, iter_ping, resolve

    interval = args.interval
    if interval is None:
        interval = 0.0 if args.flood else 1.0
    if interval < _USER_MIN_INTERVAL and os.geteuid() != 0:
        return usage_error("ping", "cannot flood; minimal interval allowed for user is 2ms")
    source = interface = None
    if args.source is not None:
        if _is_address(args.source):
            source = args.source
        else:
            interface = args.source
    family, address = resolve(args.host, args.family or 0)
    if family == socket.AF_INET and args.size > MAX_SIZE:  # argparse allowed IPv6's limit
        return usage_error(
            "ping",
            f"argument -s: {args.size}: out of range for IPv4 ({address}): "
            f"0 <= value <= {MAX_SIZE}",
        )
    out = sys.stdout
    numeric = args.numeric or _is_address(args.host)
    names: dict[str, str] = {}
    answered: set[int] = set()
    show = not args.quiet and not args.flood

    def stamp() -> str:
        if not args.timestamps:
            return ""
        now = time.time_ns() // 1000
        return f"[{now // 1_000_000}.{now % 1_000_000:06d}] "

    def on_send(seq: int) -> None:
        if args.outstanding and seq > 1 and (seq - 1) not in answered:  # also with -q, -f
            out.write(f"{stamp()}no answer yet for icmp_seq={seq - 1}\n")
        if args.flood and not args.quiet:
            out.write(".")
        out.flush()

    report = PingReport(args.host, address, args.method)
    # Every check (values, permission, socket options) before the header, as iputils does.
    try:
        probes = iter_ping(
            address,
            count=args.count,
            interval=interval,
            timeout=args.timeout,
            size=args.size,
            ttl=args.ttl,
            family=family,
            method=args.method,
            report=report,
            deadline=args.deadline or None,
            pattern=args.pattern,
            source=source,
            interface=interface,
            flood=args.flood,
            on_send=on_send,
            reply_wait=True,
        )
    except AddressError as exc:
        if args.source is None:
            raise
        return usage_error("ping", f"argument -I: {exc}")
    if args.pattern is not None and not args.quiet:
        out.write(f"PATTERN: 0x{args.pattern.hex()}\n")
    frm = ""
    if args.source is not None:
        from ..raw.ping import check_route

        local = check_route(family, address, source=source, interface=interface)
        frm = f" from {local} {interface or ''}:"
    if family == socket.AF_INET6:
        out.write(f"PING {args.host}({address}){frm} {args.size} data bytes\n")
    else:
        size = f"{args.size}({args.size + 28})"
        out.write(f"PING {args.host} ({address}){frm} {size} bytes of data.\n")
    out.flush()
    rtts: list[float] = []
    ewma: list[float] = []  # iputils' moving average: += (rtt - avg) / 8
    pipe = 0  # iputils' "pipe": the most requests outstanding when a reply came

    def status(_signum: int, _frame: object) -> None:
        sent, got = report.transmitted, len(rtts)
        loss = (sent - got) * 100 // sent if sent else 0
        line = f"\r{got}/{sent} packets, {loss}% loss"
        if rtts:
            avg = sum(rtts) / got
            line += (
                f", min/avg/ewma/max = {min(rtts):.3f}/{avg:.3f}/{ewma[0]:.3f}/{max(rtts):.3f} ms"
            )
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGQUIT, status)
    try:
        for probe in probes:
            if probe.error is None and not probe.duplicate and probe.rtt_ms is not None:
                answered.add(probe.seq)
                pipe = max(pipe, ((report.transmitted - probe.seq) & 0xFFFF) + 1)
                rtts.append(probe.rtt_ms)
                if ewma:
                    ewma[0] += (probe.rtt_ms - ewma[0]) / 8
                else:
                    ewma.append(probe.rtt_ms)
            if args.flood and not args.quiet:
                out.write("\bE" if probe.error is not None else "\b \b")
                out.flush()
                continue
            if not show:
                continue
            who = _label(probe.address or "", numeric, names)
            if probe.error is not None:
                out.write(f"{stamp()}From {who} icmp_seq={probe.seq} {probe.error}\n")
            else:
                ttl = "" if probe.ttl is None else f" ttl={probe.ttl}"
                dup = " (DUP!)" if probe.duplicate else ""
                bell = "\a" if args.audible and not probe.duplicate else ""
                out.write(
                    f"{stamp()}{probe.size} bytes from {who}: icmp_seq={probe.seq}{ttl} "
                    f"time={_ms(probe.rtt_ms or 0.0)} ms{dup}{bell}\n"
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
        line = (
            f"rtt min/avg/max/mdev = {stats.rtt_min:.3f}/{stats.rtt_avg:.3f}/"
            f"{stats.rtt_max:.3f}/{stats.rtt_mdev:.3f} ms"
        )
        if pipe > 1:
            line += f", pipe {pipe}"
        if stats.transmitted > 1 and (args.flood or interval == 0) and ewma:
            ipg = stats.time_ms / (stats.transmitted - 1)
            line += f", ipg/ewma {ipg:.3f}/{ewma[0]:.3f} ms"
        out.write(line + "\n")
    else:
        out.write("\n")  # iputils ends a run without replies with a blank line
    out.flush()
    if not stats.received:
        return ExitStatus.FAILURE
    if args.deadline and args.count is not None and stats.received < args.count:
        return ExitStatus.FAILURE  # iputils: fewer replies than -c by the -w deadline
    return ExitStatus.OK


def _is_address(text: str) -> bool:
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, text)
        except OSError:
            continue
        return True
    return False


def _label(address: str, numeric: bool, cache: dict[str, str]) -> str:
    """iputils' reply address: "name (address)" when HOST was a name, unless -n."""
    if numeric or not address:
        return address
    if address not in cache:
        try:
            name = socket.gethostbyaddr(address)[0]
        except OSError:
            name = address
        cache[address] = address if name == address else f"{name} ({address})"
    return cache[address]


def _ms(value: float) -> str:
    # iputils: three significant-ish digits ("0.045", "12.3", "105")
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"
