"""``connect -z``: which TCP (or UDP) ports answer, over ranges like ``20-25,80,ssh``.

Ports are probed up to ``concurrency`` at once (threads: each probe is a blocking connect
with a timeout), so ten filtered ports at ``-w 1`` take about a second, not ten; the lines
still come out in port order, each as soon as it and every port before it are known.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from .._addr import Address, parse_service, resolve
from .._errors import AddressError, ConnectError, SocketkitTimeout
from .net import bind_source, dial
from .options import NetcatOptions
from .report import Reporter

__all__ = ["DEFAULT_SCAN_CONCURRENCY", "parse_ports", "scan_ports"]

#: Ports probed at once by default: enough that a range of filtered ports costs about one
#: timeout, few enough to stay far below any descriptor limit or a peer's SYN backlog.
DEFAULT_SCAN_CONCURRENCY = 32

#: Most ports a single -z run may probe (a typo like 1-655350 should not take hours).
MAX_SCAN_PORTS = 65536
#: Per-port connect timeout when -w is not given: a filtered port should not stall the scan.
DEFAULT_SCAN_TIMEOUT = 3.0


def parse_ports(spec: str, proto: str = "tcp") -> list[int]:
    """``"80"``, ``"20-25"``, ``"22,80,8000-8010"``, ``"ssh,http"`` -> sorted unique ports
    (a name is looked up in the services database for ``proto``).

    Raises:
        AddressError: bad syntax, an unknown service or a port outside 0-65535.
    """
    ports: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        low_text, dash, high_text = part.partition("-")
        if not dash:
            ports.add(parse_service(part, proto))
            continue
        if not low_text.isdigit() or not high_text.isdigit():
            raise AddressError(
                f"bad port or range {part!r}: expected PORT, LOW-HIGH or a service name"
            )
        low, high = int(low_text), int(high_text)
        for value in (low, high):
            if not 0 <= value <= 65535:
                raise AddressError(f"port {value} out of range: expected 0-65535")
        if high < low:
            raise AddressError(f"bad port range {part!r}: {low} > {high}")
        ports.update(range(low, high + 1))
    if len(ports) > MAX_SCAN_PORTS:
        raise AddressError(f"too many ports ({len(ports)})")
    return sorted(ports)


def scan_ports(
    opts: NetcatOptions, ports: list[int], reporter: Reporter, *, concurrency: int = 1
) -> int:
    """Probe each port; exit status 0 if any is open, 1 if none is (like nc -z)."""
    timeout = opts.connect_timeout if opts.connect_timeout is not None else DEFAULT_SCAN_TIMEOUT
    proto = "udp" if opts.udp else "tcp"
    if opts.source_port is not None:
        concurrency = 1  # one source port: one connection at a time
    any_open = False
    if opts.udp:
        results: Iterable[tuple[int, str]] = _probed(
            ports, lambda p: _probe(opts, p, timeout), concurrency
        )
    else:
        results = _tcp_scan(opts, ports, timeout, concurrency)
    for port, state in results:
        is_open = state == "open"
        any_open = any_open or is_open
        line = f"connection to {opts.host} {port} port [{proto}] " + (
            "succeeded!" if is_open else f"failed: {state}"
        )
        reporter.event(
            "port", line, host=opts.host, port=port, proto=proto, open=is_open, state=state
        )
    return 0 if any_open else 1


def _probe(opts: NetcatOptions, port: int, timeout: float) -> str:
    """``open``, ``closed``, ``timeout``, ``unreachable`` or ``error`` (an unknown host and
    other errors that are not the port's raise)."""
    try:
        sock = dial(opts, port=port, timeout=timeout)
    except SocketkitTimeout:
        return "timeout"
    except ConnectError as exc:
        return _failed_state(exc)
    try:
        return _udp_probe(sock, timeout) if opts.udp else "open"
    finally:
        sock.close()


def _probed(
    ports: list[int], probe: Callable[[int], str], concurrency: int
) -> Iterable[tuple[int, str]]:
    """(port, state) in port order, each as soon as it is known, probing up to
    ``concurrency`` ports at once (UDP: each probe waits for an ICMP error)."""
    if concurrency <= 1 or len(ports) <= 1:
        return ((port, probe(port)) for port in ports)
    return _InOrder(ports, probe, min(concurrency, _fd_headroom()))


#: Descriptors left free for everything else (stdio, the resolver, logging).
_FD_RESERVE = 16


def _fd_headroom() -> int:
    """How many more descriptors this process may open (RLIMIT_NOFILE), less a reserve; at
    least 1. A low ``ulimit -n`` makes a scan probe fewer ports at once, not fail."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 16
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(1, soft - used - _FD_RESERVE)


def _errno_state(err: int) -> str:
    if err == 0:
        return "open"
    if err == errno.ECONNREFUSED:
        return "closed"
    if err in _UNREACHABLE:
        return "unreachable"
    if err == errno.ETIMEDOUT:
        return "timeout"
    return "error"


def _tcp_scan(
    opts: NetcatOptions, ports: list[int], timeout: float, concurrency: int
) -> Iterator[tuple[int, str]]:
    """TCP ``-z`` from one thread: non-blocking connects, up to ``concurrency`` in flight
    (fewer if the descriptor limit is low), finished by ``poll``; each port is tried on the
    target's addresses in resolver order until one accepts (as nc does), and the results come
    out in port order as soon as they and every port before them are known."""
    family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(opts.family, socket.AF_UNSPEC)
    infos = resolve(
        Address(opts.host, ports[0]), type=socket.SOCK_STREAM, family=family,
        numeric=opts.numeric,
    )  # fmt: skip
    limit = max(1, min(concurrency, _fd_headroom()))
    poller = select.poll()
    flight: dict[int, tuple[int, int, socket.socket, float]] = {}  # fd: port, addr, sock, end
    again: list[tuple[int, int]] = []  # (port index, next address) to try
    done: dict[int, str] = {}
    queued = emitted = 0

    def start(index: int, which: int) -> bool:
        """Start port ``index`` on address ``which``; False if no descriptor was free."""
        fam, sockaddr = infos[which]
        try:
            sock = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE) and flight:
                return False  # wait for one in flight to finish
            raise
        try:
            sock.setblocking(False)
            bind_source(sock, opts, fam)
            err = sock.connect_ex((sockaddr[0], ports[index], *sockaddr[2:]))
        except BaseException:
            sock.close()
            raise
        if err == errno.EINPROGRESS:
            flight[sock.fileno()] = (index, which, sock, time.monotonic() + timeout)
            poller.register(sock, select.POLLOUT)
        else:
            sock.close()
            finished(index, which, _errno_state(err))
        return True

    def finished(index: int, which: int, state: str) -> None:
        if state != "open" and which + 1 < len(infos):
            again.append((index, which + 1))
        else:
            done[index] = state

    try:
        while emitted < len(ports):
            while len(flight) < limit and (again or queued < len(ports)):
                index, which = again.pop() if again else (queued, 0)
                if not start(index, which):
                    again.append((index, which))
                    limit = max(1, len(flight))
                    break
                if which == 0 and index == queued:
                    queued += 1
            while emitted in done:
                yield ports[emitted], done.pop(emitted)
                emitted += 1
            if not flight:
                continue
            wait = min(end for *_, end in flight.values()) - time.monotonic()
            for fd, _event in poller.poll(int(max(0.0, wait) * 1000) + 1):
                index, which, sock, _end = flight.pop(fd)
                poller.unregister(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sock.close()
                finished(index, which, _errno_state(err))
            now = time.monotonic()
            for fd, (index, which, sock, end) in list(flight.items()):
                if end <= now:
                    del flight[fd]
                    poller.unregister(fd)
                    sock.close()
                    finished(index, which, "timeout")
    finally:
        for _index, _which, sock, _end in flight.values():
            sock.close()


class _InOrder:
    """Worker threads (daemons: an interrupted scan exits at once) take ports from a shared
    index; iteration yields each result once it and all before it are in. A probe's error
    (an unknown host) stops the scan and is raised here, in the caller's thread."""

    def __init__(self, ports: list[int], probe: Callable[[int], str], workers: int) -> None:
        self._ports = ports
        self._probe = probe
        self._results: dict[int, str | BaseException] = {}
        self._next = 0  # the next port a worker takes
        self._index = 0  # the next port iteration yields
        self._stop = False
        self._cond = threading.Condition()
        for _ in range(min(workers, len(ports))):
            threading.Thread(target=self._work, daemon=True, name="socketkit-scan").start()

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._stop or self._next >= len(self._ports):
                    return
                index = self._next
                self._next += 1
            try:
                result: str | BaseException = self._probe(self._ports[index])
            except BaseException as exc:  # handed to the caller's thread
                result = exc
            with self._cond:
                self._results[index] = result
                self._cond.notify_all()

    def __iter__(self) -> _InOrder:
        return self

    def __next__(self) -> tuple[int, str]:
        index = self._index
        if index >= len(self._ports):
            raise StopIteration
        with self._cond:
            while index not in self._results:
                self._cond.wait()
            result = self._results.pop(index)
            if isinstance(result, BaseException):
                self._stop = True
        if isinstance(result, BaseException):
            raise result
        self._index = index + 1
        return self._ports[index], result


#: Errors that say no route leads to the host (a local route, or an ICMP error from a router).
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _failed_state(exc: ConnectError) -> str:
    """``closed`` (refused), ``unreachable`` (no route to it), or ``error``."""
    codes = {err.errno for _, err in exc.attempts if isinstance(err, OSError)}
    if codes and codes <= {errno.ECONNREFUSED}:
        return "closed"
    if codes and codes <= _UNREACHABLE | {errno.ECONNREFUSED}:
        return "unreachable"
    return "error"


def _udp_probe(sock: socket.socket, timeout: float) -> str:
    """A UDP port counts as open unless an ICMP error comes back: port unreachable is
    ``closed`` (like nc -zu), host or network unreachable is ``unreachable``."""
    try:
        sock.send(b"")
        sock.settimeout(min(timeout, 1.0))
        sock.recv(1)
    except TimeoutError:
        return "open"
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return "closed"
        if exc.errno in _UNREACHABLE:
            return "unreachable"
        return "open"
    return "open"
