"""``socketkit bench``: throughput, loss and latency tests that speak iperf3's protocol."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable

from .exit_codes import ExitStatus
from .outputs import check_writable

SUMMARY = "measure throughput, loss and latency (speaks iperf3)"
DESCRIPTION = """\
Measure a network path like iperf3, and talk to iperf3: 'socketkit bench client' works
against 'iperf3 -s', and 'iperf3 -c' works against 'socketkit bench server'.

  socketkit bench                      self-check: own server on loopback, short TCP and UDP
  socketkit bench server [-p PORT]     serve tests (many clients at once, unlike iperf3)
  socketkit bench client HOST [...]    run one test against an iperf3 or socketkit server

iperf3's spelling works too: 'socketkit bench -s [...]' is 'bench server [...]', and
'socketkit bench -c HOST [...]' is 'bench client HOST [...]'.
"""
EPILOG = """\
examples:
  socketkit bench
  socketkit bench server -p 5201 --max-tests 4
  socketkit bench client 192.0.2.1 -t 5 -P 2
  socketkit bench -s -1                (iperf3 -s -1)
  socketkit bench -c 192.0.2.1 -R      (iperf3 -c 192.0.2.1 -R)

exit codes: 0 every self-check passed, 1 a self-check failed, 2 usage,
70 internal error (a bug), 130 interrupted.
('socketkit bench server --help' and 'socketkit bench client --help' list theirs.)"""

SERVER_DESCRIPTION = """\
Serve bench tests on one port, like 'iperf3 -s': iperf3 clients and socketkit clients alike.
Unlike iperf3, several tests run at once (up to --max-tests); a client that stalls, vanishes
or breaks the protocol holds its own test only, for at most --control-timeout."""
SERVER_EPILOG = """\
examples:
  socketkit bench server -p 5201
  socketkit bench server -p 5301 -B 127.0.0.1 --max-tests 2 -1
  iperf3 -c 127.0.0.1 -p 5301 -t 5     # any iperf3 client can test against it

exit codes: 0 stopped normally (-1: after its test), 1 cannot listen (address in use or not
available), 2 usage, 3 the -B name did not resolve, 8 permission (a port below 1024),
70 internal error (a bug), 130 interrupted."""

CLIENT_DESCRIPTION = """\
Run one test against 'iperf3 -s' or 'socketkit bench server', like 'iperf3 -c': the options
have iperf3's meanings. Prints interval lines and a summary, or iperf3's JSON (-J)."""
CLIENT_EPILOG = """\
examples:
  socketkit bench client 192.0.2.1 -t 5 -P 2
  socketkit bench client 192.0.2.1 -u -b 100M -l 1400 -J
  socketkit bench client 192.0.2.1 --latency -l 64 -P 4 -t 3
  socketkit bench client 192.0.2.1 -R --plot throughput.svg

exit codes: 0 ok, 1 the test failed (the server reported an error, a stream failed,
--latency against a plain iperf3 server), 2 usage, 3 resolve, 4 refused or reset,
5 timeout, 7 server busy (ACCESS_DENIED), 9 cannot write the --plot file, 10 protocol
error, 70 internal error (a bug), 130 interrupted."""

log = logging.getLogger("socketkit.bench")

#: iperf3's MAX_TIME (a day), and its cap on -O.
MAX_TIME = 86400
MAX_OMIT = 600
#: -w bound: iperf3's MAX_TCP_BUFFER (512 MiB).
MAX_WINDOW = 512 << 20
#: -M bounds: Linux's TCP_MIN_MSS, and iperf3's MAX_MSS (9 KiB).
MIN_MSS = 88
MAX_MSS = 9 * 1024


def _rate(text: str) -> int:
    from .._errors import AddressError
    from ..bench.units import parse_rate

    try:
        return parse_rate(text)
    except AddressError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate: bits/s with an optional K/M/G suffix (powers of 1000), "
            "e.g. 50M or 1.5G"
        ) from None


def _size(text: str) -> int:
    from .._errors import AddressError
    from ..bench.units import parse_size

    try:
        return parse_size(text)
    except AddressError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: bytes with an optional K/M/G suffix (powers of 1024), "
            "e.g. 128K or 1M"
        ) from None


def _window(text: str) -> int:
    value = _size(text)
    if value > MAX_WINDOW:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too large: the socket buffer size is at most 512M (iperf3's limit)"
        )
    return value


def _port(low: int) -> Callable[[str], int]:
    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port must be {low}..65535, not {text!r}")
        return value

    return port


def _count(low: int, high: int) -> Callable[[str], int]:
    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number {low}..{high}, not {text!r}")
        return value

    return count


def _seconds(high: float, *, zero: bool = True) -> Callable[[str], float]:
    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = (value >= 0 if zero else value > 0) and value <= high
        if not ok:
            low = "0" if zero else "more than 0"
            raise argparse.ArgumentTypeError(f"must be {low} to {high:g} seconds, not {text!r}")
        return value

    return seconds


def rewrite_argv(args: list[str]) -> list[str]:
    """iperf3's spelling as the subcommands: ``-s ...`` is ``server ...`` and ``-c HOST ...``
    (also ``--client HOST``, ``-cHOST``, ``--client=HOST``, anywhere among the options) is
    ``client HOST ...``. Arguments that already name a subcommand are left alone."""
    if any(arg in ("server", "client") for arg in args[:1]) or "--" in args:
        return args
    rest: list[str] = []
    mode: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-s", "--server"):
            mode.append("server")
        elif arg in ("-c", "--client"):
            if index + 1 == len(args) or args[index + 1].startswith("-"):
                raise SystemExit(_spelling_error(f"{arg} needs the server's HOST (-c HOST)"))
            mode += ["client", args[index + 1]]
            index += 1
        elif arg.startswith("--client="):
            mode += ["client", arg.split("=", 1)[1]]
        elif arg.startswith("-c") and not arg.startswith("--") and len(arg) > 2:
            mode += ["client", arg[2:]]
        else:
            rest.append(arg)
        index += 1
    if not mode:
        return args
    if mode.count("server") + mode.count("client") > 1:
        raise SystemExit(_spelling_error("give one of -s (server) and -c HOST (client)"))
    return mode + rest


def _spelling_error(message: str) -> int:
    sys.stderr.write(f"socketkit bench: {message}\nsee 'socketkit bench --help'\n")
    return int(ExitStatus.USAGE)


def _add_logfile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logfile",
        metavar="FILE",
        help="append the output (interval lines, summary, JSON, warnings) to FILE instead of "
        "stdout and stderr, as iperf3 --logfile; checked before anything runs (default: "
        "stdout and stderr)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="{server,client}")
    fmt = argparse.RawDescriptionHelpFormatter
    srv = sub.add_parser(
        "server",
        help="serve bench tests (iperf3 -s)",
        description=SERVER_DESCRIPTION,
        epilog=SERVER_EPILOG,
        formatter_class=fmt,
    )
    srv.add_argument(
        "-p",
        "--port",
        type=_port(0),
        default=5201,
        metavar="PORT",
        help="TCP port for control and data, same UDP port for UDP data (default 5201; "
        "0 = any free port)",
    )
    srv.add_argument(
        "-B",
        "--bind",
        default="",
        metavar="ADDR",
        help="local address to listen on (default: every IPv6 and IPv4 address)",
    )
    srv.add_argument(
        "--max-tests",
        type=_count(1, 1024),
        default=8,
        metavar="N",
        help="tests that may run at once; one more gets ACCESS_DENIED (default 8)",
    )
    srv.add_argument(
        "--max-tests-per-host",
        type=_count(1, 1024),
        default=None,
        metavar="N",
        help="tests one client address may run at once (default: half of --max-tests, at least 1)",
    )
    srv.add_argument(
        "-1", "--one-off", action="store_true", help="exit after one test (default: serve on)"
    )
    srv.add_argument(
        "--control-timeout",
        type=_seconds(3600, zero=False),
        default=10.0,
        metavar="SECS",
        help="drop a client silent this long on the control connection, or that has not "
        "sent its parameters this long after connecting (default 10)",
    )
    _add_logfile(srv)
    srv.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG)

    cli = sub.add_parser(
        "client",
        help="run a test against a server (iperf3 -c)",
        description=CLIENT_DESCRIPTION,
        epilog=CLIENT_EPILOG,
        formatter_class=fmt,
    )
    cli.add_argument("host", help="server name or address")
    cli.add_argument(
        "-p",
        "--port",
        type=_port(1),
        default=5201,
        metavar="PORT",
        help="server port (default 5201)",
    )
    cli.add_argument("-u", "--udp", action="store_true", help="UDP instead of TCP (default TCP)")
    cli.add_argument(
        "-b",
        "--bitrate",
        type=_rate,
        default=None,
        metavar="RATE",
        help="target bits/s per stream, K/M/G = 10^3/6/9; 0 = unlimited (default: UDP 1M, "
        "TCP unlimited)",
    )
    cli.add_argument(
        "-l",
        "--length",
        type=_size,
        default=None,
        metavar="LEN",
        help="block / datagram / request size, K/M = 2^10/20; TCP: one send call per block of "
        "exactly LEN (default: TCP 128K blocks, 8 per send call; UDP 1460; --latency 64)",
    )
    cli.add_argument(
        "-t",
        "--time",
        type=_seconds(MAX_TIME),
        default=10.0,
        metavar="SECS",
        help="test length in seconds; 0 = until interrupted, as in iperf3 (default 10)",
    )
    cli.add_argument(
        "-n",
        "--bytes",
        type=_size,
        default=0,
        metavar="BYTES",
        help="bytes to send (all streams together) instead of -t (default 0 = use -t)",
    )
    cli.add_argument(
        "-k",
        "--blockcount",
        type=_count(0, 2**62),
        default=0,
        metavar="N",
        help="blocks to send instead of -t (default 0 = use -t)",
    )
    cli.add_argument(
        "-P",
        "--parallel",
        type=_count(1, 128),
        default=1,
        metavar="N",
        help="parallel streams, 1..128 (default 1)",
    )
    cli.add_argument(
        "-R", "--reverse", action="store_true", help="the server sends (default: the client)"
    )
    cli.add_argument(
        "--bidir", action="store_true", help="both directions at once (default: one direction)"
    )
    cli.add_argument(
        "-i",
        "--interval",
        type=_seconds(MAX_TIME),
        default=1.0,
        metavar="SECS",
        help="seconds between interval reports; 0 = none (default 1)",
    )
    cli.add_argument(
        "-O",
        "--omit",
        type=_seconds(MAX_OMIT),
        default=0.0,
        metavar="SECS",
        help="warm-up not counted; the test runs this much longer (default 0)",
    )
    cli.add_argument(
        "-w",
        "--window",
        type=_window,
        default=0,
        metavar="WIN",
        help="SO_SNDBUF/SO_RCVBUF of the data sockets (default: the system's)",
    )
    cli.add_argument(
        "-M",
        "--set-mss",
        type=_count(MIN_MSS, MAX_MSS),
        default=0,
        metavar="MSS",
        help=f"TCP maximum segment size (TCP_MAXSEG), {MIN_MSS}..{MAX_MSS}, both ends "
        "(default: the system's)",
    )
    cli.add_argument(
        "-S",
        "--tos",
        type=_tos,
        default=0,
        metavar="TOS",
        help="IP type of service / IPv6 traffic class byte, both ends, 0..255 or 0x.. (default 0)",
    )
    cli.add_argument(
        "-C",
        "--congestion",
        metavar="ALGO",
        default="",
        help="TCP congestion control of the data connections, both ends: one of this host's "
        "(/proc/sys/net/ipv4/tcp_available_congestion_control) (default: the system's)",
    )
    cli.add_argument(
        "-B",
        "--bind",
        metavar="ADDR",
        help="local address of the control and data connections (default: the OS picks)",
    )
    cli.add_argument(
        "-N", "--no-delay", action="store_true", help="set TCP_NODELAY (default: Nagle on)"
    )
    cli.add_argument(
        "-Z",
        "--zerocopy",
        action="store_true",
        help="TCP: send with sendfile() at both ends (default: send())",
    )
    cli.add_argument(
        "-J", "--json", action="store_true", help="iperf3-style JSON at the end (default: text)"
    )
    cli.add_argument(
        "--json-stream",
        action="store_true",
        help="one JSON object per line as events happen (default: text)",
    )
    cli.add_argument(
        "--latency",
        action="store_true",
        help="request/response round trips (-l size, -P in flight): p50/p90/p99/p99.9/max; "
        "needs a socketkit server (default: throughput test)",
    )
    cli.add_argument(
        "--plot",
        metavar="FILE",
        help="write interval throughput: .png bars, else SVG (default: no plot)",
    )
    gso = cli.add_mutually_exclusive_group()
    gso.add_argument(
        "--gso",
        dest="gso",
        action="store_true",
        default=None,
        help="UDP: ask for GSO/GRO batching; a note says when it was not used (default: use "
        "it when both ends support it)",
    )
    gso.add_argument(
        "--no-gso",
        dest="gso",
        action="store_false",
        help="UDP: plain sends (default: GSO when both ends support it)",
    )
    cli.add_argument(
        "--udp-counters-64bit",
        action="store_true",
        help="UDP: 64-bit sequence numbers (default 32-bit)",
    )
    cli.add_argument(
        "--connect-timeout",
        type=_seconds(3600, zero=False),
        default=10.0,
        metavar="SECS",
        help="give up connecting after SECS (default 10)",
    )
    _add_logfile(cli)
    cli.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG)


_DEBUG = "show tracebacks and debug logging (default off; also 'socketkit --debug ...')"


def _tos(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"TOS must be 0..255 (e.g. 0x10), not {text!r}")
    return value


def _setup_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("socketkit bench: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def run(args: argparse.Namespace) -> int:
    logfile = getattr(args, "logfile", None)
    if logfile is not None:
        if logfile == "-":
            return _usage(
                args.mode, "--logfile needs a file name (output goes to stdout without it)"
            )
        check_writable(logfile, "--logfile")  # OSError: one line, exit 9, before the test
        with (
            open(logfile, "a", buffering=1, encoding="utf-8") as log_out,
            contextlib.redirect_stdout(log_out),
            contextlib.redirect_stderr(log_out),
        ):
            return _run_mode(args)
    return _run_mode(args)


def _run_mode(args: argparse.Namespace) -> int:
    if args.mode == "server":
        return _run_server(args)
    if args.mode == "client":
        return _run_client(args)
    return _self_check()


def _usage(mode: str, message: str) -> int:
    """A usage error found after parsing: the same two lines as argparse's (cli/main.py)."""
    prog = f"socketkit bench {mode}"
    print(f"{prog}: {message}\nsee '{prog} --help'", file=sys.stderr)
    return ExitStatus.USAGE


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::]:5201``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def _run_server(args: argparse.Namespace) -> int:
    from ..bench.server import BenchServer

    _setup_logging(logging.DEBUG if args.debug else logging.INFO)
    per_host = args.max_tests_per_host
    if per_host is None:
        per_host = max(1, args.max_tests // 2)
    with BenchServer(
        args.bind,
        args.port,
        max_tests=args.max_tests,
        max_tests_per_host=per_host,
        max_runs=1 if args.one_off else 0,
        control_timeout=args.control_timeout,
        cookie_timeout=min(5.0, args.control_timeout),
    ) as server:
        host, port = server.address
        print(
            f"socketkit bench server listening on {host_port(host, port)} "
            f"(max {args.max_tests} tests, {per_host} per client address)",
            flush=True,
        )
        server.start()
        try:
            while not server.wait_done(0.5):
                pass
            # -1: let the finished session write its report line.
            deadline = time.monotonic() + 5
            while server.active_tests and time.monotonic() < deadline:
                time.sleep(0.05)
        except KeyboardInterrupt:
            return ExitStatus.INTERRUPTED
    return ExitStatus.OK


def _available_congestion() -> list[str]:
    """This host's congestion control algorithms (empty where the list cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as fh:
            return fh.read().split()
    except OSError:
        return []


def _conflict(args: argparse.Namespace) -> str:
    """Why these client options cannot go together, or "" if they can."""
    if args.json and args.json_stream:
        return "-J and --json-stream are two output formats; give one of them"
    if args.reverse and args.bidir:
        # iperf3: "cannot be both reverse and bidirectional"
        return "cannot be both reverse and bidirectional; give -R or --bidir"
    if args.latency:
        if args.udp:
            return "--latency runs over TCP; drop -u"
        for flag, on in (
            ("-R", args.reverse),
            ("--bidir", args.bidir),
            ("-n", args.bytes),
            ("-k", args.blockcount),
            ("-b", args.bitrate),
            ("-Z", args.zerocopy),
        ):
            if on:
                return f"--latency times request/response round trips; {flag} does not apply to it"
    if args.congestion and not args.udp:
        available = _available_congestion()
        if available and args.congestion not in available:
            return (
                f"congestion control {args.congestion!r} is not available on this host "
                f"(available: {' '.join(available)}; a module such as tcp_{args.congestion} "
                "may need loading)"
            )
    if args.udp:
        for flag, on in (
            ("-M/--set-mss", args.set_mss),
            ("-N", args.no_delay),
            ("-C/--congestion", args.congestion),
        ):
            if on:
                return f"{flag} is a TCP option; drop it or -u"
    else:
        for flag, on in (
            ("--gso/--no-gso", args.gso is not None),
            ("--udp-counters-64bit", args.udp_counters_64bit),
        ):
            if on:
                return f"{flag} is a UDP option; add -u or drop it"
    if args.bytes and args.blockcount:
        return "-n and -k both end the test; give one of them"
    return ""


def _run_client(args: argparse.Namespace) -> int:
    from .._errors import SocketkitError
    from ..bench.client import ClientOptions, run_client
    from ..bench.progress import LiveView, print_partial_summary, print_summary
    from ..bench.results import IntervalReport

    _setup_logging(logging.DEBUG if args.debug else logging.WARNING)
    length = args.length
    if args.latency and not length:  # -l 0 is "the default", as in iperf3
        length = 64
    opts = ClientOptions(
        host=args.host,
        port=args.port,
        udp=args.udp,
        bandwidth=args.bitrate,
        length=length,
        time=args.time,
        num=args.bytes,
        blockcount=args.blockcount,
        parallel=args.parallel,
        reverse=args.reverse,
        bidir=args.bidir,
        interval=args.interval,
        omit=args.omit,
        window=args.window,
        nodelay=args.no_delay,
        mss=args.set_mss,
        tos=args.tos,
        zerocopy=args.zerocopy,
        latency=length if args.latency else 0,
        gso=args.gso,
        udp_64bit=args.udp_counters_64bit,
        connect_timeout=args.connect_timeout,
        congestion=args.congestion,
        bind=args.bind,
    )
    # Options that cannot apply are refused, never silently ignored.
    conflict = _conflict(args)
    if conflict:
        return _usage("client", conflict)
    try:
        params = opts.params()
    except Exception as exc:  # LocalProtocolError: out-of-range option
        return _usage("client", str(exc))
    # Outputs are checked before the test, not after it has run (docs/cli.md).
    if args.plot:
        check_writable(args.plot, "--plot file")  # OSError: one line, exit 9
    human = not (args.json or args.json_stream)
    view = LiveView(params.time + params.omit) if human else None
    seen: list[IntervalReport] = []

    def on_interval(report: IntervalReport) -> None:
        seen.append(report)
        if args.json_stream:
            _emit("interval", report.to_json())
        elif view is not None:
            view(report)

    def failed(message: str) -> None:
        """A test that did not finish: iperf3 -J prints its error in the document too."""
        if view is not None:
            view.finish()
        if args.json:
            start = {"connecting_to": {"host": args.host, "port": args.port}}
            intervals = [r.to_json() for r in seen]
            doc = {"start": start, "intervals": intervals, "end": {}, "error": message}
            print(json.dumps(doc, indent=2), flush=True)
        elif args.json_stream:
            _emit("error", {"error": message})

    if human:
        print(f"Connecting to host {args.host}, port {args.port}", flush=True)
    elif args.json_stream:
        _emit("start", {"connecting_to": {"host": args.host, "port": args.port}})
    try:
        result = run_client(opts, on_interval)
    except KeyboardInterrupt:
        failed("interrupted")
        if human:
            print_partial_summary(seen, udp=args.udp)
        print("socketkit bench: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except SocketkitError as exc:
        failed(" ".join(str(exc).split()))
        raise  # one line on stderr and the exit status, from cli/main.py
    if view is not None:
        view.finish()
    for error in result.errors:
        print(f"socketkit bench: {error}", file=sys.stderr)
    if args.gso and args.udp and not any(s.gso for s in result.streams):
        print(
            "socketkit bench: note: GSO/GRO was not used (the peer or the kernel lacks it)",
            file=sys.stderr,
        )
    doc = result.to_iperf3_json()
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.json_stream:
        _emit("end", doc["end"] | {"socketkit": doc["socketkit"]})
    else:
        print_summary(result)
    status = ExitStatus.FAILURE if result.errors else ExitStatus.OK
    if args.plot:
        from ..bench.plot import write_plot

        try:
            write_plot(args.plot, result.intervals, f"socketkit bench {args.host}")
        except OSError as exc:
            why = exc.strerror or str(exc)
            print(f"socketkit bench: cannot write --plot file {args.plot}: {why}", file=sys.stderr)
            return ExitStatus.IO
    return status


def _emit(event: str, data: object) -> None:
    print(json.dumps({"event": event, "data": data}), flush=True)


def _self_check() -> int:
    """Own server on loopback, then a short TCP, UDP and latency test.

    Every check looks at what its test reported: an exception, an error the test collected
    (a failed stream, an unanswered request) or no data at all fails it. "self-check: OK"
    only if all passed; otherwise "self-check: FAILED (...)" and exit status 1.
    """
    from .._errors import SocketkitError
    from ..bench import client as bench_client
    from ..bench.client import ClientOptions
    from ..bench.results import BenchResult
    from ..bench.server import BenchServer
    from ..bench.units import format_bits

    _setup_logging(logging.WARNING)
    failed: list[str] = []

    def check(name: str, opts: ClientOptions) -> BenchResult | None:
        try:
            result = bench_client.run_client(opts)
        except SocketkitError as exc:
            print(f"socketkit bench: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            return None
        problems = list(result.errors)
        if not result.sum_received.bytes and not result.latency:
            problems.append("no data arrived")
        for problem in problems:
            print(f"socketkit bench: {name}: {problem}", file=sys.stderr)
        if problems:
            failed.append(name)
        return result

    with BenchServer("127.0.0.1", 0) as server:
        server.start()
        port = server.port
        print(f"self-check: socketkit bench server on 127.0.0.1:{port}", flush=True)
        tcp = check("TCP", ClientOptions(host="127.0.0.1", port=port, time=2, interval=0))
        if tcp is not None:
            print(
                f"TCP, 1 stream, 2 s: {format_bits(tcp.sum_received.bits_per_second)} "
                f"(RTT {tcp.local_rtt_us} us)",
                flush=True,
            )
        udp_opts = ClientOptions(
            host="127.0.0.1", port=port, udp=True, bandwidth=0, length=1400, time=2, interval=0
        )
        udp = check("UDP", udp_opts)
        if udp is not None:
            r = udp.sum_received
            dgrams = max(s.packets_sent for s in udp.streams) / max(r.seconds, 1e-9)
            drops = sum(max(s.kernel_drops, 0) for s in udp.streams)
            print(
                f"UDP, 1400 B, flat out, 2 s: {format_bits(r.bits_per_second)}, "
                f"{dgrams / 1e3:.0f} k datagrams/s sent, loss {r.lost_percent:.2g}% "
                f"(kernel receive drops {drops}), GSO {'on' if udp.streams[0].gso else 'off'}",
                flush=True,
            )
        lat_opts = ClientOptions(host="127.0.0.1", port=port, time=1, latency=64, interval=0)
        lat = check("latency", lat_opts)
        if lat is not None and lat.latency:
            print(
                f"TCP latency, 64 B request/response: p50 {lat.latency['p50_us']:.1f} us, "
                f"p99 {lat.latency['p99_us']:.1f} us",
                flush=True,
            )
    if failed:
        print(f"self-check: FAILED ({', '.join(failed)})", flush=True)
        return ExitStatus.FAILURE
    print("self-check: OK")
    return ExitStatus.OK
