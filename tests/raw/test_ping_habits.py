"""iputils ping's habits, each run with the real ``ping`` beside ``socketkit ping`` in the same
namespaces (a -- r -- b) and compared: same lines once the times are masked, same exit code."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rawkit import sk, sk_as_nobody

from support.netlab import Host, Lab
from support.privilege import require_root, require_tool

pytestmark = pytest.mark.root

A4, R4A, R4B, B4 = "198.18.20.1", "198.18.20.254", "198.18.21.254", "198.18.21.2"
A4_2 = "198.18.20.7"  # a second address of a, for -I ADDR
HOST_UNREACH = "198.18.99.1"  # r rejects it: ICMP host unreachable
BLACKHOLE = "198.18.97.1"  # r: 'blackhole' route: silence


class Net:
    def __init__(self, lab: Lab) -> None:
        self.a = lab.host("a")
        self.r = lab.host("r", forwarding=True)
        self.r.sysctl("net.ipv4.icmp_ratelimit", "0")  # r answers every probe
        self.r.sysctl("net.ipv4.icmp_msgs_burst", "10000")
        self.b = lab.host("b")
        self.ia, _ = lab.link(self.a, self.r, f"{A4}/24", f"{R4A}/24")
        _, self.ib = lab.link(self.r, self.b, f"{R4B}/24", f"{B4}/24")
        self.a.run(["ip", "addr", "add", f"{A4_2}/24", "dev", self.ia])
        lab.route(self.a, "198.18.0.0/16", R4A)
        lab.route(self.b, "198.18.20.0/24", R4B)
        # nftables' reject in r's forward path (so r routes the network on to b), not an
        # 'unreachable' route: the kernel's route errors have a rate limit of their own
        # (net.ipv4.route.error_cost, not per namespace) that would hide answers
        r = self.r
        r.run(["ip", "route", "add", "198.18.99.0/24", "via", B4])
        r.run(["nft", "add table inet base"])
        r.run(["nft", "add chain inet base fw { type filter hook forward priority 10; }"])
        r.run(["nft", "add rule inet base fw ip daddr 198.18.99.0/24 "
               "reject with icmp type host-unreachable"])  # fmt: skip
        self.r.run(["ip", "route", "add", "blackhole", "198.18.97.0/24"])

    @contextmanager
    def drop_seq(self, seq: int) -> Iterator[None]:
        """r drops the echo requests with this sequence number (both tools count from 1)."""
        r = self.r
        r.run(["nft", "add table inet h7"])
        r.run(["nft", "add chain inet h7 fw { type filter hook forward priority 0; }"])
        r.run(["nft", f"add rule inet h7 fw icmp type echo-request icmp sequence {seq} drop"])
        try:
            yield
        finally:
            r.run(["nft", "delete table inet h7"])


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    require_root()
    require_tool("ping")
    require_tool("nft")
    with Lab() as lab:
        yield Net(lab)


_MASKS = [
    (re.compile(r"time=\d+(\.\d+)? ms"), "time=T ms"),
    (re.compile(r"time \d+ms"), "time Tms"),
    (re.compile(r"^(rtt min/avg/max/mdev = ).*$", re.M), r"\1R ms"),
    (re.compile(r"^\[\d{10}\.\d{6}\] ", re.M), "[D] "),
]


def _mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def _both(host: Host, args: list[str], timeout: float = 60) -> tuple[
    subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]
]:  # fmt: skip
    theirs = host.run(["ping", *args], check=False, timeout=timeout)
    ours = host.run(sk("ping", *args), check=False, timeout=timeout)
    return theirs, ours


def _same(host: Host, args: list[str]) -> subprocess.CompletedProcess[str]:
    theirs, ours = _both(host, args)
    assert _mask(ours.stdout) == _mask(theirs.stdout), (ours.stdout, theirs.stdout)
    assert ours.returncode == theirs.returncode, (ours, theirs)
    return ours


def test_deadline_without_count_stops_at_the_deadline(net: Net) -> None:
    # requests at 0, 0.4, 0.8 s; the deadline ends the run at 1 s
    started = time.monotonic()
    res = _same(net.a, ["-w", "1", "-i", "0.4", B4])
    assert "3 packets transmitted, 3 received, 0% packet loss" in res.stdout
    assert res.returncode == 0
    assert time.monotonic() - started < 10


def test_deadline_with_count_waits_for_count_replies(net: Net) -> None:
    with net.drop_seq(2):  # so a fourth request is sent for the third reply
        res = _same(net.a, ["-c", "3", "-w", "2", "-i", "0.3", B4])
    assert "4 packets transmitted, 3 received, 25% packet loss" in res.stdout
    assert res.returncode == 0


def test_deadline_with_fewer_replies_than_count_exits_1(net: Net) -> None:
    with net.drop_seq(2):
        res = _same(net.a, ["-c", "5", "-w", "1", "-i", "0.4", B4])
    assert "3 packets transmitted, 2 received" in res.stdout
    assert res.returncode == 1


def test_deadline_and_no_reply(net: Net) -> None:
    res = _same(net.a, ["-c", "2", "-w", "1", "-i", "0.4", BLACKHOLE])
    assert "3 packets transmitted, 0 received, 100% packet loss" in res.stdout
    assert res.stdout.endswith("ms\n\n")  # no rtt line: a blank one, as iputils
    assert res.returncode == 1


def test_deadline_stops_at_an_icmp_error(net: Net) -> None:
    res = _same(net.a, ["-w", "3", "-i", "0.3", HOST_UNREACH])
    assert f"From {R4A} icmp_seq=1 Destination Host Unreachable" in res.stdout
    assert "1 packets transmitted, 0 received, +1 errors, 100% packet loss" in res.stdout
    assert res.returncode == 1


def test_errors_without_replies_end_with_a_blank_line(net: Net) -> None:
    res = _same(net.a, ["-c", "2", "-i", "0.2", HOST_UNREACH])
    assert "2 packets transmitted, 0 received, +2 errors, 100% packet loss" in res.stdout
    assert res.stdout.endswith("ms\n\n")
    assert res.returncode == 1


def test_linger_is_two_round_trips_once_a_reply_came(net: Net) -> None:
    """iputils -W: the wait after the last request only while no reply came; after one, twice
    the longest round trip (at least the interval)."""
    with net.drop_seq(2):
        started = time.monotonic()
        res = _same(net.a, ["-c", "2", "-i", "0.2", "-W", "5", B4])
        took = time.monotonic() - started
    assert "2 packets transmitted, 1 received, 50% packet loss" in res.stdout
    assert took < 5  # both runs: not one -W wait of 5 s
    silent = _same(net.a, ["-c", "1", "-W", "1", BLACKHOLE])  # no reply: -W applies
    assert "1 packets transmitted, 0 received, 100% packet loss" in silent.stdout


def test_outstanding_reports_the_request_without_answer(net: Net) -> None:
    with net.drop_seq(2):
        res = _same(net.a, ["-O", "-c", "4", "-i", "0.3", "-W", "1", B4])
    assert "no answer yet for icmp_seq=2\n" in res.stdout
    assert res.stdout.count("no answer yet") == 1
    with net.drop_seq(2):  # -O speaks with -q and between flood dots too, as iputils
        quiet = _same(net.a, ["-q", "-O", "-c", "3", "-i", "0.2", "-W", "1", B4])
        flood = _same(net.a, ["-f", "-O", "-c", "3", "-W", "1", B4])
    assert "no answer yet for icmp_seq=2\n" in quiet.stdout
    assert ".\b \b.no answer yet for icmp_seq=2\n.\b \b\n" in flood.stdout
    # an ICMP error is no answer either; -D stamps the error and -O lines too
    res = _same(net.a, ["-D", "-O", "-c", "3", "-i", "0.2", "-W", "1", HOST_UNREACH])
    assert "[D] no answer yet for icmp_seq=2\n" in _mask(res.stdout)
    assert f"[D] From {R4A} icmp_seq=3 Destination Host Unreachable\n" in _mask(res.stdout)


def test_timestamps_bell_and_names(net: Net) -> None:
    before = time.time()
    res = _same(net.a, ["-D", "-a", "-c", "2", "-i", "0.2", "localhost"])
    after = time.time()
    replies = [ln for ln in res.stdout.splitlines() if "bytes from" in ln]
    assert len(replies) == 2
    for line in replies:
        stamp = float(line[1:].split("]", 1)[0])
        assert before <= stamp <= after
        assert "bytes from localhost (127.0.0.1): " in line
        assert line.endswith(" ms\a")
    numeric = _same(net.a, ["-n", "-c", "1", "localhost"])
    assert "64 bytes from 127.0.0.1: icmp_seq=1" in numeric.stdout


def _first_request(host: Host, run: list[str]) -> bytes:
    """The ICMP message of the first echo request ``run`` sends, as it arrives at ``host``."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP)\n"
        "s.settimeout(20)\n"
        "print('ready',flush=True)\n"
        "while True:\n"
        "    d=s.recv(70000)\n"
        "    h=(d[0]&15)*4\n"
        "    if d[h]==8:\n"
        "        print(d[12:16].hex(), d[h:].hex(), flush=True)\n"
        "        break\n"
    )
    with host.popen(["python3", "-c", code], stdout=subprocess.PIPE) as sniffer:
        try:
            assert sniffer.stdout is not None
            assert sniffer.stdout.readline() == b"ready\n"
            res = subprocess.run(run, capture_output=True, timeout=30, check=False)
            assert res.returncode == 0, res.stderr
            line = sniffer.stdout.readline().decode().split()
        finally:
            sniffer.kill()
    return bytes.fromhex(line[0]) + bytes.fromhex(line[1])


def test_pattern_fills_the_data_as_iputils_does(net: Net) -> None:
    args = ["-c", "1", "-p", "ff00a5", "-s", "40", B4]
    theirs = _first_request(net.b, net.a.cmd(["ping", *args]))
    ours = _first_request(net.b, net.a.cmd(sk("ping", *args)))
    assert len(ours) == len(theirs) == 4 + 8 + 40
    # after the 16-byte timestamp, the pattern repeated from the start of the data
    assert ours[4 + 8 + 16 :] == theirs[4 + 8 + 16 :] == (b"\xff\x00\xa5" * 14)[16:40]
    res = _same(net.a, args)
    assert res.stdout.startswith("PATTERN: 0xff00a5\nPING ")
    quiet = _same(net.a, ["-q", *args])
    assert "PATTERN" not in quiet.stdout
    long = _same(net.a, ["-c", "1", "-p", "0102030405060708090a0b0c0d0e0f1011", B4])
    assert long.stdout.startswith("PATTERN: 0x0102030405060708090a0b0c0d0e0f10\n")  # 16 bytes


def test_interface_or_source_address(net: Net) -> None:
    res = _same(net.a, ["-c", "1", "-I", A4_2, B4])
    assert res.stdout.startswith(f"PING {B4} ({B4}) from {A4_2} : 56(84) bytes of data.\n")
    wire = _first_request(net.b, net.a.cmd(sk("ping", "-c", "1", "-I", A4_2, B4)))
    assert wire[:4] == bytes(map(int, A4_2.split(".")))
    res = _same(net.a, ["-c", "1", "-I", net.ia, B4])
    assert res.stdout.startswith(f"PING {B4} ({B4}) from {A4} {net.ia}: 56(84) bytes of data.\n")
    # iputils ignores an IPv6 -I for an IPv4 target (exit 0); socketkit refuses it
    for bad, their_rc in (("nosuch0", 2), ("198.18.77.7", 2), ("::1", 0)):
        theirs, ours = _both(net.a, ["-c", "1", "-I", bad, B4])
        assert (theirs.returncode, ours.returncode) == (their_rc, 2)
        assert ours.stdout == ""
        assert ours.stderr.startswith(f"socketkit ping: argument -I: {bad}: "), ours.stderr
        assert len(ours.stderr.splitlines()) == 2  # the line and where to read more


def test_flood(net: Net) -> None:
    theirs, ours = _both(net.a, ["-f", "-c", "5", B4])
    assert ours.returncode == theirs.returncode == 0
    body = ours.stdout.split("\n")[1]
    assert body == theirs.stdout.split("\n")[1] == ".\b \b" * 5
    assert "5 packets transmitted, 5 received" in ours.stdout
    assert re.search(r"ms, ipg/ewma \d+\.\d{3}/\d+\.\d{3} ms\n$", ours.stdout), ours.stdout
    theirs, ours = _both(net.a, ["-f", "-c", "2", HOST_UNREACH])  # errors: 'E'
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout.split("\n")[1] == theirs.stdout.split("\n")[1]


_SLOW_ECHO = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.01)
late = []
print("ready", flush=True)
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        data, (src, _p) = s.recvfrom(70000)
        icmp = bytearray(data[(data[0] & 15) * 4 :])
        if icmp[0] == 8:
            icmp[0], icmp[2:4] = 0, b"\\0\\0"
            total = sum(struct.unpack(f"!{len(icmp) // 2}H", bytes(icmp[: len(icmp) // 2 * 2])))
            total += icmp[-1] << 8 if len(icmp) % 2 else 0
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            icmp[2:4] = struct.pack("!H", ~total & 0xFFFF)
            late.append((time.monotonic() + 0.1, bytes(icmp), src))
    except TimeoutError:
        pass
    while late and late[0][0] <= time.monotonic():
        _t, reply, dst = late.pop(0)
        s.sendto(reply, (dst, 0))
"""


def test_pipe_when_requests_outrun_their_replies(net: Net) -> None:
    """iputils adds ', pipe N' (the most requests outstanding when a reply came) to the rtt
    line. Here b's kernel ignores echo requests and a responder answers each 100 ms late,
    while requests leave every 20 ms."""
    net.b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    results = []
    try:
        for tool in (["ping"], sk("ping")):
            with net.b.popen(["python3", "-c", _SLOW_ECHO], stdout=subprocess.PIPE) as echo:
                try:
                    assert echo.stdout is not None and echo.stdout.readline() == b"ready\n"
                    results.append(
                        net.a.run(
                            [*tool, "-q", "-c", "10", "-i", "0.02", "-W", "2", B4],
                            check=False,
                            timeout=60,
                        )
                    )
                finally:
                    echo.kill()
    finally:
        net.b.sysctl("net.ipv4.icmp_echo_ignore_all", "0")
    theirs, ours = results
    assert ours.returncode == theirs.returncode == 0, (theirs, ours)
    for res in (theirs, ours):
        assert "10 packets transmitted, 10 received" in res.stdout, res.stdout
        found = re.search(r"^rtt min/avg/max/mdev = [\d./]+ ms, pipe (\d+)$", res.stdout, re.M)
        assert found, res.stdout
        assert 3 <= int(found.group(1)) <= 10, res.stdout


def test_flood_and_short_interval_need_root(net: Net) -> None:
    net.a.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    try:
        for args in (["-f", "-c", "1", B4], ["-i", "0.001", "-c", "1", B4]):
            res = net.a.run(sk_as_nobody("ping", *args), check=False, timeout=30)
            assert res.returncode == 2, res
            assert res.stdout == ""
            assert res.stderr.startswith(
                "socketkit ping: cannot flood; minimal interval allowed for user is 2ms"
            ), res.stderr
        ok = net.a.run(sk_as_nobody("ping", "-i", "0.002", "-c", "2", "-q", B4), check=False)
        assert ok.returncode == 0, ok.stderr
    finally:
        net.a.sysctl("net.ipv4.ping_group_range", "1 0")


_STATUS = re.compile(
    r"^\r(\d+)/(\d+) packets, (\d+)% loss, min/avg/ewma/max = "
    r"\d+\.\d{3}/\d+\.\d{3}/\d+\.\d{3}/\d+\.\d{3} ms\n$"
)


def _quit_then_interrupt(host: Host, argv: list[str]) -> tuple[int, str, str]:
    with host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            seen = 0
            while seen < 4:  # the header, then three replies
                assert proc.stdout.readline()
                seen += 1
            proc.send_signal(signal.SIGQUIT)
            time.sleep(0.05)
            for _ in range(3):  # it goes on
                assert b"bytes from" in proc.stdout.readline()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    return proc.returncode, out.decode(), err.decode()


def test_sigquit_prints_the_running_summary_and_goes_on(net: Net) -> None:
    for argv in (["ping", "-i", "0.1", B4], sk("ping", "-i", "0.1", B4)):
        rc, out, err = _quit_then_interrupt(net.a, argv)
        match = _STATUS.match(err)
        assert match, (argv, err)
        assert int(match.group(1)) >= 3 and match.group(3) in ("0", "25", "33", "20")
        assert rc == 0, (argv, err)
        assert "packets transmitted" in out


def test_ctrl_c_without_replies_prints_statistics_and_exits_1(net: Net) -> None:
    for argv in (["ping", "-i", "0.1", BLACKHOLE], sk("ping", "-i", "0.1", BLACKHOLE)):
        with net.a.popen(argv, stdout=subprocess.PIPE) as proc:
            try:
                time.sleep(1.0)  # iputils' header waits in its stdout buffer: no reading it
                proc.send_signal(signal.SIGINT)
                out, _ = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 1, argv
        assert b"0 received, 100% packet loss" in out


@pytest.mark.parametrize(
    ("args", "their_rc"),
    [
        (["-w", "-1"], 1),  # iputils exits 1 for a bad -w; socketkit's usage errors are all 2
        (["-w", "2147483648"], 1),
        (["-p", "zz"], 2),
        (["-W", "-1"], 2),
        (["-I", "nosuch0"], 2),
    ],
)
def test_out_of_range_is_refused_before_any_packet(
    net: Net, args: list[str], their_rc: int
) -> None:
    theirs, ours = _both(net.a, ["-c", "1", *args, B4])
    assert (theirs.returncode, ours.returncode) == (their_rc, 2), (theirs, ours)
    assert ours.stdout == ""
    assert ours.stderr.count("\n") == 2
    assert ours.stderr.startswith(f"socketkit ping: argument {args[0]}: "), ours.stderr


def test_ipv6_header_like_iputils() -> None:
    require_root()
    theirs = subprocess.run(["ping", "-6", "-c", "1", "-q", "::1"], capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    ours = subprocess.run(sk("ping", "-6", "-c", "1", "-q", "::1"), capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert (
        ours.stdout.splitlines()[0]
        == theirs.stdout.splitlines()[0]
        == "PING ::1(::1) 56 data bytes"
    )
