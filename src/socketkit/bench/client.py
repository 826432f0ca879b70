"""The bench client: drives the iperf3 control protocol and the data streams.

Works against a real ``iperf3 -s`` and against ``socketkit bench server``. Blocking sockets and
threads: the control connection is polled by the calling thread, one thread per data stream.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .._errors import (
    ConnectError,
    RemoteProtocolError,
    ResolutionError,
    SocketkitError,
    SocketkitTimeout,
    translate_os_error,
)
from ..proto import bench_udp
from ..proto.iperf3 import (
    DEFAULT_PORT,
    DEFAULT_TCP_LEN,
    DEFAULT_UDP_LEN,
    BenchParams,
    ClientConnection,
    ExchangeResults,
    JsonReceived,
    State,
    StateReceived,
    StreamResult,
    stream_ids,
)
from .control import ControlChannel, unexpected
from .datapath import DataPath, DataStream
from .histogram import LatencyHistogram
from .intervals import IntervalReporter
from .latency import GREETING_WAIT, LatencyRequester, read_greeting
from .results import BenchResult, IntervalReport, StreamSummary, Sum
from .sockopts import apply_stream_options
from .streams import StreamStats
from .udp_movers import enable_gro

__all__ = ["ClientOptions", "run_client"]

log = logging.getLogger("socketkit.bench")

#: iperf3's default UDP target rate (``UDP_RATE``, 1 Mbit/s).
DEFAULT_UDP_RATE = 1_000_000
#: How long to wait for each control message before giving up on the server.
CONTROL_TIMEOUT = 10.0
#: Pause between the last acknowledged byte and TEST_END (see _run_test).
SETTLE = 0.1
#: ... longer when the peer reads slowly, but never longer than this.
SETTLE_MAX = 2.0
#: UDP connect handshake: resend the connect datagram this often, this many times.
UDP_CONNECT_RETRY = 0.5
UDP_CONNECT_TRIES = 10


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """What ``socketkit bench client`` accepts; every field mirrors an iperf3 option."""

    host: str
    port: int = DEFAULT_PORT
    udp: bool = False
    bandwidth: int | None = None  # bits/s per stream; None = iperf3's default (1M UDP, TCP no cap)
    length: int | None = None  # None = 128 KiB TCP, 1460 UDP
    time: float = 10.0
    num: int = 0
    blockcount: int = 0
    parallel: int = 1
    reverse: bool = False
    bidir: bool = False
    interval: float = 1.0
    omit: float = 0.0
    window: int = 0
    nodelay: bool = False
    mss: int = 0  # -M: TCP_MAXSEG on the data sockets of both ends; 0 = the system's
    tos: int = 0  # -S: IP_TOS / IPV6_TCLASS on the data sockets of both ends
    latency: int = 0  # request/response message size; 0 = throughput test
    gso: bool | None = None  # None = use UDP GSO/GRO when the peer and kernel support it
    udp_64bit: bool = False
    zerocopy: bool = False  # -Z: sendfile() instead of send()
    connect_timeout: float = 10.0
    congestion: str = ""  # -C: TCP congestion control of the data connections, both ends
    bind: str | None = None  # -B: local address of the control and data connections

    def params(self) -> BenchParams:
        if self.reverse and self.bidir:
            # iperf3 refuses this too ("cannot be both reverse and bidirectional").
            raise ValueError("cannot be both reverse and bidirectional; give -R or --bidir")
        proto = "udp" if self.udp else "tcp"
        length = self.length or (DEFAULT_UDP_LEN if self.udp else DEFAULT_TCP_LEN)
        rate = self.bandwidth if self.bandwidth is not None else (DEFAULT_UDP_RATE * self.udp)
        counted = bool(self.num or self.blockcount)
        return BenchParams(
            protocol=proto,
            time=0 if counted else self.time,
            num=self.num,
            blockcount=self.blockcount,
            parallel=self.parallel,
            reverse=self.reverse,
            bidirectional=self.bidir,
            length=length,
            bandwidth=rate,
            omit=self.omit,
            window=self.window,
            nodelay=self.nodelay,
            mss=self.mss,
            tos=self.tos,
            udp_counters_64bit=self.udp_64bit,
            client_version=f"socketkit {__version__}",
            latency_size=self.latency,
            gro=bool(self.udp and self.gso is not False),
            zerocopy=self.zerocopy,
            congestion=self.congestion,
        )


def _connect(opts: ClientOptions) -> socket.socket:
    source = (opts.bind, 0) if opts.bind else None
    try:
        sock = socket.create_connection(
            (opts.host, opts.port), timeout=opts.connect_timeout, source_address=source
        )
    except socket.gaierror as exc:
        raise ResolutionError(f"cannot resolve {opts.host!r}: {exc.strerror}") from exc
    except OSError as exc:
        err = translate_os_error(exc, f"connect to {opts.host}:{opts.port}")
        if isinstance(err, ConnectError | SocketkitTimeout):
            raise err from exc
        raise ConnectError(str(err)) from exc
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _tune(sock: socket.socket, params: BenchParams) -> None:
    # Before connect: TCP_MAXSEG then also bounds the MSS our SYN announces (iperf3 does
    # the same in iperf_tcp_connect).
    apply_stream_options(sock, params)


def _open_tcp_stream(
    peer: tuple[str, int],
    family: int,
    cookie: bytes,
    params: BenchParams,
    source: str | None = None,
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if source:
            sock.bind((source, 0))
        _tune(sock, params)
        sock.settimeout(CONTROL_TIMEOUT)
        sock.connect(peer)
        sock.sendall(cookie)
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        raise translate_os_error(exc, f"open a data stream to {peer[0]}:{peer[1]}") from exc
    return sock


def _open_udp_stream(
    peer: tuple[str, int],
    family: int,
    params: BenchParams,
    *,
    receiver_gro: bool,
    source: str | None = None,
) -> tuple[socket.socket, bool]:
    """Connect a UDP data stream; returns (socket, peer has GRO on)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if source:
            sock.bind((source, 0))
        _tune(sock, params)
        if receiver_gro:
            enable_gro(sock)
        sock.connect(peer)
        sock.settimeout(UDP_CONNECT_RETRY)
        for _ in range(UDP_CONNECT_TRIES):
            sock.send(bench_udp.CONNECT_MSG)
            try:
                reply = sock.recv(64)
            except TimeoutError:
                continue
            if reply in bench_udp.CONNECT_REPLIES:
                sock.settimeout(None)
                return sock, reply == bench_udp.GRO_REPLY
            raise RemoteProtocolError(f"iperf3 UDP connect: unexpected reply {reply!r}")
        raise SocketkitTimeout("iperf3 UDP connect: the server never answered")
    except OSError as exc:
        sock.close()
        raise translate_os_error(exc, f"UDP connect to {peer[0]}:{peer[1]}") from exc
    except SocketkitError:
        sock.close()
        raise


class _ClientTest:
    def __init__(
        self, opts: ClientOptions, on_interval: Callable[[IntervalReport], None] | None
    ) -> None:
        self.opts = opts
        self.params = opts.params()
        self.on_interval = on_interval
        self.intervals: list[IntervalReport] = []
        self.path: DataPath | None = None
        self.remote: ExchangeResults | None = None
        self.peer_gro = False
        self.start_info: dict[str, object] = {}
        self.pause = 0.0  # the pause before TEST_END (see _run_test)
        self.reporter: IntervalReporter | None = None

    def _interval(self, report: IntervalReport) -> None:
        self.intervals.append(report)
        if self.on_interval is not None:
            self.on_interval(report)

    def run(self) -> BenchResult:
        ctrl_sock = _connect(self.opts)
        conn = ClientConnection()
        ch = ControlChannel(ctrl_sock, conn)
        try:
            ch.send(conn.start())
            return self._dialogue(ch, conn)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and self.reporter is not None:
                # Ctrl-C: the interval under way is reported too, up to now (iperf3 prints
                # it and a summary of what this side counted).
                with contextlib.suppress(Exception):
                    self.reporter.stop()
                self.reporter = None
            try:
                if conn.phase.value not in ("done", "error"):
                    ctrl_sock.sendall(conn.send_terminate())
            except OSError:
                pass
            raise
        finally:
            if self.path is not None:
                self.path.close()
            ch.close()

    def _dialogue(self, ch: ControlChannel, conn: ClientConnection) -> BenchResult:
        while True:
            event = ch.next(CONTROL_TIMEOUT, "message from the server")
            if isinstance(event, JsonReceived):
                if not isinstance(event.value, ExchangeResults):
                    raise unexpected(event, "results")
                self.remote = event.value
                continue
            if not isinstance(event, StateReceived) or event.state in (
                State.ACCESS_DENIED,
                State.SERVER_TERMINATE,
                State.CLIENT_TERMINATE,
            ):
                raise unexpected(event, "a state")
            state = event.state
            if state is State.PARAM_EXCHANGE:
                ch.send(conn.send_params(self.params))
            elif state is State.CREATE_STREAMS:
                self._create_streams(ch, conn)
            elif state is State.TEST_START:
                if self.params.latency_size:
                    self._check_echo_server()
            elif state is State.TEST_RUNNING:
                self._run_test(ch, conn)
            elif state is State.EXCHANGE_RESULTS:
                assert self.path is not None
                self.path.drain_receivers()
                if self.reporter is not None:
                    # Up to the last byte received (or the senders' stop): what the
                    # receivers drained after TEST_END belongs to the last interval.
                    last_rx = [self.path.rx_end(st) for st in self.path.stats if not st.sender]
                    self.reporter.finish(max([self.path.t_end, *last_rx]))
                    self.reporter = None
                ch.send(conn.send_results(self.path.results()))
            elif state is State.DISPLAY_RESULTS:
                ch.send(conn.send_done())
                return self._result()

    def _create_streams(self, ch: ControlChannel, conn: ClientConnection) -> None:
        p = self.params
        peer = ch.sock.getpeername()[:2]
        family = ch.sock.family
        local = ch.sock.getsockname()
        # -B: the data connections leave from the control connection's address.
        source = str(local[0]) if self.opts.bind else None
        self.start_info = {
            "connected": [],
            "version": f"socketkit {__version__}",
            "system_info": " ".join(platform.uname()),
            "timestamp": {
                "time": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
                "timesecs": int(time.time()),
            },
            "connecting_to": {"host": self.opts.host, "port": self.opts.port},
            "cookie": conn.cookie[:-1].decode(),
            "test_start": {
                "protocol": p.protocol.upper(),
                "num_streams": p.parallel,
                "blksize": p.length,
                "omit": p.omit,
                "duration": p.time,
                "bytes": p.num,
                "blocks": p.blockcount,
                "reverse": int(p.reverse),
                "tos": p.tos,
                "target_bitrate": p.bandwidth,
                "bidir": int(p.bidirectional),
                "fqrate": 0,
                "interval": self.opts.interval,
            },
        }
        if p.bidirectional:
            roles = [True] * p.parallel + [False] * p.parallel
        else:
            roles = [not p.reverse] * p.parallel
        if p.latency_size:
            roles = [True] * p.parallel
        streams: list[DataStream] = []
        try:
            for sid, sender in zip(stream_ids(len(roles)), roles, strict=True):
                if p.protocol == "udp":
                    sock, gro = _open_udp_stream(peer, family, p, receiver_gro=p.gro, source=source)
                    self.peer_gro = self.peer_gro or gro
                else:
                    sock = _open_tcp_stream(peer, family, conn.cookie, p, source)
                streams.append(DataStream(sid, sock, sender))
                here, there = sock.getsockname(), sock.getpeername()
                self.start_info["connected"].append(  # type: ignore[attr-defined]
                    {
                        "socket": sid,
                        "local_host": here[0],
                        "local_port": here[1],
                        "remote_host": there[0],
                        "remote_port": there[1],
                    }
                )
        except BaseException:
            for ds in streams:
                ds.sock.close()
            raise
        del local
        self.start_info = _with_socket_facts(self.start_info, ch.sock, streams[0].sock, p)
        use_gso = self.peer_gro and self.opts.gso is not False
        self.path = DataPath(
            p,
            streams,
            role="client",
            gso=use_gso,
            gro=p.gro,
            exact_blocks=bool(self.opts.length),  # -l given (0 = the default)
        )

    def _check_echo_server(self) -> None:
        """--latency: every stream must carry the server's greeting (a socketkit server);
        a plain iperf3 server ignores the request and would never echo."""
        assert self.path is not None
        deadline = time.monotonic() + GREETING_WAIT
        try:
            ok = all(read_greeting(ds.sock, deadline) for ds in self.path.streams)
        except OSError as exc:
            raise translate_os_error(exc, "--latency handshake") from exc
        if not ok:
            raise SocketkitError(
                f"--latency needs a socketkit server: {self.opts.host} did not confirm the "
                "latency test (a plain iperf3 server does not echo); drop --latency"
            )

    def _run_test(self, ch: ControlChannel, conn: ClientConnection) -> None:
        assert self.path is not None
        path, p = self.path, self.params
        reporter = IntervalReporter(
            path, self.opts.interval, self._interval, omit=p.omit, duration=p.time
        )
        path.start()
        reporter.start()
        t0 = time.monotonic()
        omit_end = t0 + p.omit
        omitting = p.omit > 0
        deadline = omit_end + p.time if p.time else float("inf")
        path.set_stop_at(deadline)
        receivers = [s for s in path.stats if not s.sender]
        try:
            while True:
                now = time.monotonic()
                if omitting and now >= omit_end:
                    path.mark_omit_end()
                    omitting = False
                if not omitting:
                    if now >= deadline:
                        break
                    if (p.num or p.blockcount) and self._count_reached(receivers):
                        break
                    if path.senders_done() and not receivers:
                        break
                if path.errors():
                    raise SocketkitError("; ".join(path.errors()))
                wait = min(0.05, max(0.0, deadline - now))
                ready, _, _ = select.select([ch.sock], [], [], wait)
                if ready:
                    event = ch.poll(0)
                    if event is not None:
                        raise unexpected(event, "the end of the test")
        finally:
            path.stop_senders()
            reporter.stop_ticking()  # the last interval is reported after the drain
            self.reporter = reporter
        if p.protocol == "udp" or not any(st.sender for st in path.stats):
            # -R, or UDP: nothing of ours waits to be acknowledged and read, so no pause (the
            # pause below is for TCP data the peer acknowledged but has not read): TEST_END
            # now stops the peer's senders, and what is still in flight counts at this moment,
            # as iperf3 counts it (a pause would be receiving time at the peer's rate).
            path.t_rx_end = time.monotonic()
            if p.protocol == "tcp":
                path.hold_receivers()  # they held at the deadline: their time ends there
            self.pause = 0.0
            ch.send(conn.send_test_end())
            return
        if receivers:
            path.hold_receivers()  # --bidir: the pause below is not receiving time
        acking = time.monotonic()
        path.wait_acked()
        paused = time.monotonic()
        # An iperf3 server stops counting at TEST_END and drops what is still in its socket
        # buffers; give it time to read what it already acknowledged. How long the queue took
        # to be acknowledged measures how fast the peer reads (on a busy receiver the window
        # is closed and our queue drains at its reading pace): its buffer needs about as long
        # again, so the pause is twice that, at least SETTLE. iperf3 stamps its receiver time
        # at TEST_END, so the pause is subtracted from that time in _result (nothing was sent
        # during it) and costs only wall-clock time.
        time.sleep(min(SETTLE_MAX, max(SETTLE, 2 * (paused - acking))))
        self.pause = time.monotonic() - paused
        ch.send(conn.send_test_end())

    def _receiver_seconds(self, r: StreamResult | None, seconds: float) -> float:
        """The peer's receiving time for one of our sending streams.

        A socketkit server reports the time to its last received byte. An iperf3 server
        reports the time to TEST_END (iperf_stats_callback at TEST_END sets end_time): that
        includes our pause before TEST_END, which is taken off again, so the receiver's time
        ends where its data ended, as with a socketkit server (1.00 s, not 1.10 s).
        """
        if r is None or r.end_time <= 0:
            return seconds
        if self.remote is not None and _from_socketkit(self.remote):
            return r.end_time
        return max(r.end_time - self.pause, 1e-9)

    @staticmethod
    def _trailing(r: StreamResult, sent: int) -> int:
        """Datagrams a socketkit receiver never saw after its last arrival (``sent`` is our
        highest sequence number, ``packets + omitted_packets`` its): a receiver that counts
        gaps cannot see them. An iperf3 receiver stops reading at TEST_END and leaves what is
        still queued unread, so for it the gap-count alone stays, as iperf3 reports it."""
        if r.received < 0:
            return 0
        return max(0, sent - r.packets - r.omitted_packets)

    def _count_reached(self, receivers: list[StreamStats]) -> bool:
        p = self.params
        if p.num and sum(s.bytes for s in receivers) >= p.num:
            return True
        if p.blockcount and receivers:
            return sum(s.bytes for s in receivers) >= p.blockcount * p.length
        return False

    def _result(self) -> BenchResult:
        assert self.path is not None
        path, p = self.path, self.params
        remote_by_id: dict[int, StreamResult] = {}
        if self.remote is not None:
            remote_by_id = {s.id: s for s in self.remote.streams}
        seconds = path.seconds
        summaries = []
        for st in path.stats:
            r = remote_by_id.get(st.id)
            if r is None and not p.latency_size:
                raise RemoteProtocolError(
                    f"iperf3 results: the server did not report stream {st.id}"
                )
            udp = st.udp
            if st.sender:
                summaries.append(
                    StreamSummary(
                        id=st.id,
                        local_sender=True,
                        sent_bytes=st.measured_bytes,
                        received_bytes=r.bytes if r else st.measured_bytes,
                        seconds=seconds,
                        retransmits=st.retransmits,
                        jitter_ms=(r.jitter * 1000) if r else 0.0,
                        lost_packets=(r.errors + self._trailing(r, st.packets)) if r else 0,
                        packets_sent=st.packets - st.base_packets,
                        packets_received=r.received if r and r.received >= 0 else 0,
                        out_of_order=max(r.out_of_order, 0) if r else 0,
                        duplicates=max(r.duplicates, 0) if r else 0,
                        kernel_drops=r.kernel_drops if r else -1,
                        rtt_us=st.rtt_us,
                        gso=st.gso,
                        received_seconds=self._receiver_seconds(r, seconds),
                    )
                )
            else:
                assert r is not None
                summaries.append(
                    StreamSummary(
                        id=st.id,
                        local_sender=False,
                        sent_bytes=r.bytes,
                        received_bytes=st.measured_bytes,
                        seconds=seconds,
                        retransmits=r.retransmits,
                        jitter_ms=(udp.jitter * 1000) if udp else 0.0,
                        lost_packets=(
                            udp.errors
                            - st.base_errors
                            + udp.trailing(r.packets + r.omitted_packets)
                        )
                        if udp
                        else 0,
                        packets_sent=r.packets,
                        packets_received=udp.received if udp else 0,
                        out_of_order=udp.out_of_order if udp else 0,
                        duplicates=udp.duplicates if udp else 0,
                        kernel_drops=st.kernel_drops,
                        rtt_us=st.rtt_us,
                        received_seconds=path.stream_seconds(st),
                    )
                )
        client_sends = not p.reverse
        primary = [s for s in summaries if s.local_sender is client_sends]
        sum_sent, sum_received = _sums(primary, seconds)
        rev_sent = rev_received = None
        if p.bidirectional:
            rev_sent, rev_received = _sums([s for s in summaries if not s.local_sender], seconds)
        latency = None
        lat = [m for m in path.movers if isinstance(m, LatencyRequester)]
        errors = list(path.errors())
        if lat:
            latency = LatencyHistogram().merge(m.histogram for m in lat).summary_us()
            if not latency["count"]:
                errors.append(
                    "no request was answered: --latency needs a socketkit server (an iperf3 "
                    "server does not echo)"
                )
        remote_rtts = [
            s.rtt_us for s in (self.remote.streams if self.remote else ()) if s.rtt_us > 0
        ]
        local_rtts = [s.rtt_us for s in path.stats if s.rtt_us > 0]
        cpu = path.cpu_usage
        rc = self.remote
        return BenchResult(
            params=p,
            host=self.opts.host,
            port=self.opts.port,
            streams=tuple(summaries),
            sum_sent=sum_sent,
            sum_received=sum_received,
            sum_sent_reverse=rev_sent,
            sum_received_reverse=rev_received,
            cpu_local=(cpu.total, cpu.user, cpu.system),
            cpu_remote=(rc.cpu_util_total, rc.cpu_util_user, rc.cpu_util_system)
            if rc
            else (0, 0, 0),
            intervals=tuple(self.intervals),
            latency=latency,
            local_rtt_us=max(local_rtts, default=0),
            remote_rtt_us=max(remote_rtts, default=0),
            remote=rc,
            start_info=self.start_info,
            errors=tuple(errors),
            congestion=path.congestion,
        )


def _with_socket_facts(
    start: dict[str, Any], control: socket.socket, data: socket.socket, p: BenchParams
) -> dict[str, Any]:
    """``start`` with iperf3's socket fields, placed before ``test_start`` as iperf3 writes
    them: the MSS (the control connection's, or -M), the rate asked for, -w, and the buffer
    sizes the kernel gave the first data socket."""
    facts: dict[str, Any] = {}
    if p.protocol == "tcp":
        if p.mss:
            facts["tcp_mss"] = p.mss
        else:
            with contextlib.suppress(OSError):
                facts["tcp_mss_default"] = control.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    facts["target_bitrate"] = p.bandwidth
    facts["sock_bufsize"] = p.window
    with contextlib.suppress(OSError):
        facts["sndbuf_actual"] = data.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        facts["rcvbuf_actual"] = data.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    out = {k: v for k, v in start.items() if k != "test_start"}
    return out | facts | {"test_start": start["test_start"]}


def _from_socketkit(results: ExchangeResults) -> bool:
    """True if the peer's results carry socketkit's extension keys (iperf3's do not)."""
    return any(
        max(s.rtt_us, s.received, s.kernel_drops, s.out_of_order) >= 0 for s in results.streams
    )


def _sums(streams: list[StreamSummary], seconds: float) -> tuple[Sum, Sum]:
    if not streams:
        return Sum(0, seconds), Sum(0, seconds)
    jit = sum(s.jitter_ms for s in streams) / len(streams)
    lost = sum(s.lost_packets for s in streams)
    packets = sum(s.packets_sent for s in streams)
    ooo = sum(s.out_of_order for s in streams)
    retrans = sum(max(s.retransmits, 0) for s in streams)
    sent = Sum(sum(s.sent_bytes for s in streams), seconds, retrans, jit, lost, packets, ooo)
    rx_seconds = max(s.receiver_seconds for s in streams)
    received = Sum(sum(s.received_bytes for s in streams), rx_seconds, -1, jit, lost, packets, ooo)
    return sent, received


def run_client(
    opts: ClientOptions, on_interval: Callable[[IntervalReport], None] | None = None
) -> BenchResult:
    """Run one test against ``opts.host`` (iperf3 or socketkit server) and return the result.

    Raises ConnectError/ConnectionRefused (no server), AccessDenied (busy server),
    SocketkitTimeout (the server went silent), RemoteProtocolError (the server broke the
    protocol), SocketkitError (the server reported an error). Every socket is closed on return.
    """
    return _ClientTest(opts, on_interval).run()
