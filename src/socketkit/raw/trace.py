"""``socketkit.traceroute()``: UDP probes (default), ICMP echo probes or TCP SYN probes with
rising TTL, sent as Linux traceroute sends them: up to 16 in flight at once across the hops.

UDP and TCP probes need no privilege: each probe is its own socket with ``IP_RECVERR``; the
ICMP "time exceeded" or "unreachable" that comes back is read from the socket's error queue
with the router's address (``SO_EE_OFFENDER``, ip(7)) -- the method of Linux traceroute's
default (and of its ``-M tcpconn``). ICMP probes (``method="icmp"``) use a raw ICMP socket as
root, or an unprivileged ICMP datagram socket with ``IP_RECVERR`` otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import struct
import time
from collections.abc import Generator
from dataclasses import dataclass, field

from .._errors import AddressError, translate_os_error
from . import echo, errqueue
from .ping import bind_device, bind_source, check_route, open_icmp, resolve

__all__ = ["Hop", "HopProbe", "TraceReport", "iter_traceroute", "probe_port", "traceroute"]

DEFAULT_PORT = 33434  # traceroute(8): base UDP port, +1 per probe
DEFAULT_TCP_PORT = 80  # traceroute -T: the destination port of every SYN
#: Linux traceroute -N: probes in flight at once.
DEFAULT_SIM_QUERIES = 16
#: Linux traceroute -w MAX,HERE,NEAR: the factors of HERE and NEAR (see iter_traceroute).
DEFAULT_HERE, DEFAULT_NEAR = 3.0, 10.0
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


#: Linux traceroute's marks for ICMP "destination unreachable" codes (RFC 792, RFC 1812).
_MARKS4 = {
    0: "!N", 6: "!N", 8: "!N", 11: "!N",  # net, net unknown, isolated, net for TOS
    1: "!H", 7: "!H", 12: "!H",  # host, host unknown, host for TOS
    9: "!X", 10: "!X", 13: "!X",  # net / host / communication prohibited
    2: "!P", 3: "", 4: "!F", 5: "!S", 14: "!V", 15: "!C",
}  # fmt: skip
#: The same for ICMPv6 (RFC 4443): no route, prohibited, beyond scope, address, port.
_MARKS6 = {0: "!N", 1: "!X", 2: "!H", 3: "!H", 4: ""}


def _note(ipv6: bool, kind: int, code: int) -> tuple[bool, str]:
    """(the destination answered, annotation) for an ICMP type/code, as Linux traceroute
    marks them: ``!N`` ``!H`` ``!X`` ``!P`` ... for "unreachable", ``!<code>`` for an unknown
    code, ``!<type-code>`` for another type; none for "time exceeded" in transit."""
    if ipv6:
        if kind == 1:
            return code == 4, _MARKS6.get(code, f"!<{code}>")
        if kind == 2:
            return False, "!F"
        if kind == 3 and code == 0:
            return False, ""
        return False, f"!<{kind}-{code}>"
    if kind == 3:
        return code in (2, 3), _MARKS4.get(code, f"!<{code}>")
    if kind == 11 and code == 0:
        return False, ""
    return False, f"!<{kind}-{code}>"


def _final(ipv6: bool, kind: int, code: int) -> bool:
    """Every ICMP answer but "time exceeded" in transit ends a Linux traceroute at its hop."""
    return (kind, code) != ((3, 0) if ipv6 else (11, 0))


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
    port: int | None = None,
    first_ttl: int = 1,
    family: int = 0,
    report: TraceReport | None = None,
    sim_queries: int = DEFAULT_SIM_QUERIES,
    here: float = DEFAULT_HERE,
    near: float = DEFAULT_NEAR,
    sendwait: float = 0.0,
    source: str | None = None,
    interface: str | None = None,
) -> Generator[Hop, None, None]:
    """Check the arguments, resolve ``host`` and (``method="icmp"``) open the ICMP socket at
    once -- errors are raised by this call, before any probe -- then return a generator that
    yields one :class:`Hop` per TTL, in order, until the target answers, a router says the
    target is unreachable (``!N``, ``!H``, ``!P``, ``!X``, ...) or ``max_ttl``.

    Probes go out as Linux traceroute sends them: up to ``sim_queries`` at a time across the
    hops, ``sendwait`` seconds apart. A probe waits at most ``wait`` seconds, less when an
    answer came already: ``here`` times the round trip of an answered probe of its own hop,
    else ``near`` times that of a later hop (traceroute's ``-w MAX,HERE,NEAR``; 0 turns a
    factor off).

    Args:
        method: ``"udp"`` (ports ``port``, ``port+1``, ...; default 33434), ``"icmp"`` (echo
            requests) or ``"tcp"`` (SYNs to ``port``, default 80, by a non-blocking
            ``connect()``; an answer from the target, SYN-ACK or RST, is the end).
        source, interface: the local address / interface to send from.

    Raises:
        AddressError: a value out of range (1 <= first_ttl <= max_ttl <= 255, nqueries
            1..10, port 1..65535, wait, here, near, sendwait >= 0, sim_queries >= 1), an
            unknown method or interface, a source address that is not local.
        ConnectionRefused: no route to the host (network or host unreachable).
        ResolutionError, PermissionDenied (ICMP probes without permission), SocketkitError.
    """
    if not 1 <= first_ttl <= max_ttl <= 255:
        raise AddressError("need 1 <= first_ttl <= max_ttl <= 255")
    if nqueries < 1 or nqueries > 10:
        raise AddressError("nqueries must be 1..10")
    if port is None:
        port = DEFAULT_TCP_PORT if method == "tcp" else DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise AddressError("port must be 1..65535")
    if not (wait >= 0 and here >= 0 and near >= 0 and sendwait >= 0):
        raise AddressError("wait, here, near and sendwait must be >= 0")
    if sim_queries < 1:
        raise AddressError("sim_queries must be >= 1")
    if method not in ("udp", "icmp", "tcp"):
        raise AddressError("method must be 'udp', 'icmp' or 'tcp'")
    fam, address = resolve(host, family)
    check_route(fam, address, source=source, interface=interface)
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
            _local(icmp_sock, source, interface)
            if icmp_kind == "dgram":
                if source is None:
                    icmp_sock.bind(("::", 0) if fam == socket.AF_INET6 else ("0.0.0.0", 0))
                errqueue.enable(icmp_sock, fam == socket.AF_INET6)
            icmp_sock.setblocking(False)
        except OSError as exc:
            icmp_sock.close()
            raise translate_os_error(exc, "set up the ICMP socket") from exc
        except BaseException:
            icmp_sock.close()
            raise
    tracer = _Tracer(
        report, address, fam, method, icmp_sock, icmp_kind, port=port, source=source,
        interface=interface, wait=wait, here=here, near=near, sendwait=sendwait,
        sim=sim_queries, nqueries=nqueries, first_ttl=first_ttl, max_ttl=max_ttl,
    )  # fmt: skip
    return tracer.run()


def _local(sock: socket.socket, source: str | None, interface: str | None) -> None:
    if interface is not None:
        bind_device(sock, interface)
    if source is not None:
        bind_source(sock, source)


def _set_ttl(sock: socket.socket, ipv6: bool, ttl: int) -> None:
    if ipv6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


_ICMP_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED, errno.EPROTO, errno.EACCES}
)

#: Packets the ICMP probe socket reads per wake-up at most (other ICMP traffic on a raw one).
_READS_PER_WAKE = 64
#: traceroute's DEF_WAIT_PREC: added to a round trip before the HERE/NEAR factor.
_WAIT_PREC = 0.001
#: TCP probes: one SYN retransmission at most within the wait (tcp(7) TCP_SYNCNT).
_TCP_SYNCNT = 1


class _Probe:
    __slots__ = ("done", "final", "index", "recv", "result", "sent", "sock", "ttl")

    def __init__(self, index: int, ttl: int) -> None:
        self.index, self.ttl = index, ttl
        self.sock: socket.socket | None = None
        self.sent = 0.0
        self.recv = 0.0
        self.done = False
        self.final = False
        self.result = HopProbe(None, None)


class _Tracer:
    """Linux traceroute's loop: a window of probes in flight across the hops, each hop printed
    once all its probes are answered or expired, the end moved up to the first final hop."""

    def __init__(  # noqa: PLR0917
        self,
        report: TraceReport,
        address: str,
        fam: int,
        method: str,
        icmp_sock: socket.socket | None,
        icmp_kind: str,
        *,
        port: int,
        source: str | None,
        interface: str | None,
        wait: float,
        here: float,
        near: float,
        sendwait: float,
        sim: int,
        nqueries: int,
        first_ttl: int,
        max_ttl: int,
    ) -> None:
        self.report, self.address, self.fam, self.method = report, address, fam, method
        self.ipv6 = fam == socket.AF_INET6
        self.icmp_sock, self.icmp_kind = icmp_sock, icmp_kind
        self.port, self.source, self.interface = port, source, interface
        self.wait, self.here, self.near, self.sendwait = wait, here, near, sendwait
        self.sim, self.nq = sim, nqueries
        self.probes = [
            _Probe(i, first_ttl + i // nqueries)
            for i in range((max_ttl - first_ttl + 1) * nqueries)
        ]
        self.poller = select.poll()
        self.by_fd: dict[int, _Probe] = {}
        self.ident = 0
        if icmp_sock is not None:
            self.poller.register(icmp_sock.fileno(), select.POLLIN | select.POLLERR)
            self.ident = (
                icmp_sock.getsockname()[1] if icmp_kind == "dgram" else os.getpid() & 0xFFFF
            )
        self.payload = bytes(DEFAULT_PACKET_LEN - (48 if self.ipv6 else 28))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> Generator[Hop, None, None]:
        try:
            yield from self._loop()
        finally:
            for p in self.probes:
                if p.sock is not None:
                    p.sock.close()
            if self.icmp_sock is not None:
                self.icmp_sock.close()

    def _loop(self) -> Generator[Hop, None, None]:
        start, end = 0, len(self.probes)
        next_index = 0
        last_send = -math.inf
        while start < end:
            now = time.monotonic()
            in_flight = sum(1 for p in self.probes[start:next_index] if not p.done)
            while next_index < end and in_flight < self.sim and now >= last_send + self.sendwait:
                self._send(self.probes[next_index])
                last_send = now = time.monotonic()
                next_index += 1
                in_flight += 1
            # answers already there count, also for a probe whose wait is over (-w 0)
            for fd, ev in self.poller.poll(0):
                self._event(fd, ev)
            now = time.monotonic()
            wake = math.inf
            for p in self.probes[start:next_index]:
                if not p.done:
                    expires = p.sent + self._timeout(p)
                    if now >= expires:
                        self._finish(p, HopProbe(None, None))
                        wake = now  # a place in the window is free: look again at once
                    else:
                        wake = min(wake, expires)
            for p in self.probes[start:next_index]:
                if p.final:
                    end = min(end, (p.index // self.nq + 1) * self.nq)
            while (
                start < end
                and start + self.nq <= next_index
                and all(p.done for p in self.probes[start : start + self.nq])
            ):
                group = self.probes[start : start + self.nq]
                hop = Hop(group[0].ttl, tuple(p.result for p in group))
                self.report.hops.append(hop)
                if any(p.final and p.result.address == self.address for p in group):
                    self.report.reached = True
                yield hop
                start += self.nq
            if start >= end:
                break
            if next_index < end and in_flight < self.sim:
                wake = min(wake, last_send + self.sendwait)
            if wake == math.inf:
                timeout = None
            else:
                timeout = 0 if wake <= now else math.ceil((wake - now) * 1000)
            events = self.poller.poll(timeout)
            for fd, ev in events:
                self._event(fd, ev)

    def _timeout(self, p: _Probe) -> float:
        """traceroute's get_timeout(): HERE times an answered round trip of the same hop,
        else NEAR times one of a later hop, never more than the wait."""
        first = p.index - p.index % self.nq
        if self.here:
            for q in self.probes[first : first + self.nq]:
                if q.done and q.recv and q.result.address is not None:
                    return min(self.wait, (q.recv - q.sent + _WAIT_PREC) * self.here)
        if self.near:
            for q in self.probes[first + self.nq :]:
                if not q.sent:
                    break
                if q.done and q.recv and q.result.address is not None:
                    return min(self.wait, (q.recv - q.sent + _WAIT_PREC) * self.near)
        return self.wait

    def _finish(self, p: _Probe, result: HopProbe, final: bool = False) -> None:
        p.done, p.result, p.final = True, result, final
        if result.address is not None:
            p.recv = time.monotonic()
        if p.sock is not None:
            self.by_fd.pop(p.sock.fileno(), None)
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(p.sock.fileno())
            p.sock.close()
            p.sock = None

    # -- sending -------------------------------------------------------------------------

    def _send(self, p: _Probe) -> None:
        if self.method == "icmp":
            self._send_icmp(p)
            return
        kind = socket.SOCK_STREAM if self.method == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(self.fam, kind)
        p.sock = sock
        try:
            sock.setblocking(False)
            _local(sock, self.source, self.interface)
            errqueue.enable(sock, self.ipv6)
            _set_ttl(sock, self.ipv6, p.ttl)
            if self.method == "tcp":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, _TCP_SYNCNT)
                p.sent = time.monotonic()
                rc = sock.connect_ex((self.address, self.port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, os.strerror(rc))
                events = select.POLLOUT | select.POLLERR
            else:
                sock.connect((self.address, probe_port(self.port, p.index)))
                p.sent = time.monotonic()
                sock.send(self.payload)
                events = select.POLLIN | select.POLLERR
        except OSError as exc:
            raise translate_os_error(exc, f"send a probe to {self.address}") from exc
        self.by_fd[sock.fileno()] = p
        self.poller.register(sock.fileno(), events)

    def _send_icmp(self, p: _Probe) -> None:
        sock = self.icmp_sock
        assert sock is not None
        seq = (p.index + 1) & 0xFFFF
        request = echo.build_request(self.ident, seq, self.payload, ipv6=self.ipv6)
        try:
            _set_ttl(sock, self.ipv6, p.ttl)
            p.sent = time.monotonic()
            try:
                sock.sendto(request, (self.address, 0))
            except OSError as exc:
                # With IP_RECVERR an ICMP error about an earlier probe is also reported once
                # by the next send (sk_err); it waits in the error queue: send again.
                if self.icmp_kind != "dgram" or exc.errno not in _ICMP_ERRNOS:
                    raise
                sock.sendto(request, (self.address, 0))
        except OSError as exc:
            raise translate_os_error(exc, f"send a probe to {self.address}") from exc

    # -- answers -------------------------------------------------------------------------

    def _answer(self, p: _Probe, source: str, kind: int | None, code: int) -> None:
        """An answer for ``p``: ``kind`` None is the target itself (UDP data, TCP SYN-ACK or
        RST, echo reply); else an ICMP error type/code from ``source``."""
        if p.done:
            return
        rtt = (time.monotonic() - p.sent) * 1000.0
        if kind is None:
            self._finish(p, HopProbe(source, rtt), final=True)
            return
        if kind in ((137,) if self.ipv6 else (4, 5)):
            return  # a redirect or source quench is about the route, not an answer
        reached, note = _note(self.ipv6, kind, code)
        final = reached or source == self.address or _final(self.ipv6, kind, code)
        self._finish(p, HopProbe(source, rtt, note), final=final)

    def _event(self, fd: int, ev: int) -> None:
        if self.icmp_sock is not None and fd == self.icmp_sock.fileno():
            self._icmp_events()
            return
        p = self.by_fd.get(fd)
        if p is None or p.sock is None:
            return
        err = errqueue.read_error(p.sock)
        if err is not None:
            source, kind, code, _quoted = err
            self._answer(p, source, kind, code)
            return
        if self.method == "tcp":
            rc = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc in (0, errno.ECONNREFUSED):  # SYN-ACK or RST: the target answered
                self._answer(p, self.address, None, 0)
                return
        else:
            try:  # a UDP answer from the target itself counts as reaching it
                p.sock.recv(1)
            except OSError:
                pass
            else:
                self._answer(p, self.address, None, 0)
                return
        # an error without an ICMP answer to show (a failed connect, a stale error): nothing
        # more will come on this socket; the probe expires as unanswered
        self.by_fd.pop(fd, None)
        self.poller.unregister(fd)

    def _icmp_events(self) -> None:
        sock = self.icmp_sock
        assert sock is not None
        by_seq = {(p.index + 1) & 0xFFFF: p for p in self.probes if p.sent and not p.done}
        for _ in range(_READS_PER_WAKE):
            if self.icmp_kind == "dgram":
                err = errqueue.read_error(sock)
                if err is not None:
                    source, itype, code, quoted = err
                    if len(quoted) >= 8 and quoted[0] in (echo.ICMP_ECHO, echo.ICMP6_ECHO):
                        p = by_seq.get(struct.unpack_from("!H", quoted, 6)[0])
                        if p is not None:
                            self._answer(p, source, itype, code)
                    continue
            try:
                data, addr = sock.recvfrom(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _ICMP_ERRNOS:
                    continue
                raise translate_os_error(exc, "receive") from exc
            source = str(addr[0])
            if not self.ipv6 and self.icmp_kind == "raw":
                ip = echo.parse_ipv4(data)
                if ip is None:
                    continue
                _t, source, data = ip
            parsed = echo.parse_icmp(data, ipv6=self.ipv6)
            if parsed is None or parsed.ident != self.ident or parsed.seq is None:
                continue
            p = by_seq.get(parsed.seq)
            if p is None:
                continue
            if isinstance(parsed, echo.EchoReply):
                self._answer(p, source, None, 0)
            else:
                self._answer(p, source, parsed.type, parsed.code)


def traceroute(
    host: str,
    *,
    max_ttl: int = DEFAULT_MAX_TTL,
    nqueries: int = DEFAULT_QUERIES,
    wait: float = DEFAULT_WAIT,
    method: str = "udp",
    port: int | None = None,
    first_ttl: int = 1,
    family: int = 0,
    sim_queries: int = 16,
    sendwait: float = 0.0,
    source: str | None = None,
    interface: str | None = None,
) -> TraceReport:
    """Trace the route to ``host``.

    Args:
        max_ttl: the last TTL tried (traceroute -m).
        nqueries: probes per hop (-q).
        wait: seconds to wait for the answers of one hop (-w).
        method: ``"udp"`` (no privilege needed, ports ``port``, ``port+1``, ... wrapping from
            65535 to 1; default 33434), ``"icmp"`` or ``"tcp"`` (SYNs to ``port``, default 80).
        sim_queries: probes in flight at once (-N); sendwait: seconds between probes (-z).
        source, interface: the local address / interface to send from (-s, -i).
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
        sim_queries=sim_queries,
        sendwait=sendwait,
        source=source,
        interface=interface,
    ):
        pass
    return report
