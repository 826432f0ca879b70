"""``socketkit tftp`` as a command: --json events, -v, progress on a terminal, stdout output,
netascii with tftp-hpa, SIGTERM, --help and ``socketkit help tftp``."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import socketkit.tftp as sktftp
from socketkit.proto import tftp
from support.tftp_peers import tftp_hpa, tftpd_hpa

from .tools import SK, make_file, run_sk, sha256, sk_server

HOST = "127.0.0.1"


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_json_events_of_a_get_and_of_the_server(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", 300_000, seed=5)
    with sk_server(served) as (port, events, _proc):
        out = tmp_path / "got.bin"
        result = run_sk(
            "tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(out), "--json", "--blksize", "1024"
        )
        served_done = events.wait("done")[0]
        request = events.named("request")[0]
    assert result.returncode == 0, result.stderr
    got = _events(result.stderr)
    assert got[0]["event"] == "start"
    assert got[-1]["event"] == "done"
    assert {e["event"] for e in got} <= {"start", "progress", "done"}
    done = got[-1]
    assert done["bytes"] == 300_000 and done["tsize"] == 300_000 and done["blksize"] == 1024
    assert done["negotiated"] is True and done["local"] == str(out) and done["file"] == "f.bin"
    assert all(isinstance(e["time"], float) for e in got)
    assert [e for e in got if e["event"] == "progress"][-1] == {
        "event": "progress", "time": got[-2]["time"], "bytes": 300_000, "total": 300_000,
    }  # fmt: skip
    assert sha256(out) == sha256(source)
    assert request["op"] == "read" and request["options"] == {"blksize": "1024", "tsize": "0"}
    assert served_done["size"] == 300_000 and served_done["blksize"] == 1024


def test_json_error_event_and_one_line(tmp_path: Path) -> None:
    with sk_server(tmp_path) as (port, events, _proc):
        result = run_sk("tftp", "get", f"{HOST}:{port}", "missing", "--json", cwd=tmp_path)
        refused = events.wait("refused")[0]
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert json.loads(lines[-2])["event"] == "error"
    assert json.loads(lines[-2])["exit_code"] == 1
    assert json.loads(lines[-2])["message"] == (
        "the peer sent TFTP error 1 (file not found): missing: no such file"
    )
    assert (
        lines[-1]
        == "socketkit tftp: the peer sent TFTP error 1 (file not found): missing: no such file"
    )
    assert refused == {**refused, "code": 1, "file": "missing"}


def test_verbose_summary_line(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    make_file(served / "f.bin", 1000)
    with tftpd_hpa(served) as port:
        result = run_sk("tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(tmp_path / "x"), "-v")
    assert result.returncode == 0
    line = result.stderr.strip()
    assert line.startswith("socketkit tftp: received 1000 bytes in ")
    assert line.endswith(", blksize 512, windowsize 1, 0 retransmitted")


def test_get_to_stdout(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", 7000, seed=2)
    with sk_server(served) as (port, _events, _proc):
        result = subprocess.run(
            [*SK, "tftp", "get", f"{HOST}:{port}", "f.bin", "-o", "-"],
            capture_output=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout == source.read_bytes()
    assert os.listdir(tmp_path) == ["srv"]


def test_progress_on_a_terminal_and_none_on_a_pipe(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    make_file(served / "f.bin", 3_000_000, seed=8)
    with sk_server(served) as (port, _events, _proc):
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [*SK, "tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(tmp_path / "out")],
            stderr=slave, stdout=subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip
        os.close(slave)
        seen = b""
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 30)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
            assert proc.wait(60) == 0
        piped = run_sk("tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(tmp_path / "out2"))
    text = seen.decode()
    assert "\r" in text and "/ 2.9 MiB" in text and "100%" in text and "MB/s" in text
    assert text.endswith("\r\n")  # the progress line is ended, not left for the prompt
    assert piped.stderr == ""


def test_netascii_both_ways_with_tftp_hpa(tmp_path: Path) -> None:
    text = b"first line\nsecond line\n\nbare\rcr\nlast"
    served = tmp_path / "srv"
    served.mkdir()
    (served / "t.txt").write_bytes(text)
    work = tmp_path / "work"
    work.mkdir()
    with tftpd_hpa(served, create=True) as port:
        result = run_sk(
            "tftp", "get", f"{HOST}:{port}", "t.txt", "-o", str(work / "got.txt"),
            "--mode", "netascii",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (work / "got.txt").read_bytes() == text
        result = run_sk(
            "tftp", "put", f"{HOST}:{port}", str(work / "got.txt"), "back.txt",
            "--mode", "netascii",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert (served / "back.txt").read_bytes() == text
    with sk_server(served, "--write") as (port, _events, _proc):
        got = tftp_hpa(HOST, port, "get t.txt hpa.txt", cwd=work, mode="netascii")
        assert got.returncode == 0, got.stderr
        put = tftp_hpa(HOST, port, "put hpa.txt hpa-back.txt", cwd=work, mode="netascii")
        assert put.returncode == 0, put.stderr
    assert (work / "hpa.txt").read_bytes() == text
    assert (served / "hpa-back.txt").read_bytes() == text


def test_serve_stops_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    with sk_server(tmp_path) as (_port, events, proc):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        events.wait("closed")


def test_the_clients_timeout_option_sets_the_servers_timer(tmp_path: Path) -> None:
    make_file(tmp_path / "f.bin", 2000)
    events: list[str] = []
    srv = sktftp.serve(
        tmp_path, f"{HOST}:0", timeout=30, retries=1, on_event=lambda n, f: events.append(n)
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((HOST, 0))
            peer.settimeout(10)
            request = tftp.Request(tftp.Opcode.RRQ, "f.bin", "octet", (("timeout", "1"),))
            peer.sendto(tftp.encode(request), (HOST, int(srv.address.rsplit(":", 1)[1])))
            started = time.monotonic()
            oack, _tid = peer.recvfrom(100)
            assert tftp.decode(oack) == tftp.OptionAck((("timeout", "1"),))
            again, _ = peer.recvfrom(100)  # never acknowledged: sent again after 1 s, not 30
            assert again == oack
            assert 0.8 < time.monotonic() - started < 5
            end = time.monotonic() + 10
            while "failed" not in events and time.monotonic() < end:
                time.sleep(0.05)
            assert "failed" in events  # given up after 1 + 2 s
    finally:
        srv.close()
        thread.join(10)


def test_names_of_temporary_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / ".x.1234.tftp-part").write_bytes(b"half")
    with sk_server(tmp_path) as (port, _events, _proc):
        result = run_sk("tftp", "get", f"{HOST}:{port}", ".x.1234.tftp-part", cwd=tmp_path / "..")
    assert result.returncode == 7
    assert "a transfer in progress" in result.stderr


def test_help_pages() -> None:
    page = run_sk("help", "tftp")
    assert page.returncode == 0 and page.stdout.startswith("# tftp")
    top = run_sk("tftp", "--help")
    assert top.returncode == 0 and "get,put,serve" in top.stdout
    for action, options in {
        "get": ["--blksize", "--windowsize", "--timeout", "--retries", "--mode", "--json", "-o"],
        "put": ["--blksize", "--windowsize", "--timeout", "--retries", "--mode", "--json"],
        "serve": ["--bind", "--write", "--max-sessions", "--max-sessions-per-ip", "-p"],
    }.items():
        text = run_sk("tftp", action, "--help").stdout
        for option in options:
            assert option in text, (action, option)
        assert "exit codes" in text
    listing = run_sk("--help").stdout
    assert "tftp" in listing
