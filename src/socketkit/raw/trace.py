"""``socketkit.traceroute()``: UDP probes (default) or ICMP echo probes with rising TTL.

UDP probes need no privilege: each probe is a UDP socket with ``IP_RECVERR``; the ICMP
"time exceeded" or "port unreachable" that comes back is read from the socket's error queue
with the router's address (``SO_EE_OFFENDER``, ip(7)) — the method of Linux traceroute's
default. ICMP probes (``method="icmp"``) use a raw ICMP socket as root, or an unprivileged
ICMP datagram socket with ``IP_RECVERR`` otherwise.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Generator
from dataclasses import dataclass, field

from .._errors import AddressError, translate_os_error
from . import echo, errqueue
from .ping import check_route, open_icmp, resolve

__all__ = ["Hop", "HopProbe", "TraceReport", "iter_traceroute", "probe_port", "traceroute"]

DEFAULT_PORT = 33434  # traceroute(8): base UDP port, +1 per probe
DEFAULT_MAX_TTL = 30
DEFAULT_QUERIES = 3
DEFAULT_WAIT = 5.0
DEFAULT_PACKET_LEN = 60  # traceroute's default total IPv4 packet length


@dataclass(frozen=True, slots=True)
class HopProbe:
    """One probe: who answered (None: nobody within the wait) and the round-trip time.
    ``note`` is traceroute's annotation (``!H``, ``!N``, ``!P``, ``!X``) or ""."""

    address: str | None
    rtt_ms: float | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    probes: tuple[HopProbe, ...]

    @property
    def addresses(self) -> list[str]:
        seen: list[str] = []
        for probe in self.probes:
            if probe.address is not None and probe.address not in seen:
                seen.append(probe.address)
        return seen


@dataclass
class TraceReport:
    """What :func:`traceroute` returns: ``hops`` in order, and whether the target answered."""

    host: str
    address: str
    method: str
    hops: list[Hop] = field(default_factory=list)
    reached: bool = False


class _Pending:
    def __init__(self, sock: socket.socket, key: int, sent: float) -> None:
        self.sock, self.key, self.sent = sock, key, sent
        self.result: HopProbe | None = None


def _note(ipv6: bool, kind: int, code: int) -> tuple[bool, str]:
    """(the destination answered, annotation) for an ICMP type/code."""
    if ipv6:
        if kind == 1:
            return code == 4, {0: "!N", 1: "!X", 3: "!H", 4: ""}.get(code, f"!<{code}>")
        return False, ""
    if kind == 3:
        return code in (2, 3), {0: "!N", 1: "!H", 2: "!P", 3: "", 4: "!F", 13: "!X"}.get(
            code, f"!<{code}>"
        )
    return False, ""


def probe_port(port: int, probe_no: int) -> int:
    """The destination port of probe ``probe_no`` (0-based): ``port`` + ``probe_no``, wrapping
    from 65535 to 1 (traceroute(8) adds one per probe; port 0 is no port)."""
    return (port - 1 + probe_no) % 65535 + 1


def iter_traceroute(
    host: str,
    *,
    max_ttl: int = DEFAULT_MAX_TTL,
    nqueries: int = DEFAULT_QUERIES,
    wait: float = DEFAULT_WAIT,
    method: str = "udp",
    port: int = DEFAULT_PORT,
    first_ttl: int = 1,
    family: int = 0,
    report: TraceReport | None = None,
) -> Generator[Hop, None, None]:
    """Check the arguments, resolve ``host`` and (``method="icmp"``) open the ICMP socket at
    once -- errors are raised by this call, before any probe -- then return a generator that
    yields one :class:`Hop` per TTL until the target answers or ``max_ttl``.

    Raises:
        AddressError: a value out of range (1 <= first_ttl <= max_ttl <= 255, nqueries
            1..10, port 1..65535, wait >= 0) or an unknown method.
        ConnectionRefused: no route to the host (network or host unreachable).
        ResolutionError, PermissionDenied (ICMP probes without permission), SocketkitError.
    """
    if not 1 <= first_ttl <= max_ttl <= 255:
        raise AddressError("need 1 <= first_ttl <= max_ttl <= 255")
    if nqueries < 1 or nqueries > 10:
        raise AddressError("nqueries must be 1..10")
    if not 1 <= port <= 65535:
        raise AddressError("port must be 1..65535")
    if not wait >= 0:
        raise AddressError("wait must be >= 0")
    if method not in ("udp", "icmp"):
        raise AddressError("method must be 'udp' or 'icmp'")
    fam, address = resolve(host, family)
    check_route(fam, address)
    if report is None:
        report = TraceReport(host, address, method)
    else:
        report.address = address
    icmp_sock: socket.socket | None = None
    icmp_kind = ""
    if method == "icmp":
        icmp_sock, icmp_kind = open_icmp(fam, tool="traceroute")
        report.method = f"icmp/{icmp_kind}"
        try:
            if icmp_kind == "dgram":
                icmp_sock.bind(("::", 0) if fam == socket.AF_INET6 else ("0.0.0.0", 0))
                _recverr(icmp_sock, fam == socket.AF_INET6)
        except OSError as exc:
            icmp_sock.close()
            raise translate_os_error(exc, "set up the ICMP socket") from exc
    return _hops(report, address, fam, icmp_sock, icmp_kind, max_ttl=max_ttl,
                 nqueries=nqueries, wait=wait, port=port, first_ttl=first_ttl)  # fmt: skip


def _hops(
    report: TraceReport,
    address: str,
    fam: int,
    icmp_sock: socket.socket | None,
    icmp_kind: str,
    *,
    max_ttl: int,
    nqueries: int,
    wait: float,
    port: int,
    first_ttl: int,
) -> Generator[Hop, None, None]:
    try:
        probe_no = 0
        for ttl in range(first_ttl, max_ttl + 1):
            if icmp_sock is None:
                results = _udp_hop(address, fam, ttl, nqueries, wait, port, probe_no)
            else:
                results = _icmp_hop(icmp_sock, icmp_kind, address, fam, ttl, nqueries, wait,
                                    probe_no)  # fmt: skip
            probe_no += nqueries
            hop = Hop(ttl, tuple(r for r, _ in results))
            report.hops.append(hop)
            yield hop
            if any(done for _, done in results):
                report.reached = True
                return
    finally:
        if icmp_sock is not None:
            icmp_sock.close()


def _recverr(sock: socket.socket, ipv6: bool) -> None:
    errqueue.enable(sock, ipv6)


def _set_ttl(sock: socket.socket, ipv6: bool, ttl: int) -> None:
    if ipv6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


def _read_error(sock: socket.socket, ipv6: bool) -> tuple[str, int, int, bytes] | None:
    return errqueue.read_error(sock)


_ICMP_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED, errno.EPROTO, errno.EACCES}
)


def _clear_errors(sock: socket.socket, ipv6: bool) -> None:
    """Drop stale error-queue entries and the pending socket error (late answers of an
    earlier hop)."""
    sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    for _ in range(64):
        if _read_error(sock, ipv6) is None:
            break


def _udp_hop(  # noqa: PLR0917
    address: str, fam: int, ttl: int, nqueries: int, wait: float, port: int, probe_no: int
) -> list[tuple[HopProbe, bool]]:
    ipv6 = fam == socket.AF_INET6
    payload = bytes(DEFAULT_PACKET_LEN - (48 if ipv6 else 28))
    pending: list[_Pending] = []
    poller = select.poll()
    try:
        for q in range(nqueries):
            sock = socket.socket(fam, socket.SOCK_DGRAM)
            sock.setblocking(False)
            pending.append(_Pending(sock, q, 0.0))
            try:
                _recverr(sock, ipv6)
                _set_ttl(sock, ipv6, ttl)
                sock.connect((address, probe_port(port, probe_no + q)))
                pending[-1].sent = time.monotonic()
                sock.send(payload)
            except OSError as exc:
                raise translate_os_error(exc, f"send a probe to {address}") from exc
            poller.register(sock.fileno(), select.POLLERR | select.POLLIN)
        by_fd = {p.sock.fileno(): p for p in pending}
        results: dict[int, tuple[HopProbe, bool]] = {}
        deadline = time.monotonic() + wait
        while len(results) < nqueries:
            events = poller.poll(_poll_ms(deadline))
            if not events:
                break  # past the wait and nothing queued (answers already there are read)
            for fd, _ev in events:
                p = by_fd[fd]
                got = _read_error(p.sock, ipv6)
                if got is None:
                    try:  # a UDP answer from the target itself counts as reaching it
                        p.sock.recv(1)
                        results[p.key] = (
                            HopProbe(address, (time.monotonic() - p.sent) * 1000.0),
                            True,
                        )
                    except OSError:
                        pass
                    poller.unregister(fd)
                    continue
                source, kind, code, _quoted = got
                reached, note = _note(ipv6, kind, code)
                rtt = (time.monotonic() - p.sent) * 1000.0
                results[p.key] = (HopProbe(source, rtt, note), reached or source == address)
                poller.unregister(fd)
        return [results.get(q, (HopProbe(None, None), False)) for q in range(nqueries)]
    finally:
        for p in pending:
            p.sock.close()


#: Packets an ICMP probe socket may still read once a hop's wait is over: the answers already
#: queued (with ``-w 0`` all of them), not an endless stream of unrelated ICMP traffic.
_LATE_READS = 64


def _poll_ms(deadline: float) -> int:
    """poll(2)'s timeout until ``deadline``; 0 (look, do not wait) once it has passed."""
    left = deadline - time.monotonic()
    return 0 if left <= 0 else int(left * 1000) + 1


def _icmp_hop(  # noqa: PLR0917
    sock: socket.socket,
    kind: str,
    address: str,
    fam: int,
    ttl: int,
    nqueries: int,
    wait: float,
    probe_no: int,
) -> list[tuple[HopProbe, bool]]:
    import os

    ipv6 = fam == socket.AF_INET6
    ident = sock.getsockname()[1] if kind == "dgram" else os.getpid() & 0xFFFF
    payload = bytes(DEFAULT_PACKET_LEN - (48 if ipv6 else 28))
    sent: dict[int, float] = {}
    _set_ttl(sock, ipv6, ttl)
    if kind == "dgram":
        _clear_errors(sock, ipv6)
    for q in range(nqueries):
        seq = (probe_no + q + 1) & 0xFFFF
        request = echo.build_request(ident, seq, payload, ipv6=ipv6)
        try:
            try:
                sock.sendto(request, (address, 0))
            except OSError as exc:
                # With IP_RECVERR a late ICMP error of an earlier hop is reported once by the
                # next send (sk_err): clear it and send again.
                if kind != "dgram" or exc.errno not in _ICMP_ERRNOS:
                    raise
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sock.sendto(request, (address, 0))
        except OSError as exc:
            raise translate_os_error(exc, f"send a probe to {address}") from exc
        sent[seq] = time.monotonic()
    results: dict[int, tuple[HopProbe, bool]] = {}
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLERR)
    deadline = time.monotonic() + wait
    late_reads = 0
    while len(results) < nqueries:
        if not poller.poll(_poll_ms(deadline)):
            break
        if time.monotonic() >= deadline:
            late_reads += 1  # past the wait: read what is queued, bounded (other ICMP traffic)
            if late_reads > _LATE_READS:
                break
        now = time.monotonic()
        if kind == "dgram":
            err = _read_error(sock, ipv6)
            if err is not None:
                source, itype, code, quoted = err
                qseq = -1
                if len(quoted) >= 8 and quoted[0] in (echo.ICMP_ECHO, echo.ICMP6_ECHO):
                    qseq = struct.unpack_from("!H", quoted, 6)[0]
                if qseq in sent and qseq not in results:
                    reached, note = _note(ipv6, itype, code)
                    rtt = (now - sent[qseq]) * 1000.0
                    results[qseq] = (HopProbe(source, rtt, note), reached)
                continue
        try:
            data, addr = sock.recvfrom(65536, socket.MSG_DONTWAIT)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EHOSTUNREACH, errno.ENETUNREACH):
                continue
            raise translate_os_error(exc, "receive") from exc
        source = str(addr[0])
        if not ipv6 and kind == "raw":
            ip = echo.parse_ipv4(data)
            if ip is None:
                continue
            _t, source, data = ip
        parsed = echo.parse_icmp(data, ipv6=ipv6)
        if parsed is None or parsed.ident != ident or parsed.seq not in sent:
            continue
        if parsed.seq in results:
            continue
        rtt = (now - sent[parsed.seq]) * 1000.0
        if isinstance(parsed, echo.EchoReply):
            results[parsed.seq] = (HopProbe(source, rtt), True)
        else:
            reached, note = _note(ipv6, parsed.type, parsed.code)
            results[parsed.seq] = (HopProbe(source, rtt, note), reached)
    return [results.get(s, (HopProbe(None, None), False)) for s in sorted(sent)]


def traceroute(
    host: str,
    *,
    max_ttl: int = DEFAULT_MAX_TTL,
    nqueries: int = DEFAULT_QUERIES,
    wait: float = DEFAULT_WAIT,
    method: str = "udp",
    port: int = DEFAULT_PORT,
    first_ttl: int = 1,
    family: int = 0,
) -> TraceReport:
    """Trace the route to ``host``.

    Args:
        max_ttl: the last TTL tried (traceroute -m).
        nqueries: probes per hop (-q).
        wait: seconds to wait for the answers of one hop (-w).
        method: ``"udp"`` (no privilege needed, ports ``port``, ``port+1``, ... wrapping from
            65535 to 1) or ``"icmp"``.
    Returns:
        a :class:`TraceReport` with one :class:`Hop` per TTL; ``reached`` says whether the
        target answered.
    Raises:
        ResolutionError, PermissionDenied (ICMP without privilege), SocketkitError.
    """
    report = TraceReport(host, "", method)
    for _hop in iter_traceroute(
        host,
        max_ttl=max_ttl,
        nqueries=nqueries,
        wait=wait,
        method=method,
        port=port,
        first_ttl=first_ttl,
        family=family,
        report=report,
    ):
        pass
    return report
