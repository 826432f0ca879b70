"""What a tftp-hpa/atftp user's trial of ``socketkit tftp`` found: Ctrl-C tells the peer, the
server names a vanished client, exit codes for a port in use and a busy server, small CLI
issues (an empty REMOTE, --timeout 0, tftp-hpa's mode names, the busy message)."""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import socketkit.tftp as sktftp
from support.procs import stop
from support.tftp_peers import tftpd_hpa

from .tools import SK, make_file, one_line, run_sk, sk_server

HOST = "127.0.0.1"
BLOCKS_BEFORE_STALL = 20


def _fake_server() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(30)
    return sock


def _waiting(proc: subprocess.Popen[bytes]) -> None:
    """Until ``proc`` sleeps (in its receive): a Ctrl-C then finds its count up to date."""
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S":
        assert time.monotonic() < deadline, "the client never waited for the server"
        time.sleep(0.005)


def _interrupted(proc: subprocess.Popen[bytes], *, wait: bool = True) -> tuple[int, str]:
    if wait:
        _waiting(proc)
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    return proc.returncode, err.decode()


def test_ctrl_c_during_a_get_sends_error_0_and_says_how_far(tmp_path: Path) -> None:
    # A server that sends 20 full blocks, then stalls: Ctrl-C then. The client must send
    # ERROR 0 to the server's TID (so it stops sending at once) and exit 130 with one line.
    server = _fake_server()
    proc = subprocess.Popen(
        [*SK, "tftp", "get", f"{HOST}:{server.getsockname()[1]}", "f.bin", "-o", "got.bin"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with server:
            request, client = server.recvfrom(65536)
            assert request.startswith(b"\x00\x01f.bin\x00octet\x00")
            transfer = _fake_server()  # the transfer's own TID, as RFC 1350 has it
            with transfer:
                for block in range(1, BLOCKS_BEFORE_STALL + 1):
                    transfer.sendto(struct.pack("!HH", 3, block) + b"x" * 512, client)
                    ack, _ = transfer.recvfrom(65536)
                    assert ack == struct.pack("!HH", 4, block)
                rc, err = _interrupted(proc)
                error, source = transfer.recvfrom(65536)
    finally:
        stop(proc)
    assert source == client
    assert error == b"\x00\x05\x00\x00transfer cancelled\x00"
    assert rc == 130
    assert one_line(err) == f"socketkit tftp: interrupted after {20 * 512} bytes"
    assert not list(tmp_path.iterdir())  # no partial file, no temporary left


def test_ctrl_c_during_a_put_sends_error_0_and_says_how_far(tmp_path: Path) -> None:
    source_file = make_file(tmp_path / "up.bin", 100 * 512)
    server = _fake_server()
    proc = subprocess.Popen(
        [*SK, "tftp", "put", f"{HOST}:{server.getsockname()[1]}", str(source_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with server:
            request, client = server.recvfrom(65536)
            assert request.startswith(b"\x00\x02up.bin\x00octet\x00")
            transfer = _fake_server()
            with transfer:
                transfer.sendto(struct.pack("!HH", 4, 0), client)  # RFC 1350: ACK 0, no OACK
                for block in range(1, BLOCKS_BEFORE_STALL + 1):
                    data, _ = transfer.recvfrom(65536)
                    assert data[:4] == struct.pack("!HH", 3, block) and len(data) == 516
                    if block < BLOCKS_BEFORE_STALL:
                        transfer.sendto(struct.pack("!HH", 4, block), client)
                rc, err = _interrupted(proc)
                while (packet := transfer.recvfrom(65536))[0][:2] == b"\x00\x03":
                    pass  # DATA 20 again (a retransmission before the Ctrl-C)
                error, source = packet
    finally:
        stop(proc)
    assert source == client
    assert error == b"\x00\x05\x00\x00transfer cancelled\x00"
    assert rc == 130
    assert one_line(err) == f"socketkit tftp: interrupted after {20 * 512} bytes"


def test_ctrl_c_of_a_put_to_our_server_removes_its_temporary_file_at_once(
    tmp_path: Path,
) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source_file = make_file(tmp_path / "big.bin", 64 << 20)
    # --timeout 20: a server that only noticed through its timer would take 20 s and more
    with sk_server(served, "--write", "--timeout", "20") as (port, events, _server):
        proc = subprocess.Popen(
            [*SK, "tftp", "put", f"{HOST}:{port}", str(source_file), "up.bin"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            events.wait("request")
            deadline = time.monotonic() + 30
            while not any(p.stat().st_size > 512 * 64 for p in served.iterdir()):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            rc, err = _interrupted(proc, wait=False)
        finally:
            stop(proc)
        failed = events.wait("failed", timeout=10)[0]
        assert failed["message"] == "the peer sent TFTP error 0 (not defined): transfer cancelled"
        assert list(served.iterdir()) == []
    assert rc == 130
    assert re.fullmatch(r"socketkit tftp: interrupted after \d+ bytes", one_line(err))


def test_the_server_says_its_client_went_away(tmp_path: Path) -> None:
    make_file(tmp_path / "f.bin", 10 * 512)
    with sk_server(tmp_path) as (port, events, _server):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with client:
            client.settimeout(30)
            client.sendto(b"\x00\x01f.bin\x00octet\x00", (HOST, port))
            data, _ = client.recvfrom(65536)
            assert data[:4] == struct.pack("!HH", 3, 1)
        # the socket is closed: the retransmission of DATA 1 gets an ICMP port unreachable
        failed = events.wait("failed", timeout=30)[0]
    assert failed["error"] == "ConnectionRefused"
    assert failed["message"].endswith(": the client went away (ICMP port unreachable)")
    assert "server" not in failed["message"]


def test_serve_on_a_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        result = run_sk("tftp", "serve", str(tmp_path), "-p", str(port), "--bind", HOST)
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"socketkit tftp: cannot serve on {HOST}:{port}: address already in use "
        "(another socket is bound there: pick another port with -p)"
    )


def test_a_busy_server_exits_7(tmp_path: Path) -> None:
    make_file(tmp_path / "f.bin", 10 * 512)
    with sk_server(tmp_path, "--max-sessions-per-ip", "1", "--timeout", "20") as (
        port,
        events,
        _server,
    ):
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with holder:
            holder.settimeout(30)
            holder.sendto(b"\x00\x01f.bin\x00octet\x00", (HOST, port))
            holder.recvfrom(65536)  # DATA 1, never acknowledged: the session stays
            result = run_sk("tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(tmp_path / "g"))
            refused = events.wait("refused")[0]
    assert result.returncode == 7
    assert one_line(result.stderr) == (
        "socketkit tftp: the peer sent TFTP error 0 (not defined): server busy: "
        f"1 session from {HOST} already; try again later"
    )
    assert refused["message"] == f"server busy: 1 session from {HOST} already; try again later"


def test_an_empty_remote_without_o_is_a_usage_error(tmp_path: Path) -> None:
    result = run_sk("tftp", "get", f"{HOST}:9", "", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "socketkit tftp get: REMOTE '' names no file to write here: give -o LOCAL",
        "see 'socketkit tftp get --help'",
    ]


@pytest.mark.parametrize("value", ["0", "-1", "256", "nan", "soon"])
def test_a_bad_timeout_is_one_clear_line(value: str) -> None:
    result = run_sk("tftp", "get", f"{HOST}:9", "f", "--timeout", value)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"socketkit tftp get: argument --timeout: {value!r} is not a timeout: give seconds, "
        "more than 0 and at most 255",
        "see 'socketkit tftp get --help'",
    ]


@pytest.mark.parametrize(
    ("alias", "mode", "wire"), [("binary", "octet", 8), ("ascii", "netascii", 10)]
)
def test_tftp_hpa_mode_names_are_accepted(tmp_path: Path, alias: str, mode: str, wire: int) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    (served / "f.txt").write_bytes(b"one\ntwo\n")
    with tftpd_hpa(served) as port:
        got = tmp_path / "got.txt"
        result = run_sk(
            "tftp", "get", f"{HOST}:{port}", "f.txt", "-o", str(got), "--mode", alias, "--json"
        )
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stderr.splitlines()[-1])
    assert (done["event"], done["mode"], done["bytes"]) == ("done", mode, wire)  # CR LF: netascii
    assert got.read_bytes() == b"one\ntwo\n"


def test_python_a_keyboard_interrupt_in_get_is_transfer_interrupted(tmp_path: Path) -> None:
    make_file(tmp_path / "f.bin", 2048 * 512)
    failures: list[dict[str, object]] = []

    def on_event(name: str, fields: dict[str, object]) -> None:
        if name == "failed":
            failures.append(fields)

    def ctrl_c(_size: int, _total: int | None) -> None:
        raise KeyboardInterrupt  # the first progress call of the lock-step loop: block 513

    with sktftp.serve(tmp_path, f"{HOST}:0", on_event=on_event, timeout=20) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with pytest.raises(sktftp.TransferInterrupted) as caught:
            sktftp.get(server.address, "f.bin", tmp_path / "got.bin", progress=ctrl_c)
        deadline = time.monotonic() + 10  # its timer would take 20 s
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
    thread.join(30)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.size == 513 * 512  # block 1, then 512 in the lock-step loop
    assert not (tmp_path / "got.bin").exists()
    assert failures and failures[0]["message"] == (
        "the peer sent TFTP error 0 (not defined): transfer cancelled"
    )


def _get_from_fake(tmp_path: Path, duplicate: bool) -> tuple[int, list[bytes]]:
    """A one-block-and-a-bit get from a fake server (DATA 1 sent twice when ``duplicate``);
    the last DATA is sent again 50 ms after its ACK. Returns (exit code, the ACKs after it)."""
    server = _fake_server()
    proc = subprocess.Popen(
        [*SK, "tftp", "get", f"{HOST}:{server.getsockname()[1]}", "f.bin", "-o", "got.bin"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with server:
            _request, client = server.recvfrom(65536)
            transfer = _fake_server()
            with transfer:
                first = struct.pack("!HH", 3, 1) + b"x" * 512
                for _ in range(2 if duplicate else 1):
                    transfer.sendto(first, client)
                    assert transfer.recvfrom(65536)[0] == struct.pack("!HH", 4, 1)
                last = struct.pack("!HH", 3, 2) + b"end"
                transfer.sendto(last, client)
                assert transfer.recvfrom(65536)[0] == struct.pack("!HH", 4, 2)
                time.sleep(0.05)
                transfer.sendto(last, client)  # as if our ACK 2 had been lost
                _out, err = proc.communicate(timeout=30)
                after: list[bytes] = []
                transfer.setblocking(False)
                while True:
                    try:
                        after.append(transfer.recv(65536))
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        continue  # the ICMP of a client that had left
    finally:
        stop(proc)
    assert (tmp_path / "got.bin").read_bytes() == b"x" * 512 + b"end", err
    return proc.returncode, after


def test_a_clean_get_leaves_at_once_without_dallying(tmp_path: Path) -> None:
    rc, after = _get_from_fake(tmp_path, duplicate=False)
    assert (rc, after) == (0, [])


def test_a_get_that_saw_a_duplicate_still_answers_a_repeated_last_data(tmp_path: Path) -> None:
    rc, after = _get_from_fake(tmp_path, duplicate=True)
    assert (rc, after) == (0, [struct.pack("!HH", 4, 2)])


def test_sigterm_tells_the_clients_of_running_transfers(tmp_path: Path) -> None:
    """A get and a put are under way (scripted clients that stop answering); SIGTERM: each
    gets ERROR 0 "the server is shutting down" at once (the server's retransmission timer is
    20 s, so nothing else comes that soon), the server exits 0, and the partial upload is
    gone."""
    from socketkit.proto import tftp

    make_file(tmp_path / "f.bin", 10 * 512)
    with sk_server(tmp_path, "--write", "--timeout", "20") as (port, _events, server):
        getter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        putter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with getter, putter:
            for sock in (getter, putter):
                sock.bind((HOST, 0))
                sock.settimeout(10)
            getter.sendto(b"\0\1f.bin\0octet\0", (HOST, port))
            assert tftp.decode(getter.recvfrom(1000)[0]) == tftp.Data(
                1, (tmp_path / "f.bin").read_bytes()[:512]
            )
            putter.sendto(b"\0\2up.bin\0octet\0", (HOST, port))
            ack0, tid = putter.recvfrom(1000)
            assert tftp.decode(ack0) == tftp.Ack(0)
            putter.sendto(tftp.encode(tftp.Data(1, bytes(512))), tid)
            assert tftp.decode(putter.recvfrom(1000)[0]) == tftp.Ack(1)
            assert any(p.name != "f.bin" for p in tmp_path.iterdir())  # the upload's temporary
            t0 = time.monotonic()
            server.send_signal(signal.SIGTERM)
            told = [tftp.decode(sock.recvfrom(1000)[0]) for sock in (getter, putter)]
            waited = time.monotonic() - t0
        assert server.wait(20) == 0
    assert told == [tftp.Error(0, "the server is shutting down")] * 2
    assert waited < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
