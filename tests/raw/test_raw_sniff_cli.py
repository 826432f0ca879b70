"""``socketkit sniff`` as a program: files tcpdump/tshark read, summaries, errors, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from rawkit import sk, sk_as_nobody

from support.netlab import Lab
from support.privilege import require_root, require_tool
from support.procs import running

pytestmark = pytest.mark.root

# The reference capture: packet-at-a-time (no ring block still held at SIGINT), small snaplen
# and a big buffer so tcpdump itself does not drop (with --immediate-mode libpcap uses one
# snaplen-sized frame per packet: 8 frames of 256 KiB in its default 2 MiB).
REF_TCPDUMP = ["tcpdump", "-U", "--immediate-mode", "-s", "256", "-B", "16384"]


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send_udp(port: int, n: int, size: int = 10) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            s.sendto(b"%0*d" % (size, i), ("127.0.0.1", port))


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_listening(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert b"listening on" in line, line


def _tcpdump_count(path: Path, expression: str = "") -> tuple[int, str]:
    res = subprocess.run(
        [require_tool("tcpdump"), "-nn", "-r", str(path), *expression.split()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.count("\n"), res.stderr


def _tshark_count(path: Path) -> tuple[int, str]:
    res = subprocess.run(
        [require_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.len"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    # tshark always warns that it runs as root; anything else is a real warning.
    noise = [ln for ln in res.stderr.splitlines() if "Running as user" not in ln]
    return len(res.stdout.split()), "\n".join(noise)


@pytest.mark.parametrize(
    ("iface", "extra"),
    [("lo", []), ("lo", ["--nano"]), ("lo", ["--pcapng"]), ("any", []), ("any", ["--pcapng"])],
)
def test_written_files_are_read_by_tcpdump_and_tshark(
    tmp_path: Path, iface: str, extra: list[str]
) -> None:
    port = _free_udp_port()
    out = tmp_path / "cap.pcap"
    proc = _start(sk("sniff", "-i", iface, "-c", "100", "-w", str(out), *extra, f"udp port {port}"))
    try:
        _wait_listening(proc)
        _send_udp(port, 120)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert stderr.decode().strip().endswith("100 packets captured, 0 dropped by kernel")
    count, warn = _tcpdump_count(out)
    assert count == 100
    # tcpdump warns "interface names might be incorrect" for every SLL2 file, its own too.
    warn = warn.lower().replace("warning: interface names might be incorrect", "")
    assert "warning" not in warn.lower()
    tcount, twarn = _tshark_count(out)
    assert tcount == 100
    assert twarn == "" or "interface names might be incorrect" in twarn  # SLL2 without IDB names


def test_summary_lines_and_json(tmp_path: Path) -> None:
    port = _free_udp_port()
    proc = _start(sk("sniff", "-i", "lo", "-c", "3", "udp", "port", str(port)))
    _wait_listening(proc)
    _send_udp(port, 3)
    stdout, stderr = proc.communicate(timeout=30)
    lines = stdout.decode().splitlines()
    assert len(lines) == 3
    assert all(
        "IP 127.0.0.1." in ln and f"> 127.0.0.1.{port}: UDP, length 10" in ln for ln in lines
    )
    assert "3 packets captured, 0 dropped by kernel" in stderr.decode()

    proc = _start(sk("sniff", "-i", "lo", "-c", "2", "--json", "-X", f"udp port {port}"))
    _wait_listening(proc)
    _send_udp(port, 2)
    stdout, _ = proc.communicate(timeout=30)
    records = [json.loads(ln) for ln in stdout.decode().splitlines()]
    assert len(records) == 2
    for index, record in enumerate(records):
        assert record["len"] == record["caplen"] == 14 + 20 + 8 + 10
        assert record["linktype"] == 1
        assert f".{port}: UDP, length 10" in record["summary"]
        # -X: the bytes tcpdump -X dumps, from the IPv4 header (45...) to the UDP payload
        raw = bytes.fromhex(record["hex"])
        assert len(raw) == 20 + 8 + 10 and raw[0] == 0x45 and raw[9] == 17
        assert raw[22:24] == port.to_bytes(2, "big")
        assert raw[28:] == b"%010d" % index

    proc = _start(sk("sniff", "-i", "lo", "-c", "1", "--json", "-XX", f"udp port {port}"))
    _wait_listening(proc)
    _send_udp(port, 1)
    stdout, _ = proc.communicate(timeout=30)
    [record] = [json.loads(ln) for ln in stdout.decode().splitlines()]
    raw = bytes.fromhex(record["hex"])  # -XX: the whole frame, lo's zero MACs first
    assert raw[:14] == bytes(12) + b"\x08\x00" and raw[42:] == b"%010d" % 0


def _dumps(text: str) -> list[list[str]]:
    """The hex lines of each packet of ``-X`` output, in order."""
    packets: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("\t"):
            packets[-1].append(line)
        else:
            packets.append([])
    return packets


@pytest.mark.parametrize("iface", ["lo", "any"])
def test_hex_dumps_match_tcpdump_on_a_live_capture(tmp_path: Path, iface: str) -> None:
    """-X leaves out the link header (Ethernet on lo, Linux cooked v2 on any), -XX keeps it:
    line for line what tcpdump prints for the same file."""
    port = _free_udp_port()
    out = tmp_path / "live.pcap"
    proc = _start(sk("sniff", "-i", iface, "-c", "6", "-w", str(out), f"udp port {port}"))
    try:
        _wait_listening(proc)
        _send_udp(port, 3, size=10)
        _send_udp(port, 3, size=40)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    for flag in ("-X", "-XX"):
        ours = subprocess.run(sk("sniff", "-r", str(out), flag), capture_output=True, timeout=60)
        theirs = subprocess.run(
            [require_tool("tcpdump"), "-nn", flag, "-r", str(out)], capture_output=True, timeout=60
        )
        assert ours.returncode == 0 == theirs.returncode, ours.stderr
        dumps = _dumps(ours.stdout.decode())
        assert len(dumps) == 6 and all(dumps)
        assert dumps == _dumps(theirs.stdout.decode()), flag
        first = bytes.fromhex("".join(dumps[0][0].split()[1:9]))  # a whole 16-byte line
        assert first[0] == 0x45 if flag == "-X" else first[0] != 0x45


def test_read_file_with_filter_matches_tcpdump(tmp_path: Path) -> None:
    tcpdump = require_tool("tcpdump")
    ref = tmp_path / "mixed.pcap"
    port_a, port_b = _free_udp_port(), _free_udp_port()
    with running(
        [
            tcpdump,
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-s",
            "256",
            "-B",
            "16384",
            "-w",
            str(ref),
            "udp",
        ],
        stderr=subprocess.PIPE,
    ) as td:
        assert td.stderr is not None
        assert b"listening" in td.stderr.readline()
        _send_udp(port_a, 30)
        _send_udp(port_b, 17)
        time.sleep(0.5)
        td.send_signal(signal.SIGINT)
        td.wait(10)
    for expression, want in ((f"udp port {port_a}", 30), (f"udp dst port {port_b}", 17)):
        res = subprocess.run(
            sk("sniff", "-r", str(ref), *expression.split()), capture_output=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        # Other traffic on a shared lo may make tcpdump drop some: compare with its file.
        ref_count = _tcpdump_count(ref, expression)[0]
        assert 0 < ref_count <= want
        assert res.stdout.decode().count("\n") == ref_count
    # -r with -w: a filtered copy that tcpdump reads back
    copy = tmp_path / "copy.pcap"
    res = subprocess.run(
        sk("sniff", "-r", str(ref), "-w", str(copy), f"udp port {port_a}"),
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0
    assert _tcpdump_count(copy)[0] == _tcpdump_count(ref, f"udp port {port_a}")[0]


def test_damaged_file_prints_packets_before_the_damage_then_exits_10(tmp_path: Path) -> None:
    port = _free_udp_port()
    good = tmp_path / "good.pcap"
    proc = _start(sk("sniff", "-i", "lo", "-c", "10", "-w", str(good), f"udp port {port}"))
    _wait_listening(proc)
    _send_udp(port, 10)
    proc.communicate(timeout=30)
    data = good.read_bytes()
    record = 16 + 14 + 20 + 8 + 10
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(data[: 24 + 6 * record + 20])  # ends inside the 7th record
    res = subprocess.run(sk("sniff", "-r", str(bad)), capture_output=True, timeout=60)
    assert res.returncode == 10
    assert res.stdout.decode().count("\n") == 6
    err = res.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "Traceback" not in res.stderr.decode()


def test_without_cap_net_raw_one_line_and_exit_8() -> None:
    res = subprocess.run(
        sk_as_nobody("sniff", "-i", "lo", "-c", "1"), capture_output=True, timeout=60
    )
    assert res.returncode == 8
    err = res.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert "CAP_NET_RAW" in err[0] and "root" in err[0]


def test_a_write_error_during_the_capture_is_one_line_then_the_statistics(
    tmp_path: Path,
) -> None:
    """The file header fits, the packets do not (a file-size limit of 100 bytes: EFBIG at the
    first packet, as a disk filling up mid-capture): one error line, the statistics, exit 9."""
    port = _free_udp_port()
    out = tmp_path / "small.pcap"
    # prlimit (util-linux, in every Debian) sets RLIMIT_FSIZE; Python ignores SIGXFSZ, so the
    # write fails with EFBIG instead of killing the process.
    argv = ["prlimit", "--fsize=100",
            *sk("sniff", "-i", "lo", "-c", "50", "-w", str(out), f"udp port {port}")]  # fmt: skip
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        _wait_listening(proc)
        _send_udp(port, 60)
        _out, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 9
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == f"socketkit sniff: {out}: File too large"
    assert lines[1].endswith("dropped by kernel")


def test_sigterm_prints_statistics_and_keeps_the_file(tmp_path: Path) -> None:
    port = _free_udp_port()
    out = tmp_path / "t.pcap"
    proc = _start(sk("sniff", "-i", "lo", "-w", str(out), f"udp port {port}"))
    _wait_listening(proc)
    _send_udp(port, 25)
    time.sleep(0.5)  # > one ring block timeout, so the block is handed over
    proc.send_signal(signal.SIGTERM)
    _out, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "25 packets captured, 0 dropped by kernel" in stderr.decode()
    assert _tcpdump_count(out)[0] == 25


def test_bad_filter_is_one_line() -> None:
    res = subprocess.run(
        sk("sniff", "-i", "lo", "tcp", "prot", "80"), capture_output=True, timeout=60
    )
    assert res.returncode == 2  # a usage error (docs/sniff.md), as tcpdump refuses it
    assert len(res.stderr.decode().strip().splitlines()) == 1
    assert "syntax error" in res.stderr.decode()


def test_capture_across_a_veth_pair_between_namespaces(tmp_path: Path) -> None:
    """Filter ``tcp port X`` on a veth: exactly the test's packets, the same as tcpdump's."""
    require_tool("tcpdump")
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        ia, _ib = lab.link(a, b, "198.18.7.1/24", "198.18.7.2/24")
        port = 5201
        ours, ref = tmp_path / "ours.pcap", tmp_path / "ref.pcap"
        server = b.popen(
            [
                "python3",
                "-c",
                "import socket\n"
                f"s=socket.create_server(('198.18.7.2',{port}));c,_=s.accept()\n"
                "while d:=c.recv(65536): c.sendall(d)\n",
            ]
        )
        sniffer = a.popen(
            sk("sniff", "-i", ia, "-w", str(ours), f"tcp port {port}"), stderr=subprocess.PIPE
        )
        tdump = a.popen([*REF_TCPDUMP, "-i", ia, "-w", str(ref), f"tcp port {port}"],
                        stderr=subprocess.PIPE)  # fmt: skip
        try:
            _wait_listening(sniffer)
            assert tdump.stderr is not None and b"listening" in tdump.stderr.readline()
            client = (
                "import socket,time\n"
                "for _ in range(50):\n"
                "  try: c=socket.create_connection(('198.18.7.2',%d)); break\n"
                "  except OSError: time.sleep(0.1)\n"
                "for i in range(40):\n"
                "  c.sendall(b'x'*(100+i)); c.recv(65536)\n"
                "c.close()\n"
                "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "[u.sendto(b'noise',('198.18.7.2',%d)) for _ in range(20)]\n"
            ).replace("%d", str(port))
            a.run(["python3", "-c", client], timeout=60)
            a.run(["ping", "-c", "3", "-i", "0.05", "198.18.7.2"], timeout=30)
            time.sleep(0.5)
            for proc in (sniffer, tdump):
                proc.send_signal(signal.SIGTERM)
            _o, err = sniffer.communicate(timeout=30)
            tdump.wait(30)
        finally:
            for proc in (sniffer, tdump, server):
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                if proc.stderr is not None:
                    proc.stderr.close()
        assert sniffer.returncode == 0, err
        ref_count, _ = _tcpdump_count(ref)
        our_count, _ = _tcpdump_count(ours)
        assert ref_count >= 80  # 40 requests and 40 replies at least, plus handshake
        assert our_count == ref_count
        assert f"{our_count} packets captured, 0 dropped by kernel" in err.decode()
        assert _tcpdump_count(ours, f"not tcp port {port}")[0] == 0
        assert _tshark_count(ours)[0] == ref_count


def test_a_reader_that_leaves_ends_sniff_quietly_with_141() -> None:
    """``socketkit sniff | head -c1``: exit 141 and nothing more on stderr than the listening
    line (no statistics, no error), as tcpdump ended by SIGPIPE."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        proc = subprocess.Popen(
            sk("sniff", "-i", "lo", f"udp port {port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None and proc.stdout is not None
            assert proc.stderr.readline().startswith(b"listening on lo")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.sendto(b"first", ("127.0.0.1", port))
                assert proc.stdout.read(1)  # the reader takes one byte, then leaves
                proc.stdout.close()
                deadline = time.monotonic() + 30
                while proc.poll() is None and time.monotonic() < deadline:
                    tx.sendto(b"more", ("127.0.0.1", port))  # writes that meet the closed pipe
                    time.sleep(0.05)
            assert proc.wait(timeout=5) == 141
            assert proc.stderr.read() == b""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
