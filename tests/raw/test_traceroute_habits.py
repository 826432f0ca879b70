"""Linux traceroute's habits, each run with the real ``traceroute`` beside ``socketkit
traceroute`` in the same namespaces (a -- r -- b) and compared: the hops, the marks and how long
a run takes.

r has an 'unreachable' route (it answers ICMP host unreachable, !H), a 'prohibit' route
(administratively prohibited, !X), a 'blackhole' route (silence) and no route at all for
198.18.96.0/24 (network unreachable, !N). The kernel rate-limits those route errors per source
address, so each tool traces from its own address of a (-s) and every test starts a fresh lab.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from rawkit import sk, sk_as_nobody

from support.netlab import Host, Lab
from support.privilege import require_root, require_tool

pytestmark = pytest.mark.root

A4, A4_2, R4A, R4B, B4 = (
    "198.18.40.1",
    "198.18.40.7",
    "198.18.40.254",
    "198.18.41.254",
    "198.18.41.2",
)
A6, A6_2, R6A, R6B, B6 = (
    "fd00:5e:40::1", "fd00:5e:40::7", "fd00:5e:40::fe", "fd00:5e:41::fe", "fd00:5e:41::2",
)  # fmt: skip
HOST_UNREACH, PROHIBITED, BLACKHOLE, NET_UNREACH = (
    "198.18.99.1", "198.18.98.1", "198.18.97.1", "198.18.96.1",
)  # fmt: skip
OPEN_PORT, CLOSED_PORT = 8080, 8081


class Net:
    def __init__(self, lab: Lab) -> None:
        self.a = lab.host("a")
        self.r = lab.host("r", forwarding=True)
        self.r.sysctl("net.ipv4.icmp_ratelimit", "0")
        self.r.sysctl("net.ipv4.icmp_msgs_burst", "10000")
        self.b = lab.host("b")
        self.b.sysctl("net.ipv4.icmp_ratelimit", "0")
        self.ia, _ = lab.link(self.a, self.r, f"{A4}/24", f"{R4A}/24")
        lab.link(self.r, self.b, f"{R4B}/24", f"{B4}/24")
        self.a.run(["ip", "addr", "add", f"{A4_2}/24", "dev", self.ia])
        lab.route(self.a, "198.18.0.0/16", R4A)
        lab.route(self.b, "198.18.40.0/24", R4B)
        for kind, net in (("unreachable", "198.18.99.0/24"), ("prohibit", "198.18.98.0/24"),
                          ("blackhole", "198.18.97.0/24")):  # fmt: skip
            self.r.run(["ip", "route", "add", kind, net])
        # IPv6 on the same links: r's route errors are ICMPv6 errors, limited per namespace
        self.r.sysctl("net.ipv6.icmp.ratelimit", "0")
        self.b.sysctl("net.ipv6.icmp.ratelimit", "0")
        ra, rb = self.r.interfaces
        ib = self.b.interfaces[0]
        v6 = [(self.a, self.ia, A6), (self.a, self.ia, A6_2), (self.r, ra, R6A),
              (self.r, rb, R6B), (self.b, ib, B6)]  # fmt: skip
        for host, iface, addr in v6:
            host.run(["ip", "addr", "add", f"{addr}/64", "dev", iface, "nodad"])
        self.a.run(["ip", "-6", "route", "add", "fd00:5e::/32", "via", R6A])
        self.b.run(["ip", "-6", "route", "add", "fd00:5e:40::/64", "via", R6B])
        for kind, net in (("unreachable", "fd00:5e:99::/64"), ("prohibit", "fd00:5e:98::/64")):
            self.r.run(["ip", "-6", "route", "add", kind, net])


@pytest.fixture
def net() -> Iterator[Net]:
    require_root()
    require_tool("traceroute")
    with Lab() as lab:
        yield Net(lab)


def _timed(host: Host, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    res = host.run(argv, check=False, timeout=120)
    return res, time.monotonic() - started


def _both(net: Net, args: list[str], v6: bool = False) -> tuple[
    tuple[subprocess.CompletedProcess[str], float], tuple[subprocess.CompletedProcess[str], float]
]:  # fmt: skip
    """(traceroute, elapsed), (socketkit, elapsed): each from its own source address."""
    mine, yours = (A6, A6_2) if v6 else (A4, A4_2)
    theirs = _timed(net.a, ["traceroute", "-n", "-s", mine, *args])
    ours = _timed(net.a, sk("traceroute", "-n", "-s", yours, *args))
    return theirs, ours


def _marks(stdout: str) -> list[list[str]]:
    """Each hop line without the times: hop number, addresses (an address repeats only when
    another came between), '*' and '!X' marks."""
    hops = []
    for line in stdout.splitlines()[1:]:
        words = line.split()
        keep = [w for i, w in enumerate(words) if w != "ms" and not (
            i + 1 < len(words) and words[i + 1] == "ms")]  # fmt: skip
        hops.append(keep)
    return hops


@pytest.mark.parametrize(
    ("target", "mark"), [(HOST_UNREACH, "!H"), (NET_UNREACH, "!N"), (PROHIBITED, "!X")]
)
def test_stops_at_an_unreachable_mark_as_fast_as_traceroute(
    net: Net, target: str, mark: str
) -> None:
    (theirs, their_time), (ours, our_time) = _both(net, [target])
    assert theirs.returncode == ours.returncode == 0, (theirs.stderr, ours.stderr)
    their_hops, our_hops = _marks(theirs.stdout), _marks(ours.stdout)
    assert our_hops[-1][1:3] == [R4A, mark], ours.stdout
    assert len(our_hops) == len(their_hops), (ours.stdout, theirs.stdout)
    assert our_hops == their_hops, (ours.stdout, theirs.stdout)
    # a second for our interpreter's start under load; a serial trace takes minutes here
    assert our_time <= their_time + 1.5, (our_time, their_time)


@pytest.mark.parametrize(
    ("target", "mark"), [("fd00:5e:99::1", "!N"), ("fd00:5e:98::1", "!X"), ("fd00:5e:97::1", "!N")]
)
def test_ipv6_stops_at_an_unreachable_mark_as_fast_as_traceroute(
    net: Net, target: str, mark: str
) -> None:
    # 'unreachable' and a missing route both answer "no route" (code 0), 'prohibit' code 1
    (theirs, their_time), (ours, our_time) = _both(net, [target], v6=True)
    assert theirs.returncode == ours.returncode == 0, (theirs.stderr, ours.stderr)
    assert _marks(ours.stdout) == _marks(theirs.stdout), (ours.stdout, theirs.stdout)
    assert _marks(ours.stdout)[-1][1:3] == [R6A, mark], ours.stdout
    assert our_time <= their_time + 1.5, (our_time, their_time)


def test_ipv6_tcp_and_udp_reach_the_target(net: Net) -> None:
    for method in ([], ["-T", "-p", str(CLOSED_PORT)]):
        (theirs, _), (ours, _) = _both(net, [*method, "-q", "1", B6], v6=True)
        assert _marks(ours.stdout) == _marks(theirs.stdout) == [["1", R6A], ["2", B6]], (
            ours.stdout,
            theirs.stdout,
        )


def test_a_silent_path_is_probed_in_parallel(net: Net) -> None:
    args = ["-w", "1", "-q", "2", "-m", "8", BLACKHOLE]  # 16 probes at once, then 0 more
    (theirs, their_time), (ours, our_time) = _both(net, args)
    assert ours.returncode == 0, ours.stderr
    assert _marks(ours.stdout) == _marks(theirs.stdout) == [[str(h), "*", "*"] for h in
                                                            range(1, 9)]  # fmt: skip
    assert our_time <= their_time + 1.5, (our_time, their_time)
    assert our_time < 3  # one wait of 1 s for all 16, not 8 hops one after the other
    serial, serial_time = _timed(net.a, sk("traceroute", "-n", "-N", "1", *args))
    assert _marks(serial.stdout) == _marks(theirs.stdout)
    assert serial_time >= 8 * 2 * 1.0  # -N 1: one probe at a time, each waits its second


def test_silent_hop_before_the_target_does_not_cost_the_full_wait(net: Net) -> None:
    net.r.run(["nft", "add", "table", "inet", "quiet"])
    net.r.run(["nft", "add chain inet quiet out { type filter hook output priority 0; }"])
    net.r.run(["nft", "add rule inet quiet out icmp type time-exceeded drop"])
    (theirs, their_time), (ours, our_time) = _both(net, [B4])  # default -w 5
    assert _marks(ours.stdout) == _marks(theirs.stdout) == [["1", "*", "*", "*"],
                                                            ["2", B4]]  # fmt: skip
    assert our_time <= their_time + 1.5, (our_time, their_time)
    # the factors off: each silent probe waits its full MAX (in parallel: about 1 s in all)
    (theirs, their_time), (ours, our_time) = _both(net, ["-w", "1,0,0", B4])
    assert _marks(ours.stdout) == _marks(theirs.stdout) == [["1", "*", "*", "*"], ["2", B4]]
    assert our_time >= 1.0 and their_time >= 1.0


def _tcp_listener(host: Host) -> subprocess.Popen[bytes]:
    code = (
        "import socket\n"
        f"s=socket.create_server(('{B4}',{OPEN_PORT}))\n"
        "print('ready',flush=True)\n"
        "while True:\n"
        "    s.accept()[0].close()\n"
    )
    proc = host.popen(["python3", "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


@pytest.mark.parametrize("port", [OPEN_PORT, CLOSED_PORT, None])
def test_tcp_syn_probes(net: Net, port: int | None) -> None:
    listener = _tcp_listener(net.b)
    try:
        ports = [] if port is None else ["-p", str(port)]  # -T's default: 80 (closed on b)
        (theirs, _), (ours, _) = _both(net, ["-T", *ports, "-q", "2", B4])
    finally:
        listener.kill()
        listener.communicate()
    assert theirs.returncode == ours.returncode == 0, (theirs.stderr, ours.stderr)
    assert _marks(ours.stdout) == [["1", R4A], ["2", B4]], ours.stdout
    if port == CLOSED_PORT:  # no privilege needed: a connect() per probe
        nobody = net.a.run(sk_as_nobody("traceroute", "-n", "-T", "-p", str(port), B4),
                           check=False, timeout=60)  # fmt: skip
        assert nobody.returncode == 0, nobody.stderr
        assert _marks(nobody.stdout) == [["1", R4A], ["2", B4]], nobody.stdout
    # the same hops; traceroute's raw SYNs may share a source port, so b can take a later
    # one for a retransmission and not answer it ('*'): each of ours has its own socket
    assert [[w for w in hop if w != "*"] for hop in _marks(theirs.stdout)] == [
        ["1", R4A],
        ["2", B4],
    ], theirs.stdout


def test_interface_source_and_sendwait(net: Net) -> None:
    (theirs, _), (ours, _) = _both(net, ["-i", net.ia, "-q", "1", B4])
    assert _marks(ours.stdout) == _marks(theirs.stdout) == [["1", R4A], ["2", B4]]
    for sendwait in ("0.3", "300"):  # seconds, or milliseconds when above 10
        (theirs, their_time), (ours, our_time) = _both(net, ["-z", sendwait, "-q", "2", B4])
        assert _marks(ours.stdout) == _marks(theirs.stdout)
        assert their_time >= 0.9 and our_time >= 0.9  # 4 probes, 0.3 s apart
    for bad in (["-i", "nosuch0"], ["-s", "198.18.77.7"], ["-s", "::1"]):
        res = net.a.run(sk("traceroute", "-n", *bad, B4), check=False, timeout=30)
        assert res.returncode == 2, res
        assert res.stdout == ""
        assert res.stderr.startswith(f"socketkit traceroute: argument {bad[0]}: {bad[1]}: ")


def test_marks_are_linux_traceroutes() -> None:
    """traceroute.c parse_icmp_res(): the mark per ICMP(v6) type/code, and which end a trace."""
    from socketkit.raw.trace import _final, _note

    v4 = {0: "!N", 1: "!H", 2: "!P", 3: "", 4: "!F", 5: "!S", 6: "!N", 7: "!H", 8: "!N",
          9: "!X", 10: "!X", 11: "!N", 12: "!H", 13: "!X", 14: "!V", 15: "!C",
          16: "!<16>"}  # fmt: skip
    assert {code: _note(False, 3, code)[1] for code in v4} == v4
    v6 = {0: "!N", 1: "!X", 2: "!H", 3: "!H", 4: "", 5: "!<5>"}
    assert {code: _note(True, 1, code)[1] for code in v6} == v6
    assert _note(False, 11, 0) == (False, "") and _note(True, 3, 0) == (False, "")
    assert _note(False, 12, 0)[1] == "!<12-0>" and _note(False, 11, 1)[1] == "!<11-1>"
    assert _note(False, 3, 3) == (True, "") and _note(True, 1, 4) == (True, "")
    assert not _final(False, 11, 0) and not _final(True, 3, 0)
    assert all(_final(False, 3, code) for code in v4) and _final(False, 12, 0)
    assert all(_final(True, 1, code) for code in v6) and _final(True, 2, 0)
