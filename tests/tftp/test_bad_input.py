"""Bad input on both sides: malformed packets, unknown opcodes, oversize and repeated options,
path traversal, vanishing peers, ERRORs from the peer, unknown TIDs, session limits. Each gets
the right TFTP error or a timeout, one line and the documented exit code; other sessions keep
being served; no partial file is left in place of a good one."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import socketkit.tftp as sktftp
from socketkit.proto import tftp

from .tools import SK, Running, make_file, one_line, run_sk, sha256

HOST = "127.0.0.1"


# --- a server in this process, raw packets from the test --------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    root.mkdir()
    make_file(root / "f.bin", 5000, seed=1)
    (root / "sub").mkdir()
    (root / "sub" / "in.txt").write_bytes(b"inside\n")
    (root / "good.bin").write_bytes(b"the good file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)  # a directory symlink leading out
    (root / "secret-link").symlink_to(outside / "secret")
    (root / "inner-link").symlink_to(root / "sub" / "in.txt")  # stays inside: allowed
    return root


@pytest.fixture
def server(served: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    kwargs = getattr(request, "param", {})
    events: list[tuple[str, dict[str, Any]]] = []
    srv = sktftp.serve(served, f"{HOST}:0", on_event=lambda n, f: events.append((n, f)), **kwargs)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield Running(srv, events)
    finally:
        srv.close()
        thread.join(10)
        assert not thread.is_alive()


def ask(peer: socket.socket, port: int, datagram: bytes) -> tuple[tftp.Packet, Any]:
    peer.sendto(datagram, (HOST, port))
    data, address = peer.recvfrom(70000)
    return tftp.decode(data), address


def rrq(name: str, *options: tuple[str, str], opcode: tftp.Opcode = tftp.Opcode.RRQ) -> bytes:
    return tftp.encode(tftp.Request(opcode, name, "octet", options))


@pytest.mark.parametrize(
    ("datagram", "code", "words"),
    [
        (b"\0\x09whatever", 4, "unknown opcode 9"),
        (b"\0", 4, "too short"),
        (b"\0\3\0\1data", 4, "not a request"),
        (b"\0\1f.bin\0octet\0blksize\x001024\0blksize\x00512\0", 8, "'blksize' is repeated"),
        (b"\0\1f.bin\0octet\0blksize\0", 8, "has no value"),
        (b"\0\1" + b"x" * 600 + b"\0octet\0", 4, "longer than 512"),
        (b"\0\1f.bin\0mail\0", 4, "'mail' is not supported"),
        (rrq("f.bin", ("blksize", "4")), 8, "blksize '4'"),
        (rrq("f.bin", ("timeout", "0")), 8, "timeout 0"),
    ],
)
def test_malformed_requests_get_the_right_error(
    server: Running, peer: socket.socket, datagram: bytes, code: int, words: str
) -> None:
    reply, _ = ask(peer, server.port, datagram)
    assert isinstance(reply, tftp.Error)
    assert reply.code == code
    assert words.replace("'4'", "4") in reply.message or words in reply.message
    assert "\n" not in reply.message
    # the server keeps serving
    assert sktftp.get(f"{HOST}:{server.port}", "f.bin", io_sink := _Sink()).size == 5000
    assert len(io_sink.data) == 5000


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def test_oversize_blksize_is_answered_with_the_servers_limit(
    served: Path, peer: socket.socket
) -> None:
    srv = sktftp.serve(served, f"{HOST}:0", max_blksize=1468)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        port = int(srv.address.rsplit(":", 1)[1])
        reply, tid = ask(peer, port, rrq("f.bin", ("blksize", "100000")))
        assert reply == tftp.OptionAck((("blksize", "1468"),))
        assert tid[1] != port  # the transfer has its own port (RFC 1350 TID)
        peer.sendto(tftp.encode(tftp.Error(0, "done")), tid)
    finally:
        srv.close()
        thread.join(10)


@pytest.mark.parametrize(
    "name",
    ["../outside/secret", "/etc/passwd", "sub/../../outside/secret", "escape/secret",
     "secret-link", "..", "sub/../..//etc/passwd"],
)  # fmt: skip
def test_names_leaving_the_directory_are_refused(
    server: Running, peer: socket.socket, name: str
) -> None:
    reply, _ = ask(peer, server.port, rrq(name))
    assert isinstance(reply, tftp.Error)
    assert reply.code == tftp.ErrorCode.ACCESS_VIOLATION
    refused = server.wait("refused")
    assert refused[-1]["file"] == name


def test_symlink_inside_the_directory_is_served(server: Running) -> None:
    sink = _Sink()
    sktftp.get(f"{HOST}:{server.port}", "inner-link", sink)
    assert bytes(sink.data) == b"inside\n"


def test_missing_file_is_error_1_and_a_directory_error_2(
    server: Running, peer: socket.socket
) -> None:
    reply, _ = ask(peer, server.port, rrq("nope.bin"))
    assert reply == tftp.Error(1, "nope.bin: no such file")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:  # (one session per peer)
        other.bind((HOST, 0))
        other.settimeout(10)
        reply, _ = ask(other, server.port, rrq("sub"))
    assert isinstance(reply, tftp.Error) and reply.code == 2


def test_writes_are_refused_without_write(
    server: Running, peer: socket.socket, served: Path
) -> None:
    reply, _ = ask(peer, server.port, rrq("new.bin", opcode=tftp.Opcode.WRQ))
    assert reply == tftp.Error(2, "writes are refused: this server was started without --write")
    assert not (served / "new.bin").exists()


@pytest.mark.parametrize("server", [{"write": True, "timeout": 0.2, "retries": 2}], indirect=True)
def test_a_vanishing_writer_leaves_the_good_file(
    server: Running, peer: socket.socket, served: Path
) -> None:
    reply, tid = ask(peer, server.port, rrq("good.bin", opcode=tftp.Opcode.WRQ))
    assert reply == tftp.Ack(0)
    peer.sendto(tftp.encode(tftp.Data(1, b"x" * 512)), tid)
    data, _ = peer.recvfrom(100)
    assert tftp.decode(data) == tftp.Ack(1)
    # ... and the client vanishes: the server gives up, the old file stays, no temporary file
    failed = server.wait("failed", timeout=20)
    assert failed[0]["file"] == "good.bin" and "no answer" in failed[0]["message"]
    assert (served / "good.bin").read_bytes() == b"the good file"
    assert not [p for p in os.listdir(served) if p.endswith(".tftp-part")]


@pytest.mark.parametrize("server", [{"write": True}], indirect=True)
def test_a_write_shorter_than_its_tsize_is_refused(
    server: Running, peer: socket.socket, served: Path
) -> None:
    reply, tid = ask(peer, server.port, rrq("good.bin", ("tsize", "2000"), opcode=tftp.Opcode.WRQ))
    assert reply == tftp.OptionAck((("tsize", "2000"),))
    peer.sendto(tftp.encode(tftp.Data(1, b"short")), tid)
    data, _ = peer.recvfrom(1000)
    error = tftp.decode(data)
    assert isinstance(error, tftp.Error)
    assert "ended after 5 bytes, but tsize said 2000" in error.message
    server.wait("failed")
    assert (served / "good.bin").read_bytes() == b"the good file"
    assert not [p for p in os.listdir(served) if p.endswith(".tftp-part")]


@pytest.mark.parametrize("server", [{"write": True}], indirect=True)
def test_tsize_larger_than_the_disk_is_error_3(server: Running, peer: socket.socket) -> None:
    reply, _ = ask(peer, server.port, rrq("big", ("tsize", str(1 << 62)), opcode=tftp.Opcode.WRQ))
    assert isinstance(reply, tftp.Error) and reply.code == tftp.ErrorCode.DISK_FULL


@pytest.mark.parametrize("server", [{"timeout": 0.2, "retries": 2}], indirect=True)
def test_a_vanishing_reader_times_out_while_others_are_served(
    server: Running, peer: socket.socket
) -> None:
    reply, _ = ask(peer, server.port, rrq("f.bin"))
    assert reply == tftp.Data(
        1, (server.server.root and (Path(server.server.root) / "f.bin").read_bytes()[:512])
    )
    # this reader never ACKs; another one is served meanwhile
    sink = _Sink()
    assert sktftp.get(f"{HOST}:{server.port}", "f.bin", sink).size == 5000
    failed = server.wait("failed")
    assert failed[0]["error"] == "TransferTimeout"
    done = server.wait("done")
    assert done[0]["size"] == 5000


def test_error_from_the_reader_ends_the_session(server: Running, peer: socket.socket) -> None:
    reply, tid = ask(peer, server.port, rrq("f.bin"))
    assert isinstance(reply, tftp.Data) and reply.block == 1
    peer.sendto(tftp.encode(tftp.Error(0, "changed my mind")), tid)
    failed = server.wait("failed")
    assert failed[0]["message"] == ("the peer sent TFTP error 0 (not defined): changed my mind")
    peer.settimeout(1.5)  # no DATA follows (its first retransmission would come after 1 s)
    with pytest.raises(TimeoutError):
        peer.recvfrom(1000)


def test_an_unknown_tid_is_not_heard_and_the_transfer_goes_on(
    server: Running, peer: socket.socket
) -> None:
    reply, tid = ask(peer, server.port, rrq("f.bin"))
    assert isinstance(reply, tftp.Data)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        # The transfer's socket is connected to its peer (as tftp-hpa's are): the kernel
        # drops a stranger's datagrams, so its ACK moves nothing and gets no answer.
        stranger.bind((HOST, 0))
        stranger.settimeout(0.3)
        stranger.sendto(tftp.encode(tftp.Ack(1)), tid)
        with pytest.raises(TimeoutError):
            stranger.recvfrom(1000)
    got = bytearray(reply.data)
    block = 1
    while True:
        peer.sendto(tftp.encode(tftp.Ack(block)), tid)
        data, _ = peer.recvfrom(1000)
        packet = tftp.decode(data)
        assert isinstance(packet, tftp.Data) and packet.block == block + 1
        got += packet.data
        block += 1
        if len(packet.data) < 512:
            peer.sendto(tftp.encode(tftp.Ack(block)), tid)
            break
    assert len(got) == 5000
    server.wait("done")


def test_oversize_data_block_is_error_4(served: Path, peer: socket.socket) -> None:
    srv = sktftp.serve(served, f"{HOST}:0", write=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        port = int(srv.address.rsplit(":", 1)[1])
        reply, tid = ask(peer, port, rrq("good.bin", opcode=tftp.Opcode.WRQ))
        assert reply == tftp.Ack(0)
        peer.sendto(tftp.encode(tftp.Data(1, bytes(600))), tid)
        data, _ = peer.recvfrom(1000)
        error = tftp.decode(data)
        assert isinstance(error, tftp.Error) and error.code == 4
        assert "more than the blksize 512" in error.message
    finally:
        srv.close()
        thread.join(10)
    assert (served / "good.bin").read_bytes() == b"the good file"


@pytest.mark.parametrize(
    "server", [{"max_sessions": 3, "max_sessions_per_ip": 2, "timeout": 5}], indirect=True
)
def test_sessions_are_bounded_per_source_and_in_total(server: Running) -> None:
    socks = []
    try:
        for host in ("127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, 0))
            sock.settimeout(10)
            socks.append(sock)
        replies = [ask(sock, server.port, rrq("f.bin"))[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert [type(r).__name__ for r in replies] == ["Data", "Data", "Error", "Data", "Error"]
    assert replies[2] == tftp.Error(
        0, "server busy: 2 sessions from 127.0.0.1 already; try again later"
    )
    assert replies[4] == tftp.Error(0, "server busy: 3 sessions already; try again later")


def test_a_retransmitted_request_does_not_start_a_second_session(
    server: Running, peer: socket.socket
) -> None:
    _first, tid = ask(peer, server.port, rrq("f.bin"))
    peer.sendto(rrq("f.bin"), (HOST, server.port))  # the same request again, same port
    assert server.server.sessions == 1
    peer.settimeout(0.5)
    with pytest.raises(TimeoutError):
        peer.recvfrom(1000)  # no second DATA 1 from a second session
    peer.sendto(tftp.encode(tftp.Error(0, "bye")), tid)


# --- the client against a scripted server ------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(20)
    yield sock
    sock.close()


def _client(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SK, "tftp", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


@pytest.mark.parametrize(
    ("answer", "code", "line"),
    [
        (b"\0\x07junk", 10, "socketkit tftp: unknown opcode 7"),
        (tftp.encode(tftp.Error(2, "go away")),
         7, "socketkit tftp: the peer sent TFTP error 2 (access violation): go away"),
        (tftp.encode(tftp.Error(1, "File not found")),
         1, "socketkit tftp: the peer sent TFTP error 1 (file not found): File not found"),
        (tftp.encode(tftp.OptionAck((("windowsize", "4"),))), 10,
         "socketkit tftp: the server's OACK has option 'windowsize', which was not asked for"),
        (tftp.encode(tftp.Data(1, bytes(600))), 10,
         "socketkit tftp: DATA block 1 has 600 bytes, more than the blksize 512"),
    ],
)  # fmt: skip
def test_client_exit_codes_for_bad_answers(
    tmp_path: Path, fake: socket.socket, answer: bytes, code: int, line: str
) -> None:
    keep = tmp_path / "f.bin"
    keep.write_bytes(b"keep me")
    proc = _client("get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", cwd=tmp_path)
    _request, client = fake.recvfrom(1000)
    fake.sendto(answer, client)
    if code == 10:  # the client tells the server why it stops
        data, _ = fake.recvfrom(1000)
        assert isinstance(tftp.decode(data), tftp.Error)
    status, err = _finish(proc)
    assert (status, one_line(err)) == (code, line)
    assert keep.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_client_times_out_when_the_server_vanishes(tmp_path: Path, fake: socket.socket) -> None:
    keep = tmp_path / "f.bin"
    keep.write_bytes(b"keep me")
    proc = _client(
        "get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--timeout", "0.2", "--retries", "2",
        cwd=tmp_path,
    )  # fmt: skip
    _request, client = fake.recvfrom(1000)
    fake.sendto(tftp.encode(tftp.Data(1, bytes(512))), client)  # one block, then silence
    status, err = _finish(proc)
    assert status == 5
    assert one_line(err) == "socketkit tftp: no answer from the peer after 3 tries (1 s)"
    assert keep.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_client_finishes_when_the_server_is_gone_before_a_duplicated_last_block(
    tmp_path: Path, fake: socket.socket
) -> None:
    """A duplicated block makes the client wait at the end for a retransmitted last DATA (in
    case its ACK was lost); the last DATA does come twice, but the server's transfer port
    closes after the first, so our ACK of the duplicate draws an ICMP port unreachable during
    that wait. The file was complete: exit 0 and the file in place (a loaded CI run over an
    impaired path once ended such a get from tftpd-hpa with exit 4)."""
    proc = _client("get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", cwd=tmp_path)
    _request, client = fake.recvfrom(1000)
    first, last = tftp.Data(1, bytes(range(256)) * 2), tftp.Data(2, b"the end")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
        tid.bind((HOST, 0))
        tid.settimeout(20)
        for packet, ack in ((first, 1), (first, 1), (last, 2)):  # block 1 twice: lossy
            tid.sendto(tftp.encode(packet), client)
            data, _ = tid.recvfrom(100)
            assert tftp.decode(data) == tftp.Ack(ack)
        tid.sendto(tftp.encode(last), client)  # the duplicate, then the transfer port is gone
    status, err = _finish(proc)
    assert (status, err) == (0, "")
    assert (tmp_path / "f.bin").read_bytes() == first.data + last.data


def test_put_whose_last_ack_never_comes_says_the_server_most_likely_has_the_file(
    tmp_path: Path, fake: socket.socket
) -> None:
    """A scripted server takes both blocks of a put but its transfer port closes without the
    last ACK (as when that ACK is lost and tftpd-hpa stops waiting for a repeat before our
    retransmission arrives): exit 4 with a line that says what probably happened, not "no
    TFTP server there?"."""
    (tmp_path / "f.bin").write_bytes(bytes(600))
    proc = _client(
        "put", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--timeout", "0.2", cwd=tmp_path
    )
    _request, client = fake.recvfrom(1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
        tid.bind((HOST, 0))
        tid.settimeout(20)
        tid.sendto(tftp.encode(tftp.Ack(0)), client)
        first, _ = tid.recvfrom(1000)
        assert tftp.decode(first) == tftp.Data(1, bytes(512))
        tid.sendto(tftp.encode(tftp.Ack(1)), client)
        last, _ = tid.recvfrom(1000)
        assert tftp.decode(last) == tftp.Data(2, bytes(88))
    status, err = _finish(proc)  # the retransmitted last DATA meets a closed port
    assert (status, one_line(err)) == (
        4,
        "socketkit tftp: the server ended the transfer before its ACK of the last block "
        "reached us (ICMP port unreachable): it has most likely received the whole file; "
        "check it there",
    )


def test_put_refused_in_the_middle_is_not_called_complete(
    tmp_path: Path, fake: socket.socket
) -> None:
    """The port closes while earlier blocks are unacknowledged: the plain refusal."""
    (tmp_path / "f.bin").write_bytes(bytes(2000))
    proc = _client(
        "put", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--timeout", "0.2", cwd=tmp_path
    )
    _request, client = fake.recvfrom(1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
        tid.bind((HOST, 0))
        tid.settimeout(20)
        tid.sendto(tftp.encode(tftp.Ack(0)), client)
        tid.recvfrom(1000)  # DATA 1, never acknowledged
    status, err = _finish(proc)
    assert status == 4
    assert "most likely" not in err and "ICMP port unreachable" in one_line(err)


def test_client_refused_when_nothing_listens(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    result = run_sk("tftp", "get", f"{HOST}:{port}", "f.bin", "--timeout", "5", cwd=tmp_path)
    assert result.returncode == 4
    assert one_line(result.stderr) == (
        "socketkit tftp: receive: the peer refused (ICMP port unreachable): no TFTP server there?"
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["get", "no-such-host.invalid", "f"], 3, None),
        (["get", "127.0.0.1:99999", "f"], 2,
         "socketkit tftp: bad port 99999 in '127.0.0.1:99999': 1..65535"),
        (["put", "127.0.0.1:9", "/nonexistent/file"], 9,
         "socketkit tftp: cannot read /nonexistent/file: no such file or directory"),
        (["get", "127.0.0.1:9", "f", "-o", "/nonexistent/dir/f"], 9, None),
        (["serve", "/nonexistent/dir"], 9,
         "socketkit tftp: cannot serve /nonexistent/dir: not a directory"),
    ],
)  # fmt: skip
def test_cli_errors_before_any_packet(
    tmp_path: Path, args: list[str], code: int, line: str | None
) -> None:
    result = run_sk("tftp", *args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    text = one_line(result.stderr)
    assert text.startswith("socketkit tftp: ")
    if line is not None:
        assert text == line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["get", "h", "f", "--blksize", "7"], "'7': out of range: 8 <= value <= 65464"),
        (["get", "h", "f", "--windowsize", "0"], "'0': out of range: 1 <= value <= 65535"),
        (["get", "h", "f", "--timeout", "0"], "is not a timeout: give seconds, more than 0"),
        (["get", "h", "f", "--mode", "mail"], "invalid choice: 'mail'"),
        (["serve", ".", "-p", "70000"], "port must be 0..65535"),
        ([], "an action is needed"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    result = run_sk("tftp", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    action = args[0] if args else ""
    assert lines[0].startswith(f"socketkit tftp {action}".rstrip() + ": ")
    assert len(lines) == 2 and words in lines[0]
    assert lines[1] == f"see 'socketkit tftp {action} --help'".replace("  ", " ")


def test_serve_on_a_privileged_port_as_nobody_is_exit_8() -> None:
    # as raw tests run commands without privilege: an interpreter and source tree that uid
    # 65534 can read (a checkout under a 0700 home is not)
    from raw.rawkit import sk_as_nobody

    result = subprocess.run(
        sk_as_nobody("tftp", "serve", "/", "-p", "69", "--bind", "127.0.0.1"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 8, result.stderr
    assert one_line(result.stderr).startswith("socketkit tftp: ")


@pytest.mark.parametrize("server", [{"write": True}], indirect=True)
def test_put_replaces_atomically(server: Running, served: Path, tmp_path: Path) -> None:
    local = make_file(tmp_path / "new.bin", 70_000, seed=9)
    report = sktftp.put(f"{HOST}:{server.port}", local, "good.bin", blksize=1024, windowsize=4)
    assert report.size == 70_000 and report.tsize == 70_000
    assert sha256(served / "good.bin") == sha256(local)  # in place when put() returned
    assert not [p for p in os.listdir(served) if p.endswith(".tftp-part")]
