"""``socketkit.ping()``: ICMP echo over a raw socket (root / CAP_NET_RAW) or an unprivileged
ICMP datagram socket (Linux ``net.ipv4.ping_group_range``, also used for IPv6).

Replies are validated: the identifier (the kernel rewrites it to the socket's "port" on a
datagram socket, so that is what we expect there), a sequence number we sent and have not seen
answered, the IPv4 checksum, and the source address.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from .._errors import (
    AddressError,
    PermissionDenied,
    ResolutionError,
    SocketkitError,
    translate_os_error,
)
from . import echo, errqueue

__all__ = [
    "PingReport",
    "PingStats",
    "Probe",
    "bind_device",
    "bind_source",
    "check_route",
    "iter_ping",
    "open_icmp",
    "payload_for",
    "ping",
    "resolve",
]

#: iputils' default: 56 data bytes, 64 with the ICMP header.
DEFAULT_SIZE = 56
#: Seconds to wait for the last reply (iputils -W; its linger default is 10 s).
DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 1.0
#: Largest data size: an IPv4 datagram of 65535 bytes less 20 (IP) and 8 (ICMP).
MAX_SIZE = 65507
#: The same for IPv6, whose 40-byte header is outside its 65535-byte payload length.
MAX_SIZE_V6 = 65527
#: IP_TTL / IPV6_UNICAST_HOPS accept 1..255 (ip(7), ipv6(7)).
MAX_TTL = 255
#: iputils -p: at most 16 pattern bytes.
MAX_PATTERN = 16
#: iputils -f without -i: the next request when the last is answered, or after 10 ms.
_FLOOD_STEP = 0.01
#: The send time at the start of the data, as iputils writes it (a native struct timeval).
_TIMEVAL = struct.Struct("=qq")
IP_RECVTTL, IP_TTL_CMSG = 12, 2  # linux/in.h
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52  # linux/in6.h

_ICMP_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED, errno.EPROTO, errno.EACCES}
)

_PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"


def _group_range() -> str | None:
    """The current ``net.ipv4.ping_group_range`` as "LOW HIGH" (None if unreadable)."""
    try:
        with open(_PING_GROUP_RANGE, encoding="ascii") as fh:
            return " ".join(fh.read().split())
    except OSError:
        return None


def _dgram_refused(tool: str, method: str) -> str:
    """Why the kernel refused an ICMP datagram socket, and what would allow it.

    Linux allows ``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`` (and the ICMPv6 one) only when
    the caller's group is within ``net.ipv4.ping_group_range`` -- for root too: the kernel
    default "1 0" allows no group at all (icmp(7), ``ping_group_range``).
    """
    gid = os.getegid()
    current = _group_range()
    now = f' (net.ipv4.ping_group_range is "{current}")' if current is not None else ""
    allow = f"'sudo sysctl -w net.ipv4.ping_group_range=\"{gid} {gid}\"'"
    if method == "dgram":
        text = f"ICMP datagram sockets are not allowed for group {gid}{now}: allow it with {allow}"
        if os.geteuid() == 0:
            text += ", or use a raw socket (method 'raw' or 'auto'): you are root"
        return text
    return (
        f"{tool} needs CAP_NET_RAW or an unprivileged ICMP socket: run it as root (sudo), or "
        f"allow ICMP datagram sockets for your group {gid}{now} with {allow}"
    )


@dataclass(frozen=True, slots=True)
class Probe:
    """One echo request and what became of it.

    ``rtt_ms`` is None when no reply came; ``error`` holds an ICMP error text (e.g. "Time to
    live exceeded") and ``address`` then names the router that sent it.
    """

    seq: int
    address: str | None
    rtt_ms: float | None
    ttl: int | None
    size: int
    error: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.rtt_ms is not None and self.error is None


@dataclass(frozen=True, slots=True)
class PingStats:
    transmitted: int
    received: int
    errors: int
    duplicates: int
    loss_percent: float
    time_ms: int
    rtt_min: float | None
    rtt_avg: float | None
    rtt_max: float | None
    rtt_mdev: float | None


@dataclass
class PingReport:
    """What :func:`ping` returns: the probes (iterate it) and the statistics."""

    host: str
    address: str
    method: str  # "raw" or "dgram"
    probes: list[Probe] = field(default_factory=list)
    stats: PingStats | None = None
    #: requests sent so far (kept up to date while the run goes on)
    transmitted: int = 0

    def __iter__(self) -> Iterator[Probe]:
        return iter(self.probes)

    def __len__(self) -> int:
        return len(self.probes)


def resolve(host: str, family: int = 0) -> tuple[int, str]:
    """(address family, numeric address) of ``host``; IPv4 preferred like iputils."""
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ResolutionError(f"{host}: {exc.strerror}") from exc
    infos.sort(key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    fam, _t, _p, _c, addr = infos[0]
    return fam, str(addr[0])


def bind_device(sock: socket.socket, interface: str) -> None:
    """``SO_BINDTODEVICE``: send and receive only through ``interface``.

    Raises:
        AddressError: there is no such interface.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise AddressError(f"{interface}: no such interface (see 'ip link')") from exc
        raise


def bind_source(sock: socket.socket, source: str) -> None:
    """Bind ``sock`` to the local address ``source`` (port 0).

    Raises:
        AddressError: ``source`` is not an address of this host (or not of its family).
    """
    try:
        socket.inet_pton(sock.family, source)
    except OSError:
        version = 6 if sock.family == socket.AF_INET6 else 4
        raise AddressError(f"{source}: not an IPv{version} address, as the target is") from None
    try:
        sock.bind((source, 0))
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise AddressError(f"{source}: {why.lower()} (not a local address?)") from exc


def check_route(
    family: int, address: str, *, source: str | None = None, interface: str | None = None
) -> str:
    """Raise at once when the kernel has no route to ``address``, as iputils does before its
    header: a UDP ``connect()`` sends nothing, it only looks the route up (udp(7)). Returns
    the source address the kernel would use.

    Raises:
        AddressError: no such ``interface``, or ``source`` is not a local address.
        ConnectionRefused: the network or host is unreachable (ENETUNREACH, EHOSTUNREACH).
        SocketkitError: another error of the route lookup.
    """
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        if interface is not None:
            bind_device(probe, interface)
        if source is not None:
            bind_source(probe, source)
        try:
            probe.connect((address, 9))
        except OSError as exc:
            raise translate_os_error(exc, f"no route to {address}") from exc
        return str(probe.getsockname()[0])


def open_icmp(
    family: int, method: str = "auto", *, tool: str = "ping"
) -> tuple[socket.socket, str]:
    """An ICMP socket: raw when allowed (or ``method="raw"``), else the datagram kind.

    Args:
        tool: the program named in the error message (``"ping"``, ``"traceroute"``).

    Raises:
        PermissionDenied: neither is allowed; the message gives the cause (no CAP_NET_RAW, or
            the group outside ``net.ipv4.ping_group_range``) and what would allow one.
    """
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    if method not in ("auto", "raw", "dgram"):
        raise ValueError("method must be 'auto', 'raw' or 'dgram'")
    if method in ("auto", "raw"):
        try:
            return socket.socket(family, socket.SOCK_RAW, proto), "raw"
        except PermissionError as exc:
            if method == "raw":
                raise PermissionDenied(
                    f"raw ICMP sockets need CAP_NET_RAW: run {tool} as root (sudo), or use an "
                    "unprivileged ICMP datagram socket (method 'dgram' or 'auto')"
                ) from exc
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), "dgram"
    except PermissionError as exc:
        raise PermissionDenied(_dgram_refused(tool, method)) from exc
    except OSError as exc:
        raise translate_os_error(exc, "open an ICMP socket") from exc


class _Pinger:
    def __init__(
        self, address: str, family: int, sock: socket.socket, method: str, source: str | None
    ) -> None:
        self.address = address
        self.ipv6 = family == socket.AF_INET6
        self.sock = sock
        self.method = method
        if source is not None:
            bind_source(sock, source)
        elif method == "dgram":
            sock.bind(("::", 0) if self.ipv6 else ("0.0.0.0", 0))
        if method == "dgram":
            self.ident = sock.getsockname()[1]  # the kernel puts its "port" in the id field
        else:
            self.ident = os.getpid() & 0xFFFF
        if self.ipv6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        elif method == "dgram":
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        if method == "dgram":
            # A datagram socket gets ICMP errors (TTL exceeded, unreachable) only this way.
            errqueue.enable(sock, self.ipv6)

    def send(self, seq: int, payload: bytes) -> None:
        packet = echo.build_request(self.ident, seq, payload, ipv6=self.ipv6)
        try:
            self.sock.sendto(packet, (self.address, 0))
        except OSError as exc:
            # With IP_RECVERR an ICMP error about an earlier probe is also reported once by
            # the next send; it is in the error queue already: clear it and send again.
            if self.method != "dgram" or exc.errno not in _ICMP_ERRNOS:
                raise
            self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.sock.sendto(packet, (self.address, 0))

    def receive(self) -> tuple[echo.EchoReply | echo.IcmpError, str, int | None] | None:
        """One message from the socket, if it is about our probes: (parsed, source, ttl)."""
        if self.method == "dgram":
            err = errqueue.read_error(self.sock)
            if err is not None:
                source, kind, code, quoted = err
                if len(quoted) < 8 or quoted[0] not in (echo.ICMP_ECHO, echo.ICMP6_ECHO):
                    return None
                _k, _c, _s, ident, seq = struct.unpack("!BBHHH", quoted)
                text = echo.error_text(kind, code, ipv6=self.ipv6)
                return echo.IcmpError(kind, code, text, ident, seq), source, None
        try:
            data, ancdata, _flags, addr = self.sock.recvmsg(65536, 64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        source = str(addr[0])
        ttl: int | None = None
        for level, kind, value in ancdata:
            if (level, kind) in (
                (socket.IPPROTO_IP, IP_TTL_CMSG),
                (socket.IPPROTO_IPV6, IPV6_HOPLIMIT),
            ) and len(value) >= 4:
                ttl = struct.unpack("i", value[:4])[0]
        if not self.ipv6 and self.method == "raw":
            ip = echo.parse_ipv4(data)
            if ip is None:
                return None
            ttl, source, data = ip
        parsed = echo.parse_icmp(data, ipv6=self.ipv6)
        if parsed is None:
            return None
        if isinstance(parsed, echo.EchoReply):
            if parsed.ident != self.ident or not parsed.checksum_ok:
                return None
            if source != self.address and not _same_v6(source, self.address):
                return None
        elif parsed.ident != self.ident:
            return None
        return parsed, source, ttl


def _same_v6(a: str, b: str) -> bool:
    try:
        return socket.inet_pton(socket.AF_INET6, a.split("%", maxsplit=1)[0]) == socket.inet_pton(
            socket.AF_INET6, b.split("%", maxsplit=1)[0]
        )
    except OSError:
        return False


def iter_ping(
    host: str,
    *,
    count: int | None = 4,
    interval: float = DEFAULT_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
    size: int = DEFAULT_SIZE,
    ttl: int | None = None,
    family: int = 0,
    method: str = "auto",
    report: PingReport | None = None,
    deadline: float | None = None,
    pattern: bytes | None = None,
    source: str | None = None,
    interface: str | None = None,
    flood: bool = False,
    on_send: Callable[[int], None] | None = None,
    reply_wait: bool = False,
) -> Generator[Probe, None, None]:
    """Check the arguments, resolve ``host`` and open the socket at once (errors are raised by
    this call, before any packet), then return a generator that yields a :class:`Probe` for
    each reply or error as it arrives, then one per probe that got no answer
    (``rtt_ms=None``). ``report`` (if given) is filled in as it goes (``transmitted`` and
    ``probes``), and its ``stats`` set at the end, also when the caller stops early (Ctrl-C).

    Args:
        deadline: seconds after which the run ends whatever was sent or received (iputils
            ``-w``); ``count`` then counts replies, not requests, and an ICMP error ends it.
        pattern: up to 16 bytes repeated through the data after its 16-byte timestamp
            (iputils ``-p``; default: the byte values 0, 1, 2, ...).
        source: the source address (bound before sending); ``interface``: the interface name
            (``SO_BINDTODEVICE``).
        flood: send the next request as soon as the previous ones are answered, at most every
            ``interval`` and at least every 10 ms (iputils ``-f``).
        on_send: called with each sequence number just before its request is sent.
        reply_wait: iputils' ``-W``: ``timeout`` is the wait after the last request only
            while no reply came; after one, the wait is twice the longest round trip (at
            least ``interval``).

    Raises:
        AddressError: a value out of range (size 0..65507 for IPv4, 0..65527 for IPv6,
            ttl 1..255, interval and timeout >= 0, count > 0, deadline >= 0, a pattern over
            16 bytes), an unknown interface or a source address that is not local.
        ConnectionRefused: no route to the host (network or host unreachable).
        ResolutionError, PermissionDenied (with the cause and what to do), SocketkitError.
    """
    if size < 0 or size > MAX_SIZE_V6:
        raise AddressError(f"size must be 0..{MAX_SIZE_V6} (IPv6) or 0..{MAX_SIZE} (IPv4)")
    if not interval >= 0:
        raise AddressError("interval must be >= 0")
    if not timeout >= 0:
        raise AddressError("timeout must be >= 0")
    if deadline is not None and not deadline >= 0:
        raise AddressError("deadline must be >= 0")
    if count is not None and count <= 0:
        raise AddressError("count must be > 0")
    if ttl is not None and not 1 <= ttl <= MAX_TTL:
        raise AddressError(f"ttl must be 1..{MAX_TTL}")
    if pattern is not None and not 1 <= len(pattern) <= MAX_PATTERN:
        raise AddressError(f"pattern must be 1..{MAX_PATTERN} bytes")
    fam, address = resolve(host, family)
    if fam == socket.AF_INET and size > MAX_SIZE:
        raise AddressError(f"size must be 0..{MAX_SIZE} for IPv4 ({address}), not {size}")
    check_route(fam, address, source=source, interface=interface)
    sock, used = open_icmp(fam, method)
    if report is None:
        report = PingReport(host, address, used)
    else:
        report.address, report.method = address, used
    try:
        if interface is not None:
            bind_device(sock, interface)
        pinger = _Pinger(address, fam, sock, used, source)
        if ttl is not None:
            if fam == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    except OSError as exc:
        sock.close()
        raise translate_os_error(exc, "set up the ICMP socket") from exc
    except BaseException:
        sock.close()
        raise
    plan = _Plan(count, interval, timeout, size, deadline, pattern, flood, on_send, reply_wait)
    return _probes(pinger, report, plan)


@dataclass(frozen=True, slots=True)
class _Plan:
    count: int | None
    interval: float
    timeout: float
    size: int
    deadline: float | None
    pattern: bytes | None
    flood: bool
    on_send: Callable[[int], None] | None
    reply_wait: bool


def _probes(pinger: _Pinger, report: PingReport, plan: _Plan) -> Generator[Probe, None, None]:
    with pinger.sock:
        yield from _run(pinger, report, plan)


def payload_for(size: int, pattern: bytes | None, now_ns: int) -> bytes:
    """The data of an echo request as iputils lays it out: the pattern (default the byte
    values 0, 1, 2, ...) from the start of the data, its first 16 bytes then overwritten by the
    send time as a ``struct timeval`` when the data has room for it."""
    if pattern:
        data = bytearray((pattern * (size // len(pattern) + 1))[:size])
    else:
        data = bytearray(i & 0xFF for i in range(size))
    if size >= _TIMEVAL.size:
        sec, nsec = divmod(now_ns, 1_000_000_000)
        data[: _TIMEVAL.size] = _TIMEVAL.pack(sec, nsec // 1000)
    return bytes(data)


def _run(pinger: _Pinger, report: PingReport, plan: _Plan) -> Iterator[Probe]:
    count, interval, timeout = plan.count, plan.interval, plan.timeout
    sent: dict[int, float] = {}
    answered: set[int] = set()
    errors = duplicates = 0
    rtts: list[float] = []
    seq = 0
    start = time.monotonic()
    end = None if not plan.deadline else start + plan.deadline
    next_send = start
    last_send = first_send = start
    poller = select.poll()
    poller.register(pinger.sock.fileno(), select.POLLIN | select.POLLERR)
    try:
        while True:
            now = time.monotonic()
            if end is not None:
                if now >= end:
                    break
                # with a deadline, COUNT is the replies wanted (iputils -w)
                if count is not None and len(rtts) + errors >= count:
                    break
                if errors:
                    break
                more = True
            else:
                more = count is None or seq < count
            if plan.flood and sent and len(answered) >= len(sent):
                next_send = min(next_send, last_send + interval)
            if more and now >= next_send:
                seq += 1
                if plan.on_send is not None:
                    plan.on_send(seq)
                payload = payload_for(plan.size, plan.pattern, time.time_ns())
                try:
                    pinger.send(seq, payload)
                except OSError as exc:
                    raise translate_os_error(exc, f"send to {pinger.address}") from exc
                sent[seq & 0xFFFF] = last_send = time.monotonic()
                if seq == 1:
                    first_send = last_send
                report.transmitted = seq
                step = max(interval, _FLOOD_STEP) if plan.flood else interval
                next_send += step
                if next_send < last_send:
                    next_send = last_send + step
                continue
            if not more and len(answered) >= len(sent):
                break
            # Past the wait for the last reply, replies already queued are still read (with
            # -W 0 every reply is one of those): only an empty socket ends the run.
            linger = timeout
            if plan.reply_wait and rtts:  # iputils: two round trips once a reply came
                linger = max(2 * max(rtts) / 1000.0, interval)
            late = not more and now >= last_send + linger
            wake = next_send if more else last_send + linger
            if end is not None:
                wake = min(wake, end)
            if not poller.poll(0 if late else max(0, int((wake - now) * 1000) + 1)):
                if late:
                    break
                continue
            try:
                got = pinger.receive()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                if exc.errno in _ICMP_ERRNOS:
                    continue  # the pending error of an error-queue entry (read next time)
                raise translate_os_error(exc, "receive") from exc
            if got is None:
                continue
            parsed, source, ttl = got
            at = time.monotonic()
            key = parsed.seq
            if key is None or key not in sent:
                continue
            if isinstance(parsed, echo.IcmpError):
                errors += 1
                answered.add(key)
                probe = Probe(key, source, None, ttl, 0, parsed.text)
            else:
                dup = key in answered
                rtt = (at - sent[key]) * 1000.0
                if dup:
                    duplicates += 1
                else:
                    answered.add(key)
                    rtts.append(rtt)
                probe = Probe(key, source, rtt, ttl, parsed.size, None, dup)
            report.probes.append(probe)
            yield probe
    finally:
        # iputils' "time": from the first request to the last one
        elapsed = int((last_send - first_send) * 1000)
        for key in sorted(set(sent) - answered):
            report.probes.append(Probe(key, None, None, None, 0))
        report.stats = _stats(len(sent), rtts, errors, duplicates, elapsed)


def _stats(sent: int, rtts: list[float], errors: int, dups: int, elapsed: int) -> PingStats:
    received = len(rtts)
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    if not rtts:
        return PingStats(sent, 0, errors, dups, loss, elapsed, None, None, None, None)
    avg = sum(rtts) / received
    mdev = math.sqrt(max(0.0, sum(r * r for r in rtts) / received - avg * avg))
    return PingStats(sent, received, errors, dups, loss, elapsed, min(rtts), avg, max(rtts), mdev)


def ping(
    host: str,
    *,
    count: int = 4,
    interval: float = DEFAULT_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
    size: int = DEFAULT_SIZE,
    ttl: int | None = None,
    family: int = 0,
    method: str = "auto",
    deadline: float | None = None,
    pattern: bytes | None = None,
    source: str | None = None,
    interface: str | None = None,
) -> PingReport:
    """Send ``count`` echo requests to ``host``, ``interval`` seconds apart.

    Args:
        timeout: seconds to wait for replies after the last request.
        size: data bytes per request (56 gives 64-byte ICMP messages, like iputils).
        ttl: IP TTL / IPv6 hop limit of the requests.
        family: ``socket.AF_INET``/``AF_INET6`` to force one (0: IPv4 first).
        method: ``"raw"`` (needs CAP_NET_RAW), ``"dgram"`` (ping_group_range), or ``"auto"``.
        deadline: end after this many seconds; ``count`` then counts replies (iputils -w).
        pattern: up to 16 bytes to fill the data with (iputils -p).
        source, interface: the local address / interface to send from (iputils -I).
    Returns:
        a :class:`PingReport`: ``probes`` (replies, errors, and one entry per unanswered
        request) and ``stats`` (transmitted/received/loss, rtt min/avg/max/mdev in ms).
    Raises:
        AddressError (a value out of range), ResolutionError, PermissionDenied (with what to
        do), SocketkitError.
    """
    report = PingReport(host, "", method)
    for _probe in iter_ping(
        host,
        count=count,
        interval=interval,
        timeout=timeout,
        size=size,
        ttl=ttl,
        family=family,
        method=method,
        report=report,
        deadline=deadline,
        pattern=pattern,
        source=source,
        interface=interface,
    ):
        pass
    if report.stats is None:  # pragma: no cover - set by iter_ping's finally
        raise SocketkitError("ping ended without statistics")
    return report
