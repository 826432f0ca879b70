"""``connect -z``: which TCP (or UDP) ports answer, over ranges like ``20-25,80``."""

from __future__ import annotations

import errno
import socket

from .._errors import AddressError, ConnectError, SocketkitTimeout
from .net import dial
from .options import NetcatOptions
from .report import Reporter

__all__ = ["parse_ports", "scan_ports"]

#: Most ports a single -z run may probe (a typo like 1-655350 should not take hours).
MAX_SCAN_PORTS = 65536
#: Per-port connect timeout when -w is not given: a filtered port should not stall the scan.
DEFAULT_SCAN_TIMEOUT = 3.0


def parse_ports(spec: str) -> list[int]:
    """``"80"``, ``"20-25"``, ``"22,80,8000-8010"`` -> sorted unique ports.

    Raises:
        AddressError: bad syntax or a port outside 0-65535.
    """
    ports: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        low_text, dash, high_text = part.partition("-")
        if not low_text.isdigit() or (dash and not high_text.isdigit()):
            raise AddressError(f"bad port or range {part!r}: expected PORT or LOW-HIGH")
        low = int(low_text)
        high = int(high_text) if dash else low
        for value in (low, high):
            if not 0 <= value <= 65535:
                raise AddressError(f"port {value} out of range: expected 0-65535")
        if high < low:
            raise AddressError(f"bad port range {part!r}: {low} > {high}")
        ports.update(range(low, high + 1))
    if len(ports) > MAX_SCAN_PORTS:
        raise AddressError(f"too many ports ({len(ports)})")
    return sorted(ports)


def scan_ports(opts: NetcatOptions, ports: list[int], reporter: Reporter) -> int:
    """Probe each port; exit status 0 if any is open, 1 if none is (like nc -z)."""
    timeout = opts.connect_timeout if opts.connect_timeout is not None else DEFAULT_SCAN_TIMEOUT
    proto = "udp" if opts.udp else "tcp"
    any_open = False
    for port in ports:
        state = "open"
        try:
            sock = dial(opts, port=port, timeout=timeout)
        except SocketkitTimeout:
            state = "timeout"
        except ConnectError as exc:
            state = _failed_state(exc)
        else:
            try:
                if opts.udp:
                    state = _udp_probe(sock, timeout)
            finally:
                sock.close()
        is_open = state == "open"
        any_open = any_open or is_open
        line = f"connection to {opts.host} {port} port [{proto}] " + (
            "succeeded!" if is_open else f"failed: {state}"
        )
        reporter.event(
            "port", line, host=opts.host, port=port, proto=proto, open=is_open, state=state
        )
    return 0 if any_open else 1


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
