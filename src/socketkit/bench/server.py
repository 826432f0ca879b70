"""The bench server: iperf3's protocol, many tests at once on one port.

iperf3 runs one test at a time and answers everyone else ACCESS_DENIED (esnet/iperf #140,
#285). Here every control connection gets its own session thread, up to ``max_tests``; the
data connections are matched to their test by cookie. A slow or malicious client can only
hold its own session: every wait has a timeout, every buffer a bound, and connections whose
first 37 bytes are not a cookie are dropped with a log line.

UDP: all UDP data streams arrive on one unconnected socket bound to the port. A session that
creates UDP streams holds ``_udp_lock`` while it answers the connect datagrams (iperf3's UDP
connect message carries no cookie), opening one connected socket per stream on the same port
(SO_REUSEADDR; the kernel delivers a peer's datagrams to the connected socket, which scores
higher than the unconnected one).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import (
    ProtocolError,
    ResolutionError,
    SocketkitError,
    SocketkitTimeout,
    translate_os_error,
)
from ..proto import bench_udp
from ..proto.iperf3 import (
    COOKIE_SIZE,
    DEFAULT_PORT,
    BenchParams,
    ExchangeResults,
    JsonReceived,
    ServerConnection,
    State,
    StateReceived,
    stream_ids,
    validate_cookie,
)
from .control import ControlChannel, unexpected
from .datapath import DataPath, DataStream
from .latency import GREETING
from .server_errors import IE
from .sockopts import OptionRefused, apply_stream_options

__all__ = ["BenchServer", "ServerTestReport"]

log = logging.getLogger("socketkit.bench")

#: Default bound on concurrent tests (``--max-tests``).
DEFAULT_MAX_TESTS = 8
#: Connections that have not yet sent their 37-byte cookie; more are closed at once.
MAX_PENDING = 64
#: How long a new connection may take to send its cookie.
COOKIE_TIMEOUT = 5.0
#: How long to wait for each control message from a client (and for its data streams).
CONTROL_TIMEOUT = 10.0
#: A timed test may overrun its announced duration by this much before it is abandoned.
RUN_GRACE = 30.0
#: A byte- or block-count test may run at most this long.
MAX_COUNTED_TEST = 3600.0
#: Against an iperf3 client, stop sending this long before the test's end (see
#: _wait_test_end): long enough to empty several MiB of socket buffers.
EARLY_STOP = 0.1
#: iperf3's MAX_TIME: a day.
MAX_DURATION = 86400
#: iperf3 parameters this server cannot honour (``--fq-rate``, ``-L``,
#: ``--get-server-output``, ``--dont-fragment``, UDP bursts): a test asking for one is refused
#: with IEUNIMP rather than run without it.
UNSUPPORTED = ("fqrate", "flowlabel", "get_server_output", "dont_fragment", "burst")
#: The accept backlog: large, so bursts of data connections never hit SYN retries.
BACKLOG = 512


@dataclass(frozen=True, slots=True)
class ServerTestReport:
    """What the server logs when a test ends."""

    peer: str
    params: BenchParams
    local: ExchangeResults | None
    error: str = ""

    def line(self) -> str:
        p = self.params
        if self.error:
            return f"test from {self.peer} failed: {self.error}"
        assert self.local is not None
        nbytes = sum(s.bytes for s in self.local.streams)
        secs = max((s.end_time for s in self.local.streams), default=0.0) or 1e-9
        direction = "bidir" if p.bidirectional else ("reverse" if p.reverse else "normal")
        opts = "".join(
            f", {text}" for text, on in ((f"MSS {p.mss}", p.mss), (f"TOS {p.tos:#x}", p.tos)) if on
        )
        return (
            f"test from {self.peer}: {p.protocol.upper()} {direction} x{p.parallel}{opts}, "
            f"{nbytes} bytes in {secs:.2f} s = {8 * nbytes / secs / 1e9:.3f} Gbit/s"
        )


class _Session:
    """One test: owns its control connection and data streams."""

    def __init__(
        self, server: BenchServer, sock: socket.socket, cookie: bytes, *, deadline: float
    ) -> None:
        self.server = server
        self.sock = sock
        self.cookie = cookie
        self.peer = _peer_text(sock)
        self.host = _peer_host(sock)
        #: Monotonic time by which the handshake (parameters, data streams) must be done.
        self.handshake_deadline = deadline
        self.conn = ServerConnection()
        self.ch = ControlChannel(sock, self.conn)
        # (accept order, socket): sorted before use, so stream ids follow the client's order
        # even when cookie reads finish out of order.
        self.incoming: queue.Queue[tuple[int, socket.socket]] = queue.Queue(maxsize=2 * 128 + 2)
        self.expecting = 0
        self.path: DataPath | None = None
        self.params: BenchParams | None = None

    def run(self) -> None:
        report: ServerTestReport | None = None
        try:
            report = self._run()
        except (SocketkitError, OSError) as exc:
            err = exc if isinstance(exc, SocketkitError) else translate_os_error(exc, "control")
            code = IE.MESSAGE if isinstance(err, ProtocolError) else IE.CTRLCLOSE
            if isinstance(err, SocketkitTimeout):
                code = IE.CTRLREAD
            if isinstance(err, _Refused):
                code = err.i_errno
            with contextlib.suppress(OSError):
                self.sock.sendall(self.conn.send_error(code))
            if self.params is not None:
                # One outcome per test: the report line says it failed and why.
                report = ServerTestReport(self.peer, self.params, None, str(err))
            else:
                log.warning("test from %s refused: %s", self.peer, err)
        except Exception:
            log.exception("test from %s: internal error", self.peer)
        finally:
            try:
                if self.path is not None:
                    self.path.close()
                while not self.incoming.empty():
                    self.incoming.get_nowait()[1].close()
                self.sock.close()
                # Reported before the slot is freed: "-1" exits once no test is active,
                # and must not exit before this test's line is written.
                if report is not None:
                    self.server._report(report)
            finally:
                self.server._unregister(self)

    def _remaining(self) -> float:
        return self.handshake_deadline - time.monotonic()

    def _run(self) -> ServerTestReport:
        ch, conn = self.ch, self.conn
        conn.receive_data(self.cookie)
        ch.next(0, "cookie")
        ch.send(conn.send_param_exchange())
        event = ch.poll(max(0.0, self._remaining()))
        if event is None:
            limit = self.server.control_timeout
            raise SocketkitTimeout(f"iperf3 control: no parameters within {limit:g} s")
        if not isinstance(event, JsonReceived) or not isinstance(event.value, BenchParams):
            raise unexpected(event, "parameters")
        p = self.params = event.value
        if p.time > MAX_DURATION:
            raise _Refused(IE.DURATION, "test duration too long")
        asked = sorted(k for k in UNSUPPORTED if p.extra.get(k))
        if asked:
            # Refused, not silently ignored: the client would report a test it did not get.
            raise _Refused(IE.UNIMP, f"not supported by this server: {', '.join(asked)}")
        streams = self._accept_streams(p)
        try:
            for ds in streams:
                apply_stream_options(ds.sock, p)
        except OptionRefused as exc:
            for ds in streams:
                ds.sock.close()
            raise _Refused(_OPTION_ERRNO[exc.option], f"refused the test: {exc.strerror}") from exc
        self.path = DataPath(p, streams, role="server", gso=p.gro, gro=p.gro)
        if p.latency_size:
            for ds in streams:
                ds.sock.sendall(GREETING)  # we echo: the client may start (latency.py)
        ch.send(conn.send_test_start())
        self.path.start()
        self._wait_test_end(p)
        path = self.path
        path.stop_senders()
        if not p.client_version.startswith("socketkit"):
            # An iperf3 client stopped counting when it sent TEST_END; what we queued and it
            # did not acknowledge by then is not reported as sent (docs/bench.md).
            path.uncount_unacknowledged()
        path.wait_acked()
        path.shutdown_senders()
        path.drain_receivers()
        ch.send(conn.send_exchange_results())
        event = ch.next(self.server.control_timeout, "the client's results")
        if not isinstance(event, JsonReceived) or not isinstance(event.value, ExchangeResults):
            raise unexpected(event, "results")
        known = {ds.id for ds in path.streams}
        for s in event.value.streams:
            if s.id not in known:
                raise ProtocolError(f"results for unknown stream id {s.id}")
        local = path.results()
        ch.send(conn.send_results(local))
        with contextlib.suppress(SocketkitError, OSError):
            event = ch.next(self.server.control_timeout, "IPERF_DONE")
        return ServerTestReport(self.peer, p, local)

    def _accept_streams(self, p: BenchParams) -> list[DataStream]:
        count = p.parallel if p.latency_size else p.stream_count
        if p.bidirectional:
            # The client opens its sending streams first: we receive on those.
            roles = [False] * p.parallel + [True] * p.parallel
        else:
            roles = [p.reverse and not p.latency_size] * count
        ids = stream_ids(count)
        if p.protocol == "udp":
            with self.server._udp_lock:
                self.ch.send(self.conn.send_create_streams())
                socks = self.server._udp_connect(
                    self.sock.getpeername()[0], count, p.gro, self.handshake_deadline
                )
        else:
            self.expecting = count
            self.ch.send(self.conn.send_create_streams())
            got: list[tuple[int, socket.socket]] = []
            deadline = self.handshake_deadline
            try:
                while len(got) < count:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SocketkitTimeout(f"only {len(got)} of {count} data streams arrived")
                    try:
                        got.append(self.incoming.get(timeout=min(remaining, 0.2)))
                    except queue.Empty:
                        if self.ch.poll(0) is not None:
                            raise ProtocolError("control message while creating streams") from None
            except BaseException:
                for _, s in got:
                    s.close()
                raise
            finally:
                self.expecting = 0
            socks = [s for _, s in sorted(got, key=lambda item: item[0])]
        return [DataStream(i, s, r) for i, s, r in zip(ids, socks, roles, strict=True)]

    def _wait_test_end(self, p: BenchParams) -> None:
        start = time.monotonic()
        limit = (p.time + p.omit + RUN_GRACE) if p.time else MAX_COUNTED_TEST
        deadline = start + limit
        # iperf3 does not count bytes that arrive after it sent TEST_END ("late receive"),
        # so against an iperf3 client we stop sending a little early and let it read all.
        early = float("inf")
        assert self.path is not None
        sending = any(ds.sender for ds in self.path.streams)
        if p.time and sending and not p.client_version.startswith("socketkit"):
            early = start + p.omit + p.time - EARLY_STOP
        omit_end = start + p.omit if p.omit else float("inf")
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise SocketkitTimeout("the client never ended the test")
            if now >= omit_end:
                # -O: forget the warm-up, as the client does at the same moment (iperf3 does
                # the same; bytes in flight at that instant count on one side only).
                self.path.mark_omit_end()
                omit_end = float("inf")
            if now >= early:
                self.path.stop_senders()
                early = float("inf")
            event = self.ch.poll(max(0.0, min(remaining, 0.5, early - now, omit_end - now)))
            if event is None:
                continue
            if isinstance(event, StateReceived) and event.state is State.TEST_END:
                return
            if isinstance(event, StateReceived) and event.state is State.CLIENT_TERMINATE:
                raise SocketkitError("the client terminated the test")
            raise unexpected(event, "TEST_END")

    def offer_stream(self, order: int, sock: socket.socket) -> bool:
        if self.expecting <= 0:
            return False
        try:
            self.incoming.put_nowait((order, sock))
        except queue.Full:
            return False
        return True


class BenchServer:
    """Serves iperf3 clients (and socketkit ones) on ``host:port``, many tests at once.

    Use as a context manager, or call :meth:`start` and :meth:`close`. ``serve_forever``
    blocks until :meth:`shutdown` (or ``max_runs`` tests have finished).
    """

    def __init__(
        self,
        host: str = "",
        port: int = DEFAULT_PORT,
        *,
        max_tests: int = DEFAULT_MAX_TESTS,
        max_tests_per_host: int | None = None,
        max_runs: int = 0,
        on_report: Callable[[ServerTestReport], None] | None = None,
        control_timeout: float = CONTROL_TIMEOUT,
        cookie_timeout: float = COOKIE_TIMEOUT,
    ) -> None:
        self.host = host
        self.control_timeout = control_timeout
        self.cookie_timeout = cookie_timeout
        self.max_tests = max_tests
        #: Tests one client address may hold at once (default: half of max_tests, at least 1),
        #: so that one source cannot take every slot.
        self.max_tests_per_host = (
            max(1, max_tests // 2) if max_tests_per_host is None else max_tests_per_host
        )
        self.max_runs = max_runs
        self.on_report = on_report
        self._lock = threading.Lock()
        self._udp_lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}
        self._pending = 0
        self._runs = 0
        self._accepted = 0
        self._closed = threading.Event()
        # No address: listen on IPv6 and IPv4 at once (like iperf3), where IPv6 exists.
        family = (
            socket.AF_INET6 if (":" in host or (not host and socket.has_ipv6)) else (socket.AF_INET)
        )
        try:
            self._tcp = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            family = socket.AF_INET
            self._tcp = socket.socket(family, socket.SOCK_STREAM)
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        for sock in (self._tcp, self._udp):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        host = host or ("::" if family == socket.AF_INET6 else "")
        try:
            if host and not _is_address(host):
                host = _resolve(host, family)
            self._tcp.bind((host, port))
            self.port = self._tcp.getsockname()[1]
            self._udp.bind((host, self.port))
            self._tcp.listen(BACKLOG)
        except ResolutionError:
            self._tcp.close()
            self._udp.close()
            raise
        except OSError as exc:
            self._tcp.close()
            self._udp.close()
            raise translate_os_error(exc, f"listen on port {port}") from exc
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._tcp.getsockname()[:2]  # type: ignore[no-any-return]

    @property
    def active_tests(self) -> int:
        with self._lock:
            return len(self._sessions)

    def start(self) -> BenchServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="bench-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        tcp = self._tcp
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([tcp], [], [], 0.2)
                if not ready:
                    continue
                conn, addr = tcp.accept()
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.05)  # EMFILE and friends: do not spin
                continue
            with self._lock:
                if self._pending >= MAX_PENDING:
                    conn.close()
                    log.warning("dropped a connection from %s: too many pending", addr[0])
                    continue
                self._pending += 1
            self._accepted += 1
            threading.Thread(
                target=self._handshake,
                args=(conn, self._accepted, time.monotonic()),
                daemon=True,
            ).start()

    def _handshake(self, conn: socket.socket, order: int, accepted: float) -> None:
        """Read the cookie and route the connection: a data stream or a new test."""
        peer = _peer_text(conn)
        try:
            cookie = b""
            deadline = accepted + min(self.cookie_timeout, self.control_timeout)
            while len(cookie) < COOKIE_SIZE:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(COOKIE_SIZE - len(cookie))
                if not chunk:
                    raise ProtocolError("closed before sending a cookie")
                cookie += chunk
            conn.settimeout(None)
            validate_cookie(cookie)
        except (TimeoutError, OSError, SocketkitError) as exc:
            reason: object = exc
            if isinstance(exc, TimeoutError):
                reason = f"no cookie within {self.cookie_timeout:g} s"
            log.warning("refused a connection from %s: %s", peer, reason)
            with contextlib.suppress(OSError):
                conn.sendall(ServerConnection().send_error(IE.RECVCOOKIE))
            conn.close()
            with self._lock:
                self._pending -= 1
            return
        with self._lock:
            self._pending -= 1
            session = self._sessions.get(cookie)
            if session is not None:
                if not session.offer_stream(order, conn):
                    log.warning("refused an unexpected data connection from %s", peer)
                    conn.close()
                return
            host = _peer_host(conn)
            same_host = sum(1 for s in self._sessions.values() if s.host == host)
            busy = ""
            if self._closed.is_set():
                busy = "the server is stopping"
            elif len(self._sessions) >= self.max_tests:
                busy = f"{len(self._sessions)} tests running (--max-tests)"
            elif same_host >= self.max_tests_per_host:
                busy = f"{same_host} tests from {host} running (--max-tests-per-host)"
            if busy:
                log.warning("refused a test from %s: %s", peer, busy)
                with contextlib.suppress(OSError):
                    conn.sendall(ServerConnection().send_access_denied())
                conn.close()
                return
            # Control messages are tiny and must not wait for a delayed ACK (Nagle).
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(self, conn, cookie, deadline=accepted + self.control_timeout)
            self._sessions[cookie] = session
        session.run()

    def _udp_connect(
        self, peer_ip: str, count: int, gro: bool, deadline: float
    ) -> list[socket.socket]:
        """Answer ``count`` UDP connect datagrams from ``peer_ip`` (caller holds _udp_lock)."""
        socks: list[socket.socket] = []
        try:
            while len(socks) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SocketkitTimeout(f"only {len(socks)} of {count} UDP streams arrived")
                ready, _, _ = select.select([self._udp], [], [], min(remaining, 0.5))
                if not ready:
                    continue
                data, addr = self._udp.recvfrom(64)
                if addr[0] != peer_ip or len(data) != 4:
                    log.debug("ignored a stray UDP datagram from %s", addr[0])
                    continue
                sock = socket.socket(self._udp.family, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(self._udp.getsockname())
                    sock.connect(addr)
                    use_gro = gro and _enable_gro(sock)
                    sock.send(bench_udp.GRO_REPLY if use_gro else bench_udp.CONNECT_REPLY)
                except OSError:
                    sock.close()
                    raise
                socks.append(sock)
        except BaseException:
            for s in socks:
                s.close()
            raise
        return socks

    def _unregister(self, session: _Session) -> None:
        with self._lock:
            self._sessions.pop(session.cookie, None)
            self._runs += 1
            if self.max_runs and self._runs >= self.max_runs:
                self._closed.set()

    def _report(self, report: ServerTestReport) -> None:
        log.info("%s", report.line())
        if self.on_report is not None:
            self.on_report(report)

    def wait_done(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    def shutdown(self) -> None:
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._tcp.close()
        self._udp.close()

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Refused(ProtocolError):
    """The server refuses a test it cannot run as asked; carries iperf3's ``i_errno``."""

    def __init__(self, i_errno: int, message: str) -> None:
        super().__init__(message)
        self.i_errno = i_errno


#: iperf3's i_errno for a socket option the kernel refused.
_OPTION_ERRNO = {
    "window": IE.SETBUF,
    "nodelay": IE.SETNODELAY,
    "mss": IE.SETMSS,
    "tos": IE.SETTOS,
}


def _is_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def _resolve(host: str, family: int) -> str:
    """The first address of ``host`` usable by a socket of ``family``."""
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    return str(infos[0][4][0])


def _peer_host(sock: socket.socket) -> str:
    """The peer's address, IPv4 peers of a dual-stack socket without ``::ffff:``."""
    text = _peer_text(sock)
    return text.rsplit(":", 1)[0] if text != "?" else text


def _peer_text(sock: socket.socket) -> str:
    """``host:port`` of the peer; IPv4 peers of a dual-stack socket without ``::ffff:``."""
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"{host}:{port}"


def _enable_gro(sock: socket.socket) -> bool:
    from .udp_movers import enable_gro

    return enable_gro(sock)
