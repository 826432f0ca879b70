"""ping and traceroute across a router namespace: a -- r -- b (IPv4 and IPv6)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from rawkit import sk, sk_as_nobody

from support.netlab import Host, Lab
from support.privilege import require_root, require_tool

pytestmark = pytest.mark.root

A4, R4A, R4B, B4 = "198.18.10.1", "198.18.10.254", "198.18.11.254", "198.18.11.2"
A6, R6A, R6B, B6 = "fd00:5e:10::1", "fd00:5e:10::fe", "fd00:5e:11::fe", "fd00:5e:11::2"


class Net:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.a = lab.host("a")
        self.r = lab.host("r", forwarding=True)
        # The router answers every probe: no ICMP rate limit (1/s per peer after a burst of 6
        # by default, which back-to-back traceroutes in one test module would exhaust).
        self.r.sysctl("net.ipv4.icmp_ratelimit", "0")
        self.r.sysctl("net.ipv6.icmp.ratelimit", "0")
        self.b = lab.host("b")
        # b answers every probe too: traceroute has 16 probes in flight, most of them reach b
        # at once, and back-to-back traces would exhaust b's per-peer ICMP burst
        self.b.sysctl("net.ipv4.icmp_ratelimit", "0")
        self.b.sysctl("net.ipv6.icmp.ratelimit", "0")
        ia, ra = lab.link(self.a, self.r, f"{A4}/24", f"{R4A}/24")
        rb, ib = lab.link(self.r, self.b, f"{R4B}/24", f"{B4}/24")
        for host, iface, addr in (
            (self.a, ia, A6), (self.r, ra, R6A), (self.r, rb, R6B), (self.b, ib, B6),
        ):  # fmt: skip
            host.run(["ip", "addr", "add", f"{addr}/64", "dev", iface, "nodad"])
        lab.route(self.a, "198.18.11.0/24", R4A)
        lab.route(self.b, "198.18.10.0/24", R4B)
        self.a.run(["ip", "-6", "route", "add", "fd00:5e:11::/64", "via", R6A])
        self.b.run(["ip", "-6", "route", "add", "fd00:5e:10::/64", "via", R6B])

    def drop(self, rule: str) -> None:
        """Add an nftables rule in r's forward path (counter included by the caller)."""
        r = self.r
        r.run(["nft", "add", "table", "inet", "imp"], check=False)
        r.run(["nft", "add chain inet imp transit { type filter hook forward priority 0; }"])
        r.run(["nft", f"add rule inet imp transit {rule}"])

    def dropped(self) -> int:
        out = self.r.run(["nft", "-j", "list", "chain", "inet", "imp", "transit"]).stdout
        total = 0
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += int(expr["counter"]["packets"])
        return total


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    require_root()
    require_tool("nft")
    with Lab() as lab:
        yield Net(lab)


def _run(host: Host, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return host.run(argv, check=False, timeout=timeout)


def test_ping_raw_across_the_router(net: Net) -> None:
    res = _run(net.a, sk("ping", "-c", "5", "-i", "0.05", "-W", "2", B4))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"PING {B4} ({B4}) 56(84) bytes of data."
    replies = [ln for ln in lines if ln.startswith("64 bytes from")]
    assert [int(re.search(r"icmp_seq=(\d+)", ln).group(1)) for ln in replies] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert all(f"from {B4}: " in ln and " ttl=63 " in ln for ln in replies)  # one router hop
    assert "5 packets transmitted, 5 received, 0% packet loss" in res.stdout
    assert re.search(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", res.stdout)


def test_ping6_across_the_router(net: Net) -> None:
    res = _run(net.a, sk("ping", "-6", "-c", "3", "-i", "0.05", "-W", "2", B6))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"PING {B6}({B6}) 56 data bytes"  # as iputils
    assert res.stdout.count(f"64 bytes from {B6}: ") == 3
    assert " ttl=63 " in res.stdout
    assert "3 packets transmitted, 3 received, 0% packet loss" in res.stdout


def test_ping_loss_matches_the_nftables_drop_counter(net: Net) -> None:
    net.r.run(["nft", "flush", "ruleset"])
    net.drop(f"ip daddr {B4} icmp type echo-request numgen random mod 100 < 20 counter drop")
    count = 200
    res = _run(net.a, sk("ping", "-q", "-c", str(count), "-i", "0.005", "-W", "2", B4))
    dropped = net.dropped()
    net.r.run(["nft", "flush", "ruleset"])
    assert 0 < dropped < count
    received = count - dropped
    loss = 100.0 * dropped / count
    assert f"{count} packets transmitted, {received} received, {loss:g}% packet loss" in res.stdout
    assert res.returncode == 0
    assert "bytes from" not in res.stdout  # -q


def test_ping_without_any_reply_exits_1(net: Net) -> None:
    net.r.run(["nft", "flush", "ruleset"])
    net.drop(f"ip daddr {B4} icmp type echo-request counter drop")
    res = _run(net.a, sk("ping", "-c", "3", "-i", "0.1", "-W", "1", B4))
    net.r.run(["nft", "flush", "ruleset"])
    assert res.returncode == 1
    assert "3 packets transmitted, 0 received, 100% packet loss" in res.stdout
    assert "rtt min" not in res.stdout


def test_ping_ttl_exceeded_reports_the_router(net: Net) -> None:
    res = _run(net.a, sk("ping", "-c", "2", "-i", "0.1", "-W", "1", "-t", "1", B4))
    assert res.returncode == 1
    assert f"From {R4A} icmp_seq=1 Time to live exceeded" in res.stdout
    assert "+2 errors" in res.stdout


def test_ping_unprivileged_datagram_socket(net: Net) -> None:
    net.a.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    try:
        # as nobody: no raw socket, so this is the datagram path (kernel-chosen identifier)
        res = _run(net.a, sk_as_nobody("ping", "-c", "3", "-i", "0.2", "-W", "2", B4))
        assert res.returncode == 0, res.stderr
        assert res.stdout.count(f"64 bytes from {B4}: ") == 3 and " ttl=63 " in res.stdout
        res6 = _run(net.a, sk_as_nobody("ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", B6))
        assert res6.returncode == 0, res6.stderr
        assert res6.stdout.count(f"64 bytes from {B6}: ") == 2
        # ICMP errors reach a datagram socket through its error queue (IP_RECVERR)
        res = _run(net.a, sk_as_nobody("ping", "-c", "2", "-i", "0.1", "-W", "1", "-t", "1", B4))
        assert res.returncode == 1
        assert f"From {R4A} icmp_seq=1 Time to live exceeded" in res.stdout
        assert f"From {R4A} icmp_seq=2 Time to live exceeded" in res.stdout
        assert "+2 errors" in res.stdout
        # root forced onto the datagram path gives the same answers
        res = _run(net.a, sk("ping", "--method", "dgram", "-c", "2", "-i", "0.1", "-W", "2", B4))
        assert res.returncode == 0 and "2 received" in res.stdout
    finally:
        net.a.sysctl("net.ipv4.ping_group_range", "1 0")


def test_ping_without_privilege_says_what_to_do(net: Net) -> None:
    net.a.sysctl("net.ipv4.ping_group_range", "1 0")
    res = _run(net.a, sk_as_nobody("ping", "-c", "1", B4))
    assert res.returncode == 8
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert "ping_group_range" in err[0] and "root" in err[0]


def _hops(stdout: str) -> list[list[str]]:
    return [ln.split() for ln in stdout.splitlines()[1:] if ln.strip()]


@pytest.mark.parametrize("method", [[], ["-I"]])
def test_traceroute_shows_the_middle_hop(net: Net, method: list[str]) -> None:
    res = _run(net.a, sk("traceroute", "-n", "-w", "2", "-q", "2", *method, B4))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith(f"traceroute to {B4} ({B4}), 30 hops max")
    hops = _hops(res.stdout)
    assert [h[0] for h in hops] == ["1", "2"]
    assert hops[0][1] == R4A and hops[1][1] == B4
    assert hops[0].count("ms") == 2 and hops[1].count("ms") == 2


def test_traceroute6_and_unprivileged_udp(net: Net) -> None:
    res = _run(net.a, sk("traceroute", "-n", "-w", "2", "-q", "1", B6))
    assert res.returncode == 0, res.stderr
    hops = _hops(res.stdout)
    assert [(h[0], h[1]) for h in hops] == [("1", R6A), ("2", B6)]
    res = _run(net.a, sk_as_nobody("traceroute", "-n", "-w", "2", "-q", "1", B4))
    assert res.returncode == 0, res.stderr
    assert [(h[0], h[1]) for h in _hops(res.stdout)] == [("1", R4A), ("2", B4)]


def test_traceroute_stars_for_a_silent_hop(net: Net) -> None:
    net.r.run(["nft", "flush", "ruleset"])
    net.r.run(["nft", "add", "table", "inet", "imp"])
    net.r.run(["nft", "add chain inet imp quiet { type filter hook output priority 0; }"])
    net.r.run(["nft", "add rule inet imp quiet icmp type time-exceeded drop"])
    try:
        res = _run(net.a, sk("traceroute", "-n", "-w", "0.5", "-q", "2", "-m", "3", B4))
    finally:
        net.r.run(["nft", "flush", "ruleset"])
    hops = _hops(res.stdout)
    assert hops[0] == ["1", "*", "*"]
    assert hops[1][:2] == ["2", B4]


def test_library_ping_and_traceroute_on_loopback() -> None:
    require_root()
    from socketkit import ping, traceroute

    report = ping("127.0.0.1", count=3, interval=0.05, timeout=2)
    assert report.method == "raw"
    assert [p.seq for p in report] == [1, 2, 3]
    assert all(p.ok and p.address == "127.0.0.1" and p.size == 64 for p in report)
    assert report.stats is not None
    assert (report.stats.transmitted, report.stats.received, report.stats.loss_percent) == (3, 3, 0)
    trace = traceroute("127.0.0.1", wait=1, nqueries=1)
    assert trace.reached and [h.addresses for h in trace.hops] == [["127.0.0.1"]]


def test_traceroute_icmp_unprivileged_datagram_socket(net: Net) -> None:
    net.a.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    try:
        res = _run(net.a, sk_as_nobody("traceroute", "-I", "-n", "-w", "2", "-q", "2", B4))
        res6 = _run(net.a, sk_as_nobody("traceroute", "-I", "-6", "-n", "-w", "2", "-q", "1", B6))
    finally:
        net.a.sysctl("net.ipv4.ping_group_range", "1 0")
    assert res.returncode == 0, res.stderr
    assert [h[:2] for h in _hops(res.stdout)] == [["1", R4A], ["2", B4]]
    assert all(h.count("ms") == 2 for h in _hops(res.stdout)), res.stdout
    assert res6.returncode == 0, res6.stderr
    assert [h[:2] for h in _hops(res6.stdout)] == [["1", R6A], ["2", B6]]
    denied = _run(net.a, sk_as_nobody("traceroute", "-I", "-n", "-w", "1", B4))
    assert denied.returncode == 8 and "ping_group_range" in denied.stderr
