"""sniff, ping and traceroute check their arguments and outputs before any work: out-of-range
values are usage errors (one line, exit 2, nothing on stdout), errors are one line with the
documented code, and each --help describes every option, its default and the exit codes."""

from __future__ import annotations

import argparse
import fcntl
import importlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from rawkit import sk, sk_as_nobody

from support.netlab import Lab
from support.privilege import require_root
from support.procs import stop

pytestmark = pytest.mark.root

DOCS = Path(__file__).resolve().parents[2] / "docs"
F_SETPIPE_SZ = 1031  # linux/fcntl.h


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sk(*argv), capture_output=True, text=True, timeout=timeout)


def _assert_usage_error(res: subprocess.CompletedProcess[str], command: str, word: str) -> None:
    """Exit 2, nothing on stdout, the one-line usage error and the pointer to --help."""
    lines = res.stderr.splitlines()
    assert res.returncode == 2, res.stderr
    assert res.stdout == "", res.stdout
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"socketkit {command}: "), lines
    assert word in lines[0], lines
    assert lines[1] == f"see 'socketkit {command} --help'", lines


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["traceroute", "-p", "70000", "127.0.0.1"], "70000"),
        (["traceroute", "-p", "0", "127.0.0.1"], "-p"),
        (["traceroute", "-m", "256", "127.0.0.1"], "-m"),
        (["traceroute", "-f", "0", "127.0.0.1"], "-f"),
        (["traceroute", "-f", "9", "-m", "5", "127.0.0.1"], "-f"),
        (["traceroute", "-q", "11", "127.0.0.1"], "-q"),
        (["traceroute", "-w", "-1", "127.0.0.1"], "-w"),
        (["ping", "-t", "300", "127.0.0.1"], "300"),
        (["ping", "-t", "0", "127.0.0.1"], "-t"),
        (["ping", "-s", "70000", "127.0.0.1"], "-s"),
        (["ping", "-i", "-1", "127.0.0.1"], "-i"),
        (["ping", "-W", "-1", "127.0.0.1"], "-W"),
        (["ping", "-c", "0", "127.0.0.1"], "-c"),
        (["sniff", "-s", "-5", "-i", "lo"], "-5"),
        (["sniff", "-s", "262145", "-i", "lo"], "-s"),
        (["sniff", "-c", "-1", "-i", "lo"], "-c"),
        (["sniff", "-c", "0", "-i", "lo"], "-c"),
        (["sniff", "-B", "0", "-i", "lo"], "-B"),
        (["sniff", "--timeout", "-1", "-i", "lo"], "--timeout"),
    ],
)
def test_out_of_range_values_are_refused_before_anything_runs(argv: list[str], word: str) -> None:
    _assert_usage_error(_run(*argv), argv[0], word)


def test_traceroute_port_65535_is_valid_and_later_probes_wrap_to_1() -> None:
    """traceroute(8) -p is the first probe's port, +1 per probe; 65535 + 1 wraps to 1 (port 0
    is no port). A socket bound on port 2 receives the third probe (so no ICMP answer: '*')."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as catcher:
        catcher.bind(("127.0.0.1", 2))
        catcher.settimeout(10)
        res = _run("traceroute", "-n", "-q", "3", "-w", "1", "-m", "1", "-p", "65535", "127.0.0.1")
        assert res.returncode == 0, res.stderr
        assert res.stderr == ""
        data, _peer = catcher.recvfrom(2048)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("traceroute to 127.0.0.1 (127.0.0.1), 1 hops max")
    assert re.fullmatch(r" 1  127\.0\.0\.1  \d+\.\d{3} ms  \d+\.\d{3} ms \*", lines[1]), lines
    assert data == bytes(32)  # the 60-byte probe: 20 IPv4 + 8 UDP + 32 zero bytes


def test_bad_filter_exits_2_live_and_from_a_file(tmp_path: Path) -> None:
    res = _run("sniff", "-i", "lo", "tcp", "prot", "80")
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        "socketkit sniff: bad filter 'tcp prot 80': can't parse filter expression: syntax error"
    ]
    capture = tmp_path / "empty.pcap"
    capture.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    res = _run("sniff", "-r", str(capture), "tcp", "prot", "80")
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.splitlines()) == 1 and "syntax error" in res.stderr


def test_sniff_checks_the_output_file_before_capturing() -> None:
    res = _run("sniff", "-i", "lo", "-c", "1", "--timeout", "5", "-w", "/nonexist/dir/x.pcap")
    assert res.returncode == 9, res.stderr
    assert res.stderr.splitlines() == [
        "socketkit sniff: /nonexist/dir/x.pcap: No such file or directory"
    ]
    assert res.stdout == ""


@pytest.mark.parametrize("form", [[], ["--pcapng"]])
def test_sniff_full_disk_is_one_error_line_before_listening(form: list[str]) -> None:
    """The file header is written and flushed before the capture starts: a full disk is known
    at once, with no traffic needed (before, it waited for the first packet, forever on an
    idle link), and said in one line."""
    res = _run("sniff", "-i", "lo", *form, "-w", "/dev/full", "udp port 9", timeout=30)
    assert res.returncode == 9
    assert res.stderr == "socketkit sniff: /dev/full: No space left on device\n"


def test_sniff_ring_size_has_an_upper_bound() -> None:
    res = _run("sniff", "-i", "lo", "-B", "99999999999", "icmp")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "socketkit sniff: argument -B: '99999999999': out of range: 64 <= value <= 1048576",
        "see 'socketkit sniff --help'",
    ]


def _blocked_writing_stdout(pid: int) -> bool:
    """True when ``pid`` sleeps in write(1, ...) (x86-64 and arm64 syscall numbers)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in {"1", "64"} and int(fields[1], 16) == 1


def test_ping_interrupted_while_printing_its_statistics_exits_0() -> None:
    """iputils: once the statistics are due, Ctrl-C changes nothing (exit 0 with replies).
    The statistics write is held in a full pipe while SIGINT arrives."""
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
        os.write(write_fd, b"#" * 4000)  # the PING line fits, the statistics do not
        # A handled SIGINT is SIG_DFL after exec (an ignored one would stay ignored).
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            proc = subprocess.Popen(
                sk("ping", "-q", "-c", "2", "-i", "0.05", "-W", "2", "127.0.0.1"),
                stdout=write_fd,
                stderr=subprocess.PIPE,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        os.close(write_fd)
        write_fd = -1
        try:
            deadline = time.monotonic() + 30
            while not _blocked_writing_stdout(proc.pid):
                assert proc.poll() is None, "ping ended without blocking on its output"
                assert time.monotonic() < deadline
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            out = b""
            while chunk := os.read(read_fd, 65536):
                out += chunk
            _o, err = proc.communicate(timeout=30)
        finally:
            stop(proc)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    assert proc.returncode == 0, err
    assert b"2 packets transmitted, 2 received, 0% packet loss" in out
    assert err == b""


def test_traceroute_icmp_without_permission_names_traceroute() -> None:
    with Lab() as lab:
        host = lab.host("t")
        host.sysctl("net.ipv4.ping_group_range", "1 0")  # no group may use ICMP sockets
        argv = sk_as_nobody("traceroute", "-I", "-n", "-m", "1", "-q", "1", "-w", "1", "127.0.0.1")
        res = host.run(argv, check=False)
    assert res.returncode == 8, res.stderr
    assert res.stdout == ""  # refused before the header line
    [line] = res.stderr.splitlines()
    assert line.startswith("socketkit traceroute: traceroute needs CAP_NET_RAW"), line
    assert "ping needs" not in line


def test_ping_dgram_as_root_says_the_real_cause() -> None:
    """Root may not open ICMP datagram sockets either when its group (0) is outside
    net.ipv4.ping_group_range (the kernel default "1 0" allows no group)."""
    with Lab() as lab:
        host = lab.host("p")
        host.sysctl("net.ipv4.ping_group_range", "1 0")
        res = host.run(sk("ping", "--method", "dgram", "-c", "1", "127.0.0.1"), check=False)
        assert res.returncode == 8, res.stderr
        assert res.stdout == ""
        [line] = res.stderr.splitlines()
        assert "run it as root" not in line
        assert 'net.ipv4.ping_group_range is "1 0"' in line, line
        assert "group 0" in line, line
        assert "'sudo sysctl -w net.ipv4.ping_group_range=\"0 0\"'" in line, line
        # ... and that advice works:
        host.sysctl("net.ipv4.ping_group_range", "0 0")
        res = host.run(sk("ping", "--method", "dgram", "-c", "1", "127.0.0.1"), check=False)
        assert res.returncode == 0, res.stderr
        assert "64 bytes from 127.0.0.1: icmp_seq=1" in res.stdout


# --- --help: every option described with its default, every exit code listed --------------

_COMMANDS = ("sniff", "ping", "traceroute")
#: What each command can return (docs/cli.md's table); the help and the docs page list these.
_EXIT_CODES = {
    "sniff": {0, 1, 2, 8, 9, 10, 11, 130, 141},
    "ping": {0, 1, 2, 3, 4, 8, 130, 141},
    "traceroute": {0, 2, 3, 4, 8, 130, 141},
}


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"socketkit.cli.{command}")
    parser = argparse.ArgumentParser(prog=f"socketkit {command}")
    module.add_arguments(parser)
    return parser


@pytest.mark.parametrize("command", _COMMANDS)
def test_every_option_has_a_description_and_its_default(command: str) -> None:
    for action in _parser(command)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name} has no description"
        takes_value = action.option_strings and action.nargs != 0
        if takes_value:
            assert "default" in action.help, f"{command} {name}: help shows no default"


def _codes(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"(?:^|[\s,(|])(\d{1,3})(?= )", text)}


@pytest.mark.parametrize("command", _COMMANDS)
def test_help_and_docs_list_the_exit_codes_the_command_can_return(command: str) -> None:
    res = _run(command, "--help")
    assert res.returncode == 0
    help_codes = res.stdout.split("exit codes:", 1)[1].split("More: ", 1)[0]
    assert _codes(help_codes) == _EXIT_CODES[command], help_codes
    page = (DOCS / f"{command}.md").read_text()
    table = page.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert rows == _EXIT_CODES[command], table


@pytest.mark.parametrize(
    "argv",
    [
        ["ping", "-c", "1", "198.18.99.1"],
        ["traceroute", "-n", "-m", "2", "-q", "1", "-w", "1", "198.18.99.1"],
        ["traceroute", "-I", "-n", "-m", "2", "-q", "1", "-w", "1", "198.18.99.1"],
    ],
)
def test_no_route_is_exit_4_before_the_header(argv: list[str]) -> None:
    """A namespace with only lo has no route to 198.18.99.1: iputils says so before its
    header (connect: Network is unreachable); the table's code for it is 4."""
    with Lab() as lab:
        res = lab.host("n").run(sk(*argv), check=False)
    assert res.returncode == 4, res.stderr
    assert res.stdout == ""
    [line] = res.stderr.splitlines()
    assert line.startswith(f"socketkit {argv[0]}: ") and "Network is unreachable" in line, line


# -- a wait of 0: replies already queued are still read (they were lost) --------------------


def test_ping_wait_0_still_reads_the_replies_already_there() -> None:
    res = _run("ping", "-c", "5", "-i", "0", "-W", "0", "127.0.0.1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 packets transmitted, 5 received, 0% packet loss" in res.stdout


@pytest.mark.parametrize(("flags", "host"), [([], "127.0.0.1"), (["-I"], "::1")])
def test_traceroute_wait_0_still_reads_the_answers_already_there(
    flags: list[str], host: str
) -> None:
    res = _run("traceroute", "-n", "-w", "0", *flags, host)
    assert res.returncode == 0, res.stderr
    hops = res.stdout.splitlines()[1:]
    assert len(hops) == 1, hops  # the destination answered at hop 1
    assert re.match(rf"^ 1  {re.escape(host)}  [\d.]+ ms  [\d.]+ ms  [\d.]+ ms$", hops[0])


def test_ping_size_limit_is_per_family() -> None:
    """65527 data bytes fit an IPv6 echo (iputils sends it); over IPv4 the limit is 65507."""
    res = _run("ping", "-c", "1", "-W", "5", "-6", "-s", "65527", "::1")
    assert res.returncode == 0, res.stderr
    assert "65535 bytes from ::1: icmp_seq=1" in res.stdout
    res = _run("ping", "-c", "1", "-s", "65527", "127.0.0.1")
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        "socketkit ping: argument -s: 65527: out of range for IPv4 (127.0.0.1): "
        "0 <= value <= 65507",
        "see 'socketkit ping --help'",
    ]


def test_ping_4_and_6_together_are_refused() -> None:
    res = _run("ping", "-4", "-6", "::1")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "socketkit ping: argument -6: not allowed with argument -4",
        "see 'socketkit ping --help'",
    ]
