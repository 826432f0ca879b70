"""``socketkit listen [HOST] PORT``: accept peers, socket -> stdout, stdin -> socket."""

from __future__ import annotations

import argparse

from .._addr import parse_service
from ..netcat.access import check_rule
from ..netcat.args import (
    EOF_TABLE,
    add_common_arguments,
    build_options,
    exit_cleanly_on_sigterm,
    positive_int,
    positive_seconds,
)
from ..netcat.limits import DEFAULT_MAX_CONNS, DEFAULT_MAX_PER_SOURCE
from .netcat_run import run_reporting, usage

PROG = "socketkit listen"

SUMMARY = "listen for TCP/UDP/Unix peers: socket <-> stdout"
DESCRIPTION = (
    "Listen on [HOST] PORT (or -U PATH). Without -k: serve one client, then exit. With -k: "
    "serve many clients at once (stdin goes to all of them, their data to stdout); --broker "
    "and --chat relay clients to each other; -e/-c run a program per client."
)
EPILOG = (
    EOF_TABLE + "\nexit codes: 0 ok, 1 failure (address in use, the -e program cannot run), 2 "
    "usage, 3 unknown host, 4 the client reset the connection, 5 timeout (idle, TLS "
    "handshake), 6 TLS failed, 8 permission (privileged port), 9 local file I/O, 130 "
    "interrupted, 141 stdout closed by its reader, 143 SIGTERM (single-client mode; with -k a "
    "client's failure is a warning). More: socketkit help listen.\n"
    "examples:\n  socketkit listen 5000 > received.bin\n  socketkit listen -k --exec cat 7\n"
    "  socketkit listen -k --broker 127.0.0.1 6000\n  socketkit listen --tls 8443\n"
    "  socketkit listen -l -p 5000   (nc's and ncat's spelling)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "where",
        nargs="*",
        metavar="[HOST] PORT",
        help="address and port to listen on; the port a number or a service name such as "
        "http (HOST default: every address, IPv4 and IPv6)",
    )
    parser.add_argument(
        "-p",
        "--port",
        dest="listen_port",
        metavar="PORT",
        help="the port to listen on, as nc -l -p and ncat -l -p take it; then the one "
        "positional argument, if any, is HOST (default: the positional PORT)",
    )
    parser.add_argument(
        "-l",
        "--listen",
        action="store_true",
        help="accepted for nc's and ncat's spelling (listen -l -p 5000); listening is what "
        "this command does (default: listening anyway)",
    )
    parser.add_argument(
        "-k",
        "--keep-open",
        action="store_true",
        help="serve many clients, concurrently (default: one client, then exit)",
    )
    parser.add_argument(
        "-m",
        "--max-conns",
        type=positive_int,
        default=DEFAULT_MAX_CONNS,
        metavar="N",
        help=f"-k, -u: at most N clients (UDP peers, --exec programs) at once; more are "
        f"accepted and closed at once (default {DEFAULT_MAX_CONNS}, as ncat)",
    )
    parser.add_argument(
        "--max-conns-per-source",
        dest="max_per_source",
        type=positive_int,
        default=DEFAULT_MAX_PER_SOURCE,
        metavar="N",
        help=f"-k, -u: at most N of them from one source address "
        f"(default {DEFAULT_MAX_PER_SOURCE})",
    )
    parser.add_argument(
        "--allow",
        action="append",
        type=check_rule,
        metavar="ADDR|CIDR[,...]|@FILE",
        help="admit only these peers (repeatable; a file holds one or more per line) "
        "(default: every peer)",
    )
    parser.add_argument(
        "--deny",
        action="append",
        type=check_rule,
        metavar="ADDR|CIDR[,...]|@FILE",
        help="refuse these peers (IPv4 rules also match IPv4-mapped ::ffff:a.b.c.d peers, "
        "and the reverse) (default: none)",
    )
    parser.add_argument(
        "--broker",
        action="store_true",
        help="relay every client's bytes to all other clients (default: to stdout)",
    )
    parser.add_argument(
        "--chat",
        action="store_true",
        help="--broker with nicknames, line by line (default: off)",
    )
    parser.add_argument(
        "--udp-session-idle",
        type=positive_seconds,
        default=60.0,
        metavar="SECS",
        help="UDP: forget a peer after SECS without datagrams (default 60)",
    )
    add_common_arguments(parser, listening=True)


def run(args: argparse.Namespace) -> int:
    from ..netcat.listen import run_listen
    from ..netcat.report import Reporter

    reporter = Reporter(PROG, verbose=args.verbose, json_lines=args.json)
    exit_cleanly_on_sigterm()

    def body() -> int:
        where = list(args.where)
        proto = "udp" if args.udp else "tcp"
        if args.unix is not None:
            if where or args.listen_port is not None:
                return usage(PROG, "with -U PATH give no HOST or PORT")
            host, port = None, 0
        elif args.listen_port is not None:
            if len(where) > 1 or (where and where[0].isdigit()):
                return usage(PROG, "give the port once: as [HOST] PORT or as [HOST] -p PORT")
            host = where[0].strip("[]") if where else args.source
            port = parse_service(args.listen_port, proto)
        elif len(where) == 1:
            host, port = args.source, parse_service(where[0], proto)
        elif len(where) == 2:
            host, port = where[0].strip("[]"), parse_service(where[1], proto)
        else:
            return usage(PROG, "give [HOST] PORT (or -p PORT, or -U PATH)")
        if args.source is not None and host != args.source:
            return usage(PROG, "give the address once: as HOST or as -s ADDR")
        opts = build_options(args, listening=True, host=host, port=port)
        return run_listen(opts, reporter)

    return run_reporting(PROG, reporter, body)
