"""What nc and ncat users type, working in socketkit: ``listen -l -p PORT``, service names
for ports, ``-z`` over many ports at once (lines still in port order), ncat's ``--ssl-*``
spellings against ncat itself, and ``--tls-pin`` with the fingerprint ``listen --tls``
prints."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.netlab import Host, Lab
from support.privilege import require_root, require_tool

from .nctools import SK, finish, free_port, one_line, run_sk, started, wait_bound, write_pki

B_ADDR = "198.18.9.2"


# -- listen -l -p ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [["-l", "-p", "{port}"], ["-p", "{port}"], ["-l", "127.0.0.1", "-p", "{port}"]],
    ids=["-l -p PORT", "-p PORT", "-l HOST -p PORT"],
)
def test_listen_takes_the_port_as_nc_and_ncat_spell_it(form: list[str]) -> None:
    nc = require_tool("nc.openbsd")
    port = free_port()
    argv = [*SK, "listen", *(arg.format(port=port) for arg in form)]
    with started(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as server:
        wait_bound(port)
        subprocess.run([nc, "-N", "127.0.0.1", str(port)], input=b"by -p\n", timeout=30)
        assert server.stdout is not None
        assert server.stdout.read() == b"by -p\n"
        assert finish(server) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "5200", "5201"], "give the port once: as [HOST] PORT or as [HOST] -p PORT"),
        (["-s", "127.0.0.1", "::1", "5200"], "give the address once: as HOST or as -s ADDR"),
    ],
)
def test_a_port_or_address_given_two_ways_is_a_usage_error(args: list[str], message: str) -> None:
    proc = run_sk("listen", *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"socketkit listen: {message}"


def test_the_port_given_twice_is_a_usage_error() -> None:
    proc = run_sk("listen", "127.0.0.1", "5000", "-p", "5001")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "socketkit listen: give the port once: as [HOST] PORT or as [HOST] -p PORT",
        "see 'socketkit listen --help'",
    ]


# -- service names ----------------------------------------------------------------------------


def test_an_unknown_service_name_is_one_line_and_exit_2() -> None:
    for args in (["connect", "127.0.0.1", "no-such-svc"], ["listen", "-p", "no-such-svc"]):
        proc = run_sk(*args)
        assert proc.returncode == 2, proc
        assert one_line(proc.stderr).endswith(
            "bad port 'no-such-svc': not a number 0-65535 nor a tcp service name known to "
            "this host (/etc/services)"
        )


@pytest.fixture
def lab() -> Iterator[tuple[Host, Host]]:
    """Hosts a and b on a veth pair (b is 198.18.9.2): its ports 22 and 80 are free."""
    require_root()
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, "198.18.9.1/24", f"{B_ADDR}/24")
        yield a, b


def _listening(host: Host, port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if host.run(["ss", "-Htln", f"sport = :{port}"], check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def test_service_names_as_ports_with_nc_on_the_other_end(lab: tuple[Host, Host]) -> None:
    """``listen -p http`` is port 80 (nc.openbsd connects to "http" too); ``connect -z`` takes
    names in its list and reports them by number, as nc does."""
    nc = require_tool("nc.openbsd")
    a, b = lab
    with started(
        b.cmd([*SK, "listen", "-l", "-p", "http"]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    ) as server:
        _listening(b, 80)
        a.run([nc, "-N", B_ADDR, "http"], input="to http\n", timeout=30)
        assert server.stdout is not None
        assert server.stdout.read() == b"to http\n"
        assert finish(server) == 0
    with started(
        b.cmd([*SK, "listen", "-p", "80"]), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    ):
        _listening(b, 80)
        scan = a.run([*SK, "connect", "-zv", "-w", "5", B_ADDR, "http,ssh"], check=False)
    assert scan.returncode == 0, scan
    assert scan.stderr.splitlines() == [
        f"socketkit connect: connection to {B_ADDR} 22 port [tcp] failed: closed",
        f"socketkit connect: connection to {B_ADDR} 80 port [tcp] succeeded!",
    ]


# -- -z in parallel --------------------------------------------------------------------------


def _filter(host: Host, ports: str) -> None:
    """Drop TCP SYNs to ``ports`` in ``host`` (filtered ports: no answer at all)."""
    require_tool("nft")
    rules = (
        "table inet sk_scan {\n  chain input {\n    type filter hook input priority 0;\n"
        f"    tcp dport {{ {ports} }} drop\n  }}\n}}\n"
    )
    host.run(["nft", "-f", "-"], input=rules)


def test_ten_filtered_ports_take_about_one_timeout_and_lines_stay_in_order(
    lab: tuple[Host, Host],
) -> None:
    """9000 closed, 9001-9010 filtered, 9011 open: 9011's answer comes first, its line last."""
    a, b = lab
    _filter(b, "9001-9010")
    with started(
        b.cmd([*SK, "listen", "-k", B_ADDR, "9011"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    ):
        _listening(b, 9011)
        t0 = time.monotonic()
        scan = a.run([*SK, "connect", "-zv", "-w", "1", B_ADDR, "9000-9011"], check=False)
        elapsed = time.monotonic() - t0
    assert scan.returncode == 0, scan
    head = f"socketkit connect: connection to {B_ADDR}"
    expected = [f"{head} 9000 port [tcp] failed: closed"]
    expected += [f"{head} {port} port [tcp] failed: timeout" for port in range(9001, 9011)]
    expected += [f"{head} 9011 port [tcp] succeeded!"]
    assert scan.stderr.splitlines() == expected
    # One after another (nc -z -w 1) this is 10 s; at once about 1 s, plus the start-up.
    assert elapsed < 5, elapsed


@pytest.mark.parametrize(
    "option", [["--scan-concurrency", "1"], ["-p", "40000"]], ids=["concurrency-1", "source-port"]
)
def test_one_port_after_another_with_concurrency_1_or_a_source_port(
    lab: tuple[Host, Host], option: list[str]
) -> None:
    """``--scan-concurrency 1``, and any scan from one source port (``-p``: one port holds
    one connection at a time), probe in turn: three filtered ports at ``-w 1`` take 3 s."""
    a, b = lab
    _filter(b, "9001-9003")
    t0 = time.monotonic()
    scan = a.run(
        [*SK, "connect", "-zv", "-w", "1", *option, B_ADDR, "9001-9003"],
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert scan.returncode == 1, scan
    assert [line.rsplit(" ", 1)[1] for line in scan.stderr.splitlines()] == ["timeout"] * 3
    assert elapsed >= 3, elapsed


def test_ctrl_c_ends_a_scan_at_once_with_130(lab: tuple[Host, Host]) -> None:
    """Probes still waiting out their timeout do not hold the exit up."""
    a, b = lab
    _filter(b, "9001-9010")
    with started(
        a.cmd([*SK, "connect", "-zv", "-w", "20", B_ADDR, "9001-9010"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as scan:
        time.sleep(1.5)  # started, and probing
        assert scan.poll() is None
        t0 = time.monotonic()
        scan.send_signal(signal.SIGINT)
        assert finish(scan, timeout=10) == 130
        assert time.monotonic() - t0 < 3
        assert scan.stderr is not None
        assert b"Traceback" not in scan.stderr.read()


def test_lines_come_as_the_scan_goes_one_port_at_a_time() -> None:
    """With one probe at a time a line still comes out as soon as its port is known: an
    interrupted scan has printed what it found (the test interrupts after the first line,
    so a scan that printed only at its end would have exited 0 or 1 instead of 130)."""
    argv = [*SK, "connect", "-zv", "--scan-concurrency", "1", "127.0.0.1", "1-65535"]
    with started(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as scan:
        assert scan.stderr is not None
        first = scan.stderr.readline()
        assert first.startswith(b"socketkit connect: connection to 127.0.0.1 1 port [tcp]")
        scan.send_signal(signal.SIGINT)
        assert finish(scan, timeout=30) == 130


def test_a_low_descriptor_limit_makes_the_scan_narrower_not_fail() -> None:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))

    proc = subprocess.run(
        [*SK, "connect", "-zv", "127.0.0.1", "40000-40299"],
        capture_output=True, text=True, timeout=120, preexec_fn=limit,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-500:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 300 and "Too many open files" not in proc.stderr
    assert lines[0].startswith("socketkit connect: connection to 127.0.0.1 40000 port")


def test_scan_concurrency_without_z_is_a_usage_error() -> None:
    proc = run_sk("connect", "--scan-concurrency", "4", "127.0.0.1", "80")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "socketkit connect: --scan-concurrency is for -z scans"


def test_a_source_port_scan_reaches_every_open_port() -> None:
    """nc.openbsd -z -p stops at the second port (its bind fails: address in use)."""
    with (
        socket.create_server(("127.0.0.1", 0)) as one,
        socket.create_server(("127.0.0.1", 0)) as two,
    ):
        ports = [one.getsockname()[1], two.getsockname()[1]]
        source = free_port()
        proc = run_sk("connect", "-zv", "-p", str(source), "127.0.0.1", f"{ports[0]},{ports[1]}")
    assert proc.returncode == 0, proc
    assert [line.rsplit(" ", 1)[1] for line in proc.stderr.splitlines()] == ["succeeded!"] * 2


# -- TLS: ncat's spellings, and a pinned certificate --------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pki")
    paths = write_pki(base)
    return paths


def test_ncat_ssl_spellings_against_ncat(pki: dict[str, Path]) -> None:
    """``connect --ssl --ssl-trustfile --ssl-servername`` to ``ncat --ssl -l``, and ``listen
    --ssl --ssl-cert --ssl-key`` for ``ncat --ssl --ssl-verify``: verified both ways."""
    ncat = require_tool("ncat")
    port = free_port()
    server_argv = [ncat, "--ssl", "--ssl-cert", str(pki["chain"]), "--ssl-key", str(pki["key"])]
    with started(
        [*server_argv, "-l", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    ) as server:
        wait_bound(port)
        proc = run_sk(
            "connect", "--ssl", "--ssl-trustfile", str(pki["ca"]), "--ssl-servername",
            "localhost", "127.0.0.1", str(port), stdin=b"to ncat\n",
        )  # fmt: skip
        assert proc.returncode == 0, proc
        assert server.stdout is not None
        assert server.stdout.read() == b"to ncat\n"
    # ncat --ssl-verify checks DNS names only (not an IP address's SAN): it connects to
    # localhost, so the listener takes both families.
    port = free_port()
    sk_argv = [*SK, "listen", "--ssl", "--ssl-cert", str(pki["chain"]), "--ssl-key"]
    with started(
        [*sk_argv, str(pki["key"]), str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    ) as server:
        wait_bound(port)
        client = [ncat, "--ssl", "--ssl-verify", "--ssl-trustfile", str(pki["ca"])]
        subprocess.run(
            [*client, "localhost", str(port)], input=b"from ncat\n", timeout=30, check=True
        )
        assert server.stdout is not None
        assert server.stdout.read() == b"from ncat\n"
        assert finish(server) == 0


def _fingerprint(stderr: bytes) -> str:
    match = re.search(rb"SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", stderr)
    assert match, stderr
    return match.group(1).decode()


@contextlib.contextmanager
def _tls_listener(port: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``listen --tls`` with its ephemeral certificate, and the fingerprint it printed."""
    with started(
        [*SK, "listen", "--tls", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as server:
        assert server.stderr is not None
        fp = _fingerprint(server.stderr.readline())
        wait_bound(port)
        yield server, fp


def test_tls_pin_trusts_exactly_the_certificate_listen_printed() -> None:
    port = free_port()
    with _tls_listener(port) as (server, fp):
        proc = run_sk("connect", "--tls", "--tls-pin", f"SHA256:{fp}", "127.0.0.1", str(port),
                      stdin=b"pinned\n")  # fmt: skip
        assert proc.returncode == 0, proc
        assert server.stdout is not None
        assert server.stdout.read() == b"pinned\n"


def test_the_fingerprint_pastes_as_listen_prints_it_and_v_says_pinned() -> None:
    port = free_port()
    with _tls_listener(port) as (server, fp):
        proc = run_sk("connect", "-v", "--tls", "--tls-pin", f"SHA-256 {fp}", "127.0.0.1",
                      str(port), stdin=b"x\n")  # fmt: skip
        assert proc.returncode == 0, proc
        assert "peer certificate (pinned: its SHA-256 is the one --tls-pin names)" in proc.stderr
        assert "--tls-insecure" not in proc.stderr
        assert server.stdout is not None and server.stdout.read() == b"x\n"


def test_a_wrong_pin_fails_before_any_byte_is_sent() -> None:
    port = free_port()
    wrong = ":".join(["AB"] * 32)
    with _tls_listener(port) as (server, fp):
        proc = run_sk("connect", "--tls", "--tls-pin", f"sha256:{wrong.lower()}", "127.0.0.1",
                      str(port), stdin=b"secret\n")  # fmt: skip
        assert proc.returncode == 6, proc
        assert one_line(proc.stderr) == (
            f"socketkit connect: TLS with 127.0.0.1: its certificate is SHA-256 {fp}, not the "
            f"pinned SHA-256 {wrong}"
        )
        server.terminate()
        server.wait(10)
        assert server.stdout is not None
        assert server.stdout.read() == b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls", "--tls-pin", "SHA256:12:34"], "argument --tls-pin: bad fingerprint"),
        (["--tls-pin", "SHA256:" + "00" * 32], "TLS options need --tls"),
        (
            ["--tls", "--tls-insecure", "--tls-pin", "00" * 32],
            "--tls-pin says which certificate to trust: give it without --tls-ca or --tls-insecure",
        ),
    ],
)
def test_pin_mistakes_are_usage_errors(args: list[str], message: str) -> None:
    proc = run_sk("connect", *args, "127.0.0.1", "1")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
