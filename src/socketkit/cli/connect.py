"""``socketkit connect HOST PORT``: stdin -> socket, socket -> stdout (a netcat client)."""

from __future__ import annotations

import argparse

from .._addr import parse_service
from ..netcat.args import (
    EOF_TABLE,
    add_common_arguments,
    build_options,
    exit_cleanly_on_sigterm,
    positive_int,
)
from ..netcat.scan import DEFAULT_SCAN_CONCURRENCY
from .netcat_run import run_reporting, usage

PROG = "socketkit connect"

SUMMARY = "connect to a TCP/UDP/Unix peer: stdin <-> socket"
DESCRIPTION = (
    "Connect to HOST PORT (or -U PATH) and relay stdin to the peer and the peer to stdout, "
    "binary-safe. With -z, only check which ports of a range accept connections."
)
EPILOG = (
    EOF_TABLE + "\nexit codes: 0 ok, 1 no open port (-z) or the -e program cannot run, 2 "
    "usage, 3 unknown host, 4 refused, "
    "unreachable or reset, 5 timeout (connect, TLS handshake, idle), 6 TLS failed, 8 "
    "permission, 9 local file I/O (also a TLS file missing or not PEM), 10 datagram too long, "
    "130 interrupted, 141 stdout closed by its reader, 143 SIGTERM. More: socketkit help "
    "connect.\n"
    "examples:\n  socketkit connect example.org 80\n  socketkit connect -z 127.0.0.1 20-25\n"
    "  socketkit connect --tls --alpn h2 example.org 443\n  socketkit connect -U /run/app.sock\n"
    "  socketkit connect --tls --tls-pin SHA256:AB:CD:... host 8443   (listen --tls's own)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "host", nargs="?", metavar="HOST", help="host name or address (IPv6: ::1 or [::1])"
    )
    parser.add_argument(
        "port",
        nargs="?",
        metavar="PORT",
        help="port number or service name such as http (with -z: lists and ranges like "
        "20-25,80,ssh)",
    )
    parser.add_argument(
        "-z",
        "--zero-io",
        action="store_true",
        help="only report which ports accept connections (default: relay data)",
    )
    parser.add_argument(
        "--scan-concurrency",
        type=positive_int,
        metavar="N",
        help=f"-z: probe up to N ports at once; lines still come in port order (default "
        f"{DEFAULT_SCAN_CONCURRENCY}; 1 probes one after another, as nc does)",
    )
    add_common_arguments(parser, listening=False)


def run(args: argparse.Namespace) -> int:
    from ..netcat.connect import run_connect
    from ..netcat.report import Reporter
    from ..netcat.scan import parse_ports

    reporter = Reporter(PROG, verbose=args.verbose, json_lines=args.json)
    exit_cleanly_on_sigterm()

    def body() -> int:
        if args.unix is not None:
            if args.host is not None:
                return usage(PROG, "with -U PATH give no HOST or PORT")
            host, port, ports = None, 0, None
        else:
            if args.host is None or args.port is None:
                return usage(PROG, "give HOST and PORT (or -U PATH)")
            host = args.host.strip("[]") if args.host.startswith("[") else args.host
            proto = "udp" if args.udp else "tcp"
            ports = parse_ports(args.port, proto) if args.zero_io else None
            port = ports[0] if ports else parse_service(args.port, proto)
        if args.scan_concurrency is not None and not args.zero_io:
            return usage(PROG, "--scan-concurrency is for -z scans")
        opts = build_options(args, listening=False, host=host, port=port)
        concurrency = args.scan_concurrency or DEFAULT_SCAN_CONCURRENCY
        return run_connect(opts, reporter, ports=ports, concurrency=concurrency)

    return run_reporting(PROG, reporter, body)
