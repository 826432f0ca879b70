"""Live ``socketkit sniff`` with tcpdump's habits: ``-Q in|out|inout`` (direction, in the
kernel), ``--print`` with ``-w`` (lines and file both; the lines are what tcpdump prints for
the file, interface names on ``-i any`` included), ``-l``."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from rawkit import sk

from support.netlab import Lab
from support.privilege import require_root, require_tool
from support.procs import stop

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def _listening(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert b"listening on" in line, line


def test_direction_in_out_inout() -> None:
    """Host a pings b over a veth: on a's side the requests are sent (out), the replies
    received (in)."""
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        ia, _ib = lab.link(a, b, "198.18.7.1/24", "198.18.7.2/24")
        procs = {}
        try:
            for direction, count in (("in", 3), ("out", 3), ("inout", 6)):
                # -t: the kernel stamps each packet socket's copy on its own, so the same
                # packet can carry times a microsecond apart in two captures.
                proc = a.popen(
                    sk("sniff", "-t", "-i", ia, "-Q", direction, "-c", str(count), "icmp"),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                procs[direction] = proc
                _listening(proc)
            a.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.7.2"], timeout=30)
            lines = {}
            for direction, proc in procs.items():
                out, err = proc.communicate(timeout=30)
                assert proc.returncode == 0, err
                lines[direction] = out.decode().splitlines()
        finally:
            for proc in procs.values():
                stop(proc)
    assert len(lines["in"]) == 3 and all("ICMP echo reply" in ln for ln in lines["in"])
    assert len(lines["out"]) == 3 and all("ICMP echo request" in ln for ln in lines["out"])
    assert sorted(lines["inout"]) == sorted(lines["in"] + lines["out"])


def test_direction_on_loopback_as_tcpdump() -> None:
    """On lo every packet is received: -Q in keeps all, -Q out none (tcpdump the same)."""
    port = _free_udp_port()
    proc = subprocess.Popen(
        sk("sniff", "-i", "lo", "-Q", "out", "--timeout", "2", f"udp port {port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    inbound = subprocess.Popen(
        sk("sniff", "-i", "lo", "-Q", "in", "-c", "2", f"udp port {port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _listening(proc)
        _listening(inbound)
        _send(port, 2)
        out, err = proc.communicate(timeout=30)
        in_out, _ = inbound.communicate(timeout=30)
    finally:
        stop(proc)
        stop(inbound)
    assert out == b"" and err.decode().endswith("0 packets captured, 0 dropped by kernel\n")
    assert len(in_out.decode().splitlines()) == 2


def test_direction_refused_before_capture() -> None:
    res = subprocess.run(sk("sniff", "-Q", "sideways"), capture_output=True, timeout=30)
    assert res.returncode == 2
    assert res.stderr.decode().splitlines()[0].startswith("socketkit sniff: argument -Q")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(port: int, n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            s.sendto(b"%010d" % i, ("127.0.0.1", port))


@pytest.mark.parametrize("iface", ["lo", "any"])
def test_print_with_write_shows_tcpdumps_lines(tmp_path: Path, iface: str) -> None:
    port = _free_udp_port()
    out = tmp_path / "cap.pcap"
    proc = subprocess.Popen(
        sk("sniff", "-i", iface, "-l", "-c", "3", "-w", str(out), "--print", f"udp port {port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _listening(proc)
        _send(port, 1)
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()  # -l: the line comes before the end
        assert f"> 127.0.0.1.{port}: UDP, length 10" in first
        _send(port, 2)
        rest, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    printed = [first.rstrip("\n"), *rest.decode().splitlines()]
    theirs = subprocess.run(
        [require_tool("tcpdump"), "-nn", "-r", str(out)], capture_output=True, timeout=30
    )
    assert printed == theirs.stdout.decode().splitlines()
    if iface == "any":
        assert printed[0].split(" ", 1)[1].startswith("lo    In  IP 127.0.0.1.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--print"], "socketkit sniff: --print goes with -w"),
        (["--print", "-w", "-"], "socketkit sniff: --print with -w -"),
    ],
)
def test_print_needs_a_file(args: list[str], message: str) -> None:
    res = subprocess.run(sk("sniff", *args), capture_output=True, timeout=30)
    assert res.returncode == 2
    lines = res.stderr.decode().splitlines()
    assert lines[0].startswith(message) and lines[1] == "see 'socketkit sniff --help'"


# libpcap's capture sources that are not network interfaces (sniff -D leaves them out)
_PSEUDO = ("bluetooth", "nflog", "nfqueue", "dbus-", "usbmon")


def test_list_interfaces_as_tcpdump() -> None:
    """-D in a namespace with lo, a veth end up (no carrier: its peer is down) and one down,
    and a bridge: the same interfaces, order and flags as tcpdump -D."""
    with Lab() as lab:
        host = lab.host("l")
        host.run(["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        host.run(["ip", "link", "set", "v0", "up"])
        host.run(["ip", "link", "add", "br7", "type", "bridge"])
        ours = host.run(sk("sniff", "-D")).stdout.splitlines()
        theirs = host.run([require_tool("tcpdump"), "-D"]).stdout.splitlines()
    theirs = [ln.split(".", 1)[1] for ln in theirs]
    expected = [ln for ln in theirs if not ln.startswith(_PSEUDO)]
    assert [ln.split(".", 1)[1] for ln in ours] == expected
    assert [ln.split(".", 1)[0] for ln in ours] == [str(n) for n in range(1, len(ours) + 1)]
    assert "v1 [none, Disconnected]" in expected and "lo [Up, Running, Loopback]" in expected


def _files(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in sorted(directory.iterdir())}


@pytest.mark.parametrize("extra", [[], ["-W", "2"]], ids=["C", "C-W"])
def test_size_rotation_names_and_cuts_files_as_tcpdump(tmp_path: Path, extra: list[str]) -> None:
    """-C 1 (millions of bytes) on the same 2000 packets: the same file names, each file cut
    at the same packet (so the same sizes) as tcpdump's."""
    port = _free_udp_port()
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    common = ["-c", "2000", "-C", "1", *extra]
    ours = subprocess.Popen(
        sk("sniff", "-i", "lo", *common, "-w", str(ours_dir / "cap"), f"udp port {port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    theirs = subprocess.Popen(
        # -Z root: with -C tcpdump otherwise opens its files as user tcpdump
        [require_tool("tcpdump"), "-Z", "root", "-i", "lo", "-B", "65536", *common, "-w",
         str(theirs_dir / "cap"), f"udp port {port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _listening(ours)
        _listening(theirs)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(20):  # tcpdump passes packets a moment after "listening"
                s.sendto(b"w", ("127.0.0.1", port + 1 if port < 65535 else port - 1))
            for i in range(2000):
                s.sendto(b"%04d" % i + bytes(1396), ("127.0.0.1", port))
        _out, err = ours.communicate(timeout=60)
        _tout, terr = theirs.communicate(timeout=60)
    finally:
        stop(ours)
        stop(theirs)
    assert ours.returncode == 0 == theirs.returncode, (err, terr)
    expected = ["cap0", "cap1"] if extra else ["cap", "cap1", "cap2"]
    assert sorted(_files(theirs_dir)) == expected
    assert _files(ours_dir) == _files(theirs_dir)


def test_time_rotation_with_a_file_count_stops(tmp_path: Path) -> None:
    """-G 1 -W 2: a new file (strftime name) after a second, and the end after the second
    one, exit 0, as tcpdump."""
    port = _free_udp_port()
    proc = subprocess.Popen(
        sk("sniff", "-i", "lo", "-G", "1", "-W", "2", "-w", str(tmp_path / "g-%s.pcap"),
           f"udp port {port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _listening(proc)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(50):  # bounded: 10 s at most
                if proc.poll() is not None:
                    break
                s.sendto(b"%04d" % i, ("127.0.0.1", port))
                time.sleep(0.2)
        _out, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 2 and all(re.fullmatch(r"g-\d{10}\.pcap", name) for name in names)
    assert names[0] != names[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-C", "1"], "socketkit sniff: -C and -G name files: they go with -w FILE"),
        (["-G", "5", "-w", "-"], "socketkit sniff: -C and -G name files"),
        (["-W", "3", "-w", "x.pcap"], "socketkit sniff: -W counts the files of -C or -G"),
        (["-C", "0", "-w", "x.pcap"], "socketkit sniff: argument -C: '0': out of range"),
    ],
)
def test_rotation_usage_errors(args: list[str], message: str) -> None:
    res = subprocess.run(sk("sniff", *args), capture_output=True, timeout=30)
    assert res.returncode == 2
    assert res.stderr.decode().splitlines()[0].startswith(message)
