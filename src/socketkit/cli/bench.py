"""``socketkit bench``: throughput, loss and latency tests that speak iperf3's protocol."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .exit_codes import ExitStatus

SUMMARY = "measure throughput, loss and latency (speaks iperf3)"
DESCRIPTION = """\
Measure a network path like iperf3, and talk to iperf3: 'socketkit bench client' works
against 'iperf3 -s', and 'iperf3 -c' works against 'socketkit bench server'.

  socketkit bench                      self-check: own server on loopback, short TCP and UDP
  socketkit bench server [-p PORT]     serve tests (many clients at once, unlike iperf3)
  socketkit bench client HOST [...]    run one test against an iperf3 or socketkit server
"""
EPILOG = """\
examples:
  socketkit bench client 192.0.2.1 -t 5 -P 2
  socketkit bench client 192.0.2.1 -u -b 100M -l 1400 -J
  socketkit bench client 192.0.2.1 --latency -l 64 -P 4 -t 3
  socketkit bench client 192.0.2.1 -R --plot throughput.svg

exit codes: 0 ok, 1 test failed, 2 usage, 3 resolve, 4 refused, 5 timeout,
7 server busy (ACCESS_DENIED), 10 protocol error, 130 interrupted (docs/bench.md)."""

log = logging.getLogger("socketkit.bench")


def _rate(text: str) -> int:
    from ..bench.units import parse_rate

    return parse_rate(text)


def _size(text: str) -> int:
    from ..bench.units import parse_size

    return parse_size(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="{server,client}")
    srv = sub.add_parser("server", help="serve bench tests (iperf3 -s)")
    srv.add_argument("-p", "--port", type=int, default=5201, help="port (default 5201)")
    srv.add_argument("-B", "--bind", default="", help="local address to listen on (default all)")
    srv.add_argument(
        "--max-tests", type=int, default=8, metavar="N", help="concurrent tests (default 8)"
    )
    srv.add_argument("-1", "--one-off", action="store_true", help="exit after one test")
    srv.add_argument(
        "--control-timeout",
        type=float,
        default=10.0,
        metavar="SECS",
        help="drop a client silent this long on the control connection (default 10)",
    )
    srv.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    cli = sub.add_parser("client", help="run a test against a server (iperf3 -c)")
    cli.add_argument("host", help="server name or address")
    cli.add_argument("-p", "--port", type=int, default=5201, help="server port (default 5201)")
    cli.add_argument("-u", "--udp", action="store_true", help="UDP instead of TCP")
    cli.add_argument(
        "-b",
        "--bitrate",
        type=_rate,
        default=None,
        metavar="RATE",
        help="target bits/s per stream, K/M/G = 10^3/6/9 (UDP default 1M, TCP unlimited; 0 = "
        "unlimited)",
    )
    cli.add_argument(
        "-l",
        "--length",
        type=_size,
        default=None,
        metavar="LEN",
        help="block / datagram / request size (TCP 128K, UDP 1460, latency 64)",
    )
    cli.add_argument("-t", "--time", type=float, default=10.0, metavar="SECS", help="seconds")
    cli.add_argument(
        "-n", "--bytes", type=_size, default=0, metavar="BYTES", help="bytes to send instead of -t"
    )
    cli.add_argument(
        "-k", "--blockcount", type=int, default=0, metavar="N", help="blocks instead of -t"
    )
    cli.add_argument("-P", "--parallel", type=int, default=1, metavar="N", help="streams")
    cli.add_argument("-R", "--reverse", action="store_true", help="the server sends")
    cli.add_argument("--bidir", action="store_true", help="both directions at once")
    cli.add_argument(
        "-i",
        "--interval",
        type=float,
        default=1.0,
        metavar="SECS",
        help="seconds between reports (0 = none)",
    )
    cli.add_argument("-O", "--omit", type=float, default=0.0, metavar="SECS", help="warm-up")
    cli.add_argument("-w", "--window", type=_size, default=0, metavar="WIN", help="socket buffer")
    cli.add_argument("-N", "--no-delay", action="store_true", help="TCP_NODELAY")
    cli.add_argument(
        "-Z", "--zerocopy", action="store_true", help="TCP: send with sendfile() (both ends)"
    )
    cli.add_argument("-J", "--json", action="store_true", help="iperf3-style JSON at the end")
    cli.add_argument(
        "--json-stream", action="store_true", help="one JSON object per line as events happen"
    )
    cli.add_argument(
        "--latency",
        action="store_true",
        help="request/response round trips (-l size, -P in flight): p50/p90/p99/p99.9/max",
    )
    cli.add_argument("--plot", metavar="FILE", help="write interval throughput (.svg or .png)")
    gso = cli.add_mutually_exclusive_group()
    gso.add_argument(
        "--gso",
        dest="gso",
        action="store_true",
        default=None,
        help="UDP: require GSO/GRO batching (default: use when both ends support it)",
    )
    gso.add_argument("--no-gso", dest="gso", action="store_false", help="UDP: plain sends")
    cli.add_argument(
        "--udp-counters-64bit", action="store_true", help="UDP: 64-bit sequence numbers"
    )
    cli.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECS")
    cli.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _setup_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("socketkit bench: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def run(args: argparse.Namespace) -> int:
    if args.mode == "server":
        return _run_server(args)
    if args.mode == "client":
        return _run_client(args)
    return _self_check()


def _run_server(args: argparse.Namespace) -> int:
    from ..bench.server import BenchServer

    _setup_logging(logging.DEBUG if args.debug else logging.INFO)
    with BenchServer(
        args.bind,
        args.port,
        max_tests=args.max_tests,
        max_runs=1 if args.one_off else 0,
        control_timeout=args.control_timeout,
        cookie_timeout=min(5.0, args.control_timeout),
    ) as server:
        host, port = server.address
        print(
            f"socketkit bench server listening on {host or '*'}:{port} "
            f"(max {args.max_tests} tests)",
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


def _run_client(args: argparse.Namespace) -> int:
    from ..bench.client import ClientOptions, run_client
    from ..bench.progress import LiveView, print_summary
    from ..bench.results import IntervalReport

    _setup_logging(logging.DEBUG if args.debug else logging.WARNING)
    length = args.length
    if args.latency and length is None:
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
        zerocopy=args.zerocopy,
        latency=length if args.latency else 0,
        gso=args.gso,
        udp_64bit=args.udp_counters_64bit,
        connect_timeout=args.connect_timeout,
    )
    if args.latency and args.udp:
        print("socketkit bench: --latency runs over TCP; drop -u", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        params = opts.params()
    except Exception as exc:  # LocalProtocolError: out-of-range option
        print(f"socketkit bench: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    human = not (args.json or args.json_stream)
    view = LiveView(params.time + params.omit) if human else None

    def on_interval(report: IntervalReport) -> None:
        if args.json_stream:
            _emit("interval", report.to_json())
        elif view is not None:
            view(report)

    if human:
        print(f"Connecting to host {args.host}, port {args.port}", flush=True)
    elif args.json_stream:
        _emit("start", {"connecting_to": {"host": args.host, "port": args.port}})
    result = run_client(opts, on_interval)
    if view is not None:
        view.finish()
    if args.plot:
        from ..bench.plot import write_plot

        write_plot(args.plot, result.intervals, f"socketkit bench {args.host}")
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
    return ExitStatus.FAILURE if result.errors else ExitStatus.OK


def _emit(event: str, data: object) -> None:
    print(json.dumps({"event": event, "data": data}), flush=True)


def _self_check() -> int:
    """Own server on loopback, then a short TCP and a short UDP test."""
    from ..bench.client import ClientOptions, run_client
    from ..bench.server import BenchServer
    from ..bench.units import format_bits

    _setup_logging(logging.WARNING)
    with BenchServer("127.0.0.1", 0) as server:
        server.start()
        port = server.port
        print(f"self-check: socketkit bench server on 127.0.0.1:{port}", flush=True)
        tcp = run_client(ClientOptions(host="127.0.0.1", port=port, time=2, interval=0))
        print(
            f"TCP, 1 stream, 2 s: {format_bits(tcp.sum_received.bits_per_second)} "
            f"(RTT {tcp.local_rtt_us} us)",
            flush=True,
        )
        udp = run_client(
            ClientOptions(
                host="127.0.0.1",
                port=port,
                udp=True,
                bandwidth=0,
                length=1400,
                time=2,
                interval=0,
            )
        )
        r = udp.sum_received
        dgrams = max(s.packets_sent for s in udp.streams) / max(r.seconds, 1e-9)
        drops = sum(max(s.kernel_drops, 0) for s in udp.streams)
        print(
            f"UDP, 1400 B, flat out, 2 s: {format_bits(r.bits_per_second)}, "
            f"{dgrams / 1e3:.0f} k datagrams/s sent, loss {r.lost_percent:.2g}% "
            f"(kernel receive drops {drops}), GSO {'on' if udp.streams[0].gso else 'off'}",
            flush=True,
        )
        lat = run_client(ClientOptions(host="127.0.0.1", port=port, time=1, latency=64, interval=0))
        if lat.latency:
            print(
                f"TCP latency, 64 B request/response: p50 {lat.latency['p50_us']:.1f} us, "
                f"p99 {lat.latency['p99_us']:.1f} us",
                flush=True,
            )
    print("self-check: OK")
    return ExitStatus.OK
