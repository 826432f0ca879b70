"""The bench server applies what a client asks for (iperf3's -S TOS, -M MSS) or refuses the
test; it reports one outcome per test; the self-check fails when a check collected errors."""

from __future__ import annotations

import dataclasses
import re
import signal
import socket
import struct
import subprocess
import time
from typing import Any

import pytest

from socketkit.bench import client as bench_client
from socketkit.cli.main import main
from socketkit.proto.iperf3 import BenchParams, State, encode_json, make_cookie
from support.privilege import require_root, require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_for_first_interval, wait_listening


def _server(port: int) -> list[str]:
    return [*SK, "bench", "server", "-p", str(port), "-1"]


def _client(kind: str, port: int, *args: str) -> list[str]:
    """An iperf3 client or socketkit's, to 127.0.0.1:port, with iperf3's options."""
    if kind == "iperf3":
        return [require_tool("iperf3"), "-c", "127.0.0.1", "-p", str(port), *args]
    return [*SK, "bench", "client", "127.0.0.1", "-p", str(port), *args]


@pytest.mark.parametrize("kind", ["iperf3", "socketkit"])
def test_tos_from_a_client_is_on_the_servers_packets(kind: str) -> None:
    """``-c -S 0x10 -R``: the segments the server sends carry TOS 0x10."""
    require_root()
    tcpdump = require_tool("tcpdump")
    port = free_port()
    # The server's packets only: source port = the server's port, TOS (DSCP+ECN) = 0x10.
    bpf = f"src port {port} and ip[1] & 0xfc == 0x10"
    dump = [tcpdump, "-i", "lo", "-n", "-l", "-c", "20", bpf]
    with (
        running(_server(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv,
        running(dump, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as cap,
    ):
        assert cap.stderr is not None
        while b"listening on lo" not in cap.stderr.readline():  # capturing from here on
            assert cap.poll() is None
        wait_listening(port)
        rc, doc, err = run_json(_client(kind, port, "-t", "1", "-R", "-S", "0x10", "-J"))
        assert rc == 0, (doc.get("error"), err)
        out, _ = cap.communicate(timeout=15)
        _o, log = srv.communicate(timeout=15)
    assert cap.returncode == 0  # it saw its 20 packets
    assert len(out.decode().splitlines()) == 20
    assert "TOS 0x10" in log.decode(), log


@pytest.mark.parametrize("kind", ["iperf3", "socketkit"])
def test_mss_from_a_client_bounds_the_servers_segments(kind: str) -> None:
    """``-c -M 1000 -R``: the server's data socket sends segments of <= 1000 bytes
    (``ss`` shows the kernel's ``mss:``), and the report says MSS 1000."""
    port = free_port()
    with running(_server(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        with running(
            _client(kind, port, "-t", "2", "-R", "-M", "1000"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as cli:
            mss: list[int] = []
            deadline = time.monotonic() + 10
            while not mss and time.monotonic() < deadline:
                time.sleep(0.2)
                ss = subprocess.run(
                    ["ss", "-tni", "state", "established", f"( sport = :{port} )"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                # The data socket is the one that sent bytes.
                mss = [
                    int(m.group(1))
                    for block in ss.split("\n\t")
                    if "bytes_sent:" in block and int(_field(block, "bytes_sent")) > 1 << 20
                    for m in [re.search(r"\bmss:(\d+)", block)]
                    if m
                ]
            assert cli.wait(30) == 0
        _o, log = srv.communicate(timeout=15)
    assert mss and max(mss) <= 1000, mss
    assert "MSS 1000" in log.decode(), log


def _field(block: str, name: str) -> str:
    m = re.search(rf"\b{name}:(\d+)", block)
    return m.group(1) if m else "0"


def test_refused_mss_is_a_server_error_not_ignored() -> None:
    """An MSS the kernel refuses (below its minimum of 88) ends the test with iperf3's
    IESETMSS (123) before any data moves, and a log line that says why."""
    from socketkit.bench import BenchServer

    logged: list[str] = []
    with BenchServer("127.0.0.1", 0, on_report=lambda r: logged.append(r.line())) as server:
        server.start()
        cookie = make_cookie()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as ctl:
            ctl.sendall(cookie)
            assert ctl.recv(1) == bytes([State.PARAM_EXCHANGE])
            # A client on another system may ask for a value its own kernel allows.
            ctl.sendall(encode_json(BenchParams(time=1, mss=10).to_json()))
            assert ctl.recv(1) == bytes([State.CREATE_STREAMS])
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as data:
                data.sendall(cookie)
                reply = b""
                while len(reply) < 9:
                    chunk = ctl.recv(64)
                    if not chunk:
                        break
                    reply += chunk
        deadline = time.monotonic() + 5
        while not logged and time.monotonic() < deadline:
            time.sleep(0.02)
    assert reply[:1] == bytes([State.SERVER_ERROR & 0xFF]), reply  # no TEST_START
    assert struct.unpack("!i", reply[1:5])[0] == 123  # IESETMSS
    assert len(logged) == 1 and "cannot set mss 10" in logged[0], logged


def test_one_outcome_line_per_test() -> None:
    """An iperf3 client interrupted mid-test: the server logs one line for that test."""
    iperf3 = require_tool("iperf3")
    port = free_port()
    with running(_server(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        with running(
            [iperf3, "-c", "127.0.0.1", "-p", str(port), "-t", "5", "--forceflush"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as cli:
            assert cli.stdout is not None
            wait_for_first_interval(cli.stdout)
            cli.send_signal(signal.SIGINT)
            cli.wait(15)
        _o, log = srv.communicate(timeout=15)
    lines = [ln for ln in log.decode().splitlines() if "test from 127.0.0.1" in ln]
    assert len(lines) == 1, lines
    assert "failed: the client terminated the test" in lines[0]


def test_self_check_fails_when_a_check_collected_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real self-check, with one error added to the UDP test's result (as a stream that
    failed would add it): no "self-check: OK", exit 1, the error on stderr."""
    real = bench_client.run_client

    def run_client(opts: Any, on_interval: Any = None) -> Any:
        result = real(opts, on_interval)
        if opts.udp:
            result = dataclasses.replace(result, errors=("stream 1: Connection reset by peer",))
        return result

    monkeypatch.setattr(bench_client, "run_client", run_client)
    status = main(["bench"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "self-check: OK" not in out
    assert "self-check: FAILED" in out
    assert "UDP: stream 1: Connection reset by peer" in err


@pytest.mark.parametrize(
    ("option", "name"),
    [(["--fq-rate", "100M"], "fqrate"), (["--get-server-output"], "get_server_output")],
)
def test_unsupported_iperf3_options_are_refused_not_ignored(option: list[str], name: str) -> None:
    port = free_port()
    with running(_server(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        _rc, doc, _err = run_json(_client("iperf3", port, "-t", "1", "-J", *option))
        _o, log = srv.communicate(timeout=15)
    # iperf3's text for IEUNIMP (iperf3 -J exits 0 even then: the error is in the JSON).
    assert "not implemented" in str(doc.get("error")), doc.get("error")
    assert not doc.get("intervals")  # no test ran
    assert f"not supported by this server: {name}" in log.decode(), log


@pytest.mark.parametrize(
    "params",
    [{"window": 1 << 40}, {"MSS": 1 << 40}, {"TOS": 1 << 20}, {"window": 1 << 30}],
)
def test_out_of_range_options_from_a_client_are_refused(params: dict[str, int]) -> None:
    """Values no kernel call can take are refused when the parameters arrive (IEMESSAGE),
    not met with an internal error (a traceback in the log) when applying them."""
    from socketkit.bench import BenchServer

    with BenchServer("127.0.0.1", 0) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as ctl:
            ctl.sendall(make_cookie())
            assert ctl.recv(1) == bytes([State.PARAM_EXCHANGE])
            ctl.sendall(encode_json({**BenchParams(time=1).to_json(), **params}))
            reply = ctl.recv(64)
    assert reply[:1] == bytes([State.SERVER_ERROR & 0xFF]), reply
    assert struct.unpack("!i", reply[1:5])[0] == 110  # IEMESSAGE: refused parameters
