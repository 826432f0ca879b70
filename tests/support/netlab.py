"""Network namespaces for tests: hosts joined by veth pairs, always torn down.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range, routes nowhere else) and
fd00:5e::/64 style ULA prefixes; traffic stays inside the namespaces the test creates.

    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, "198.18.1.1/24", "198.18.1.2/24")
        a.run(["ping", "-c1", "198.18.1.2"])
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

_counter = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@dataclass
class Host:
    """One network namespace."""

    name: str
    interfaces: list[str] = field(default_factory=list)

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cmd(argv), check=check, timeout=timeout, capture_output=True, text=True, **kw
        )  # type: ignore[call-overload,no-any-return]

    def popen(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.cmd(argv), **kw)  # type: ignore[call-overload,no-any-return]

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-qw", f"{key}={value}"])


class Lab:
    """A set of namespaces; every one is deleted on exit (even after a failure)."""

    def __init__(self) -> None:
        self.tag = f"sk{os.getpid() % 100000}x{next(_counter)}"
        self.hosts: list[Host] = []
        self._links = 0

    def host(self, label: str, *, forwarding: bool = False) -> Host:
        host = Host(f"{self.tag}{label}")
        _ip("netns", "add", host.name)
        self.hosts.append(host)
        _ip("-n", host.name, "link", "set", "lo", "up")
        if forwarding:
            host.sysctl("net.ipv4.ip_forward", "1")
            host.sysctl("net.ipv6.conf.all.forwarding", "1")
        return host

    def link(
        self, a: Host, b: Host, a_addr: str, b_addr: str, *, offloads: bool = True
    ) -> tuple[str, str]:
        """Join ``a`` and ``b`` with a veth pair; returns the interface names (a side, b side)."""
        self._links += 1
        ia, ib = f"{a.name[-6:]}{self._links}a", f"{b.name[-6:]}{self._links}b"
        _ip("link", "add", ia, "type", "veth", "peer", "name", ib)
        _ip("link", "set", ia, "netns", a.name)
        _ip("link", "set", ib, "netns", b.name)
        for host, iface, addr in ((a, ia, a_addr), (b, ib, b_addr)):
            if ":" in addr:
                _ip("-n", host.name, "addr", "add", addr, "dev", iface, "nodad")
            else:
                _ip("-n", host.name, "addr", "add", addr, "dev", iface)
            _ip("-n", host.name, "link", "set", iface, "up")
            host.interfaces.append(iface)
            if not offloads:
                host.run(
                    [
                        "ethtool",
                        "-K",
                        iface,
                        "tso",
                        "off",
                        "gso",
                        "off",
                        "gro",
                        "off",
                        "tx-checksumming",
                        "off",
                    ],
                    check=False,
                )
        return ia, ib

    def route(self, host: Host, prefix: str, via: str) -> None:
        _ip("-n", host.name, "route", "add", prefix, "via", via)

    def close(self) -> None:
        for host in reversed(self.hosts):
            subprocess.run(
                ["ip", "netns", "pids", host.name], capture_output=True, text=True, check=False
            )
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, check=False)
        self.hosts.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
