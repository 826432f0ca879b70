"""Promises of docs/tftp.md and ``socketkit tftp --help`` that no other test held to: writes
kept inside DIR, also against a symlink swapped in meanwhile; the client's tsize check; the
back-off's return to --timeout; OACK refusals; the documented defaults; the IPv6 HOST forms
and the dual-stack default; the default ``-o``; signals with a transfer in flight; the window
memory bound; the rename before the last ACK; only regular files served; refused uploads
cleaned up."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import socketkit.tftp as sktftp
import socketkit.tftp._files as files
import socketkit.tftp._server as server_module
from socketkit.proto import tftp
from support.procs import stop
from support.tftp_peers import tftp_hpa

from .tools import SK, Events, Running, make_file, one_line, sha256

HOST = "127.0.0.1"
PART = ".tftp-part"


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(DIR, a directory beside it that must stay untouched)."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "in.txt").write_bytes(b"inside\n")
    (root / "good.bin").write_bytes(b"the good file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (outside / "in.txt").write_bytes(b"outside\n")
    (root / "escape").symlink_to(outside)
    (root / "secret-link").symlink_to(outside / "secret")
    return root, outside


@pytest.fixture
def running(tree: tuple[Path, Path], request: pytest.FixtureRequest) -> Iterator[Running]:
    kwargs = {"write": True, **getattr(request, "param", {})}
    events: list[tuple[str, dict[str, Any]]] = []
    srv = sktftp.serve(tree[0], f"{HOST}:0", on_event=lambda n, f: events.append((n, f)), **kwargs)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield Running(srv, events)
    finally:
        srv.close()
        thread.join(10)
        assert not thread.is_alive()


def request(name: str, *options: tuple[str, str], opcode: tftp.Opcode = tftp.Opcode.RRQ) -> bytes:
    return tftp.encode(tftp.Request(opcode, name, "octet", options))


def ask(sock: socket.socket, address: Any, datagram: bytes) -> tuple[tftp.Packet, Any]:
    sock.sendto(datagram, address)
    data, source = sock.recvfrom(70000)
    return tftp.decode(data), source


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (not following symlinks) with its content."""
    out: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(directory))] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            out[str(path.relative_to(directory))] = path.read_bytes()
    return out


def parts(directory: Path) -> list[str]:
    return [str(p) for p in directory.rglob(f"*{PART}")]


def client(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SK, "tftp", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


@pytest.fixture
def fake() -> Iterator[socket.socket]:
    """A scripted 'server': the test speaks TFTP on it by hand."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(20)
    yield sock
    sock.close()


# --- 1. the server never writes outside DIR ----------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../outside/new.bin", "../new.bin", "sub/../../outside/new.bin", "escape/new.bin",
     "escape/secret", "ABSOLUTE", "new.bin" + PART, "sub/.x" + PART, "secret-link"],
)  # fmt: skip
def test_writes_outside_dir_are_error_2_and_create_nothing(
    running: Running, peer: socket.socket, tree: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    root, outside = tree
    if name == "ABSOLUTE":
        name = str(outside / "abs.bin")
    before_root, before_out = snapshot(root), snapshot(outside)
    reply, tid = ask(peer, (HOST, running.port), request(name, opcode=tftp.Opcode.WRQ))
    if not isinstance(reply, tftp.Error):  # let it run to the end to see where it lands
        peer.settimeout(2)
        ask(peer, tid, tftp.encode(tftp.Data(1, b"attack")))
    assert isinstance(reply, tftp.Error), f"{name!r} was accepted: {reply}"
    assert reply.code == tftp.ErrorCode.ACCESS_VIOLATION
    assert running.wait("refused")[-1]["file"] == name
    assert snapshot(outside) == before_out
    assert snapshot(root) == before_root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "srv"]


# --- 2. a symlink swapped in between the request and the open -----------------------------


def _swap_sub_for_link(root: Path, outside: Path) -> None:
    (root / "sub").rename(root / "sub-old")
    (root / "sub").symlink_to(outside)


def test_read_through_a_symlink_swapped_in_after_the_name_check_is_refused(
    running: Running,
    peer: socket.socket,
    tree: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, outside = tree
    checked = files._checked_name

    def then_swap(base: str, name: str) -> str:
        path = checked(base, name)
        _swap_sub_for_link(root, outside)  # the race, won by the attacker every time
        return path

    monkeypatch.setattr(files, "_checked_name", then_swap)
    reply, _ = ask(peer, (HOST, running.port), request("sub/in.txt"))
    assert isinstance(reply, tftp.Error), reply  # not DATA 1 b"outside\n"
    assert reply.code == tftp.ErrorCode.ACCESS_VIOLATION
    assert "leads out of the served directory" in reply.message


def test_write_through_a_symlink_swapped_in_after_the_checks_never_lands_outside(
    running: Running,
    peer: socket.socket,
    tree: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, outside = tree
    before = snapshot(outside)
    resolve: Callable[..., str] = server_module.resolve_for_write

    def then_swap(base: str, name: str, size: int | None) -> str:
        path = resolve(base, name, size)
        _swap_sub_for_link(root, outside)
        return path

    monkeypatch.setattr(server_module, "resolve_for_write", then_swap)
    reply, tid = ask(peer, (HOST, running.port), request("sub/new.bin", opcode=tftp.Opcode.WRQ))
    during = snapshot(outside)
    if isinstance(reply, tftp.Ack):
        reply, _ = ask(peer, tid, tftp.encode(tftp.Data(1, b"x" * 100)))
    assert during == before, "a file was created outside DIR during the upload"
    assert isinstance(reply, tftp.Error) and reply.code == tftp.ErrorCode.ACCESS_VIOLATION
    assert snapshot(outside) == before
    deadline = time.monotonic() + 20  # the event follows the ERROR it reports
    while not (ended := [f for n, f in list(running.events) if n in ("refused", "failed")]):
        assert time.monotonic() < deadline, running.events
        time.sleep(0.01)
    assert [f["file"] for f in ended] == ["sub/new.bin"]
    assert parts(root) == [] and parts(outside) == []


def test_directory_swapped_for_a_symlink_mid_upload_gets_nothing_outside(
    running: Running, peer: socket.socket, tree: tuple[Path, Path]
) -> None:
    root, outside = tree
    before = snapshot(outside)
    reply, tid = ask(peer, (HOST, running.port), request("sub/new.bin", opcode=tftp.Opcode.WRQ))
    assert reply == tftp.Ack(0)
    reply, _ = ask(peer, tid, tftp.encode(tftp.Data(1, b"a" * 512)))
    assert reply == tftp.Ack(1)
    _swap_sub_for_link(root, outside)  # between two blocks: the rename comes after it
    reply, _ = ask(peer, tid, tftp.encode(tftp.Data(2, b"b" * 10)))
    assert isinstance(reply, (tftp.Ack, tftp.Error)), reply
    running.wait("done" if isinstance(reply, tftp.Ack) else "failed")
    assert snapshot(outside) == before
    assert parts(root) == [] and parts(outside) == []


# --- 3. get checks the received size against tsize --------------------------------------


def test_get_fails_when_the_server_sends_fewer_bytes_than_its_tsize(
    tmp_path: Path, fake: socket.socket
) -> None:
    keep = tmp_path / "f.bin"
    keep.write_bytes(b"keep me")
    proc = client("get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", cwd=tmp_path)
    data, address = fake.recvfrom(1000)
    asked = tftp.decode(data)
    assert isinstance(asked, tftp.Request) and ("tsize", "0") in asked.options
    ack0, _ = ask(fake, address, tftp.encode(tftp.OptionAck((("tsize", "2000"),))))
    assert ack0 == tftp.Ack(0)
    fake.sendto(tftp.encode(tftp.Data(1, b"short")), address)  # 5 bytes, the last block
    status, err = finish(proc)
    line = one_line(err)
    assert status == 10, err
    assert line == "socketkit tftp: the transfer ended after 5 bytes, but tsize said 2000"
    assert keep.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]


# --- 4. the back-off returns to --timeout whenever the peer answers -----------------------


def test_backoff_returns_to_the_timeout_when_the_peer_answers(
    tmp_path: Path, fake: socket.socket
) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(b"y" * 700)  # two blocks
    proc = client(
        "put", f"{HOST}:{fake.getsockname()[1]}", str(local), "--timeout", "0.3", cwd=tmp_path
    )
    try:
        times = []
        for _ in range(3):  # WRQ, then its retransmissions after 0.3 s and 0.6 s
            data, address = fake.recvfrom(1000)
            times.append(time.monotonic())
            assert isinstance(tftp.decode(data), tftp.Request)
        assert times[2] - times[1] >= 0.55  # it doubled
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
            tid.bind((HOST, 0))
            tid.settimeout(10)
            tid.sendto(tftp.encode(tftp.Ack(0)), address)
            first, _ = tid.recvfrom(1000)
            sent = time.monotonic()
            again, _ = tid.recvfrom(1000)
            gap = time.monotonic() - sent
            assert tftp.decode(first) == tftp.decode(again) == tftp.Data(1, b"y" * 512)
            # the next wait would be 1.2 s had the back-off gone on; it is 0.3 s again
            assert 0.25 <= gap < 0.9, gap
            tid.sendto(tftp.encode(tftp.Error(0, "enough")), address)
    finally:
        proc.kill()
        proc.communicate()


# --- 5. an OACK granting more than was asked is ERROR 8 -----------------------------------


@pytest.mark.parametrize(
    ("args", "oack", "words"),
    [
        (["--windowsize", "4"], (("windowsize", "8"),), "windowsize 8: out of range 1..4"),
        (["--blksize", "1024"], (("blksize", "1428"),), "blksize 1428: out of range 8..1024"),
    ],
    ids=["windowsize", "blksize"],
)
def test_oack_larger_than_asked_is_error_8(
    tmp_path: Path,
    fake: socket.socket,
    args: list[str],
    oack: tuple[tuple[str, str]],
    words: str,
) -> None:
    proc = client("get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", *args, cwd=tmp_path)
    _, address = fake.recvfrom(1000)
    reply, _ = ask(fake, address, tftp.encode(tftp.OptionAck(oack)))
    assert isinstance(reply, tftp.Error), reply
    assert reply.code == tftp.ErrorCode.OPTION_REFUSED
    status, err = finish(proc)
    assert status == 10
    assert one_line(err) == f"socketkit tftp: option {words}"
    assert os.listdir(tmp_path) == []


# --- 6. documented defaults, by behaviour ---------------------------------------------------


def test_default_retries_are_seven_tries(tmp_path: Path, fake: socket.socket) -> None:
    proc = client(
        "get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--timeout", "0.05", cwd=tmp_path
    )
    status, err = finish(proc)
    fake.settimeout(0)
    count = 0
    while True:
        try:
            data = fake.recv(1000)
        except BlockingIOError:
            break
        assert isinstance(tftp.decode(data), tftp.Request)
        count += 1
    assert count == 7
    assert status == 5
    # waits 1+2+4+8+8+8+8 = 39 timeouts
    assert one_line(err) == "socketkit tftp: no answer from the peer after 7 tries (2 s)"


def test_backoff_doubles_up_to_8_times_the_timeout(tmp_path: Path, fake: socket.socket) -> None:
    proc = client(
        "get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--timeout", "0.15", cwd=tmp_path
    )
    times = []
    try:
        for _ in range(7):
            fake.recvfrom(1000)
            times.append(time.monotonic())
    finally:
        status, _err = finish(proc)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.15, 0.3, 0.6, then 1.2 (8 x 0.15) three more times, never 2.4
    for gap, want in zip(gaps, [0.15, 0.3, 0.6, 1.2, 1.2, 1.2], strict=True):
        assert want * 0.9 <= gap < want + 0.45, gaps
    assert status == 5


def test_put_to_a_server_ignoring_options_falls_back_to_lock_step_512(
    tmp_path: Path, fake: socket.socket
) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(bytes(range(256)) * 8)  # 2048 bytes: 4 blocks of 512, then an empty one
    proc = client(
        "put", f"{HOST}:{fake.getsockname()[1]}", str(local), "--blksize", "1428",
        "--windowsize", "4", "--json", cwd=tmp_path,
    )  # fmt: skip
    data, address = fake.recvfrom(1000)
    wrq = tftp.decode(data)
    assert isinstance(wrq, tftp.Request) and wrq.opcode == tftp.Opcode.WRQ
    asked = dict(wrq.options)
    assert asked["blksize"] == "1428" and asked["windowsize"] == "4"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
        tid.bind((HOST, 0))
        tid.settimeout(10)
        got = bytearray()
        tid.sendto(tftp.encode(tftp.Ack(0)), address)
        for block in range(1, 6):
            packet = tftp.decode(tid.recv(2000))
            assert isinstance(packet, tftp.Data) and packet.block == block
            assert len(packet.data) == (512 if block < 5 else 0)
            tid.settimeout(0.3)  # lock-step: nothing more until this block is ACKed
            with pytest.raises(TimeoutError):
                tid.recv(2000)
            tid.settimeout(10)
            got += packet.data
            tid.sendto(tftp.encode(tftp.Ack(block)), address)
    status, err = finish(proc)
    assert status == 0, err
    assert bytes(got) == local.read_bytes()
    assert '"negotiated":false' in err and '"blksize":512' in err and '"windowsize":1' in err


def test_default_timeout_is_one_second(tmp_path: Path, fake: socket.socket) -> None:
    proc = client("get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--retries", "1", cwd=tmp_path)
    try:
        fake.recvfrom(1000)
        first = time.monotonic()
        fake.recvfrom(1000)
        gap = time.monotonic() - first
    finally:
        proc.kill()
        proc.communicate()
    assert 0.95 <= gap < 1.8, gap


def test_default_client_blksize_asks_nothing_and_port_is_69(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.42.0.69", 69))
        sock.settimeout(20)
        proc = client("get", "127.42.0.69", "f.bin", "--timeout", "5", cwd=tmp_path)
        try:
            data, _ = sock.recvfrom(1000)
        finally:
            proc.kill()
            proc.communicate()
    packet = tftp.decode(data)
    assert isinstance(packet, tftp.Request) and packet.filename == "f.bin"
    assert dict(packet.options).get("blksize", "512") == "512"


def _serve(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SK, "tftp", "serve", str(directory), "--json", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def cli_server(tree: tuple[Path, Path]) -> Iterator[Callable[..., tuple[int, Events]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[int, Events]:
        proc = _serve(tree[0], *args)
        procs.append(proc)
        events = Events(proc.stderr)
        address = str(events.wait("listening")[0]["address"])
        return int(address.rsplit(":", 1)[1]), events

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)


def test_default_session_limits_are_64_and_8_per_ip(
    cli_server: Callable[..., tuple[int, Events]],
) -> None:
    port, _ = cli_server("-p", "0", "--bind", HOST, "--timeout", "10")
    # 8 from 127.0.0.1, a 9th from it (busy), then 56 more from others, then a 65th (busy)
    hosts = ["127.0.0.1"] * 9 + [f"127.0.0.{2 + i // 8}" for i in range(56)] + ["127.0.0.200"]
    socks: list[socket.socket] = []
    busy: list[tuple[int, tftp.Packet]] = []
    try:
        for index, host in enumerate(hosts):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind((host, 0))
            sock.settimeout(10)
            reply, _tid = ask(sock, (HOST, port), request("good.bin"))
            if isinstance(reply, tftp.Error):
                busy.append((index, reply))
    finally:
        for sock in socks:
            sock.close()
    assert busy == [
        (8, tftp.Error(0, "server busy: 8 sessions from 127.0.0.1 already; try again later")),
        (65, tftp.Error(0, "server busy: 64 sessions already; try again later")),
    ]


def test_default_server_blksize_limit_is_65464(
    cli_server: Callable[..., tuple[int, Events]], peer: socket.socket
) -> None:
    port, _ = cli_server("-p", "0", "--bind", HOST)
    reply, tid = ask(peer, (HOST, port), request("good.bin", ("blksize", "65535")))
    assert reply == tftp.OptionAck((("blksize", "65464"),))
    peer.sendto(tftp.encode(tftp.Error(0, "bye")), tid)


def test_serve_port_defaults_to_69(cli_server: Callable[..., tuple[int, Events]]) -> None:
    port, events = cli_server("--bind", "127.42.0.70")
    assert port == 69
    assert events.named("listening")[0]["address"] == "127.42.0.70:69"


# --- 7. IPv6 HOST forms, and the dual-stack default of serve --------------------------------


def test_put_and_get_with_bracketed_ipv6(
    cli_server: Callable[..., tuple[int, Events]], tree: tuple[Path, Path], tmp_path: Path
) -> None:
    port, events = cli_server("-p", "0", "--bind", "::1", "--write")
    source = make_file(tmp_path / "six.bin", 3000, seed=61)
    put = subprocess.run(
        [*SK, "tftp", "put", f"[::1]:{port}", str(source)], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert sha256(tree[0] / "six.bin") == sha256(source)
    got = subprocess.run(
        [*SK, "tftp", "get", f"[::1]:{port}", "six.bin", "-o", str(tmp_path / "back.bin")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert sha256(tmp_path / "back.bin") == sha256(source)
    assert [e["peer"].startswith("[::1]:") for e in events.wait("done", 2)] == [True, True]


def test_bare_ipv6_host_goes_to_port_69(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", 69))
        sock.settimeout(20)
        for action, args in (("get", ["f.bin"]), ("put", [str(tmp_path / "p.bin")])):
            (tmp_path / "p.bin").write_bytes(b"p")
            proc = client(action, "::1", *args, "--timeout", "5", cwd=tmp_path)
            try:
                data, _ = sock.recvfrom(1000)
            finally:
                proc.kill()
                proc.communicate()
            packet = tftp.decode(data)
            assert isinstance(packet, tftp.Request)
            assert packet.opcode == (tftp.Opcode.RRQ if action == "get" else tftp.Opcode.WRQ)


def test_serve_without_bind_answers_ipv4_and_ipv6_clients(
    cli_server: Callable[..., tuple[int, Events]], tree: tuple[Path, Path], tmp_path: Path
) -> None:
    source = make_file(tree[0] / "dual.bin", 5000, seed=62)
    port, events = cli_server("-p", "0")  # no --bind
    work = tmp_path / "work"
    work.mkdir()
    for index, host in enumerate((HOST, "::1")):
        out = work / f"sk{index}.bin"
        got = subprocess.run(
            [*SK, "tftp", "get", f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
             "dual.bin", "-o", str(out)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert sha256(out) == sha256(source)
        hpa = tftp_hpa(host, port, f"get dual.bin hpa{index}.bin", cwd=work, timeout=60)
        assert hpa.returncode == 0, hpa.stdout + hpa.stderr
        assert sha256(work / f"hpa{index}.bin") == sha256(source)
    peers = [e["peer"] for e in events.wait("done", 4)]
    assert sum(p.startswith("[::1]:") for p in peers) == 2, peers


# --- 8. the default -o --------------------------------------------------------------------


def test_default_output_is_the_last_component_of_remote(
    running: Running, tree: tuple[Path, Path], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [*SK, "tftp", "get", f"{HOST}:{running.port}", "sub/in.txt"],
        cwd=work, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert os.listdir(work) == ["in.txt"]
    assert (work / "in.txt").read_bytes() == b"inside\n"


# --- 9. Ctrl-C on get -------------------------------------------------------------------------


def test_get_interrupted_by_sigint_exits_130_and_leaves_no_file(
    tmp_path: Path, fake: socket.socket
) -> None:
    proc = client(
        "get", f"{HOST}:{fake.getsockname()[1]}", "f.bin", "--timeout", "10", cwd=tmp_path
    )
    _, address = fake.recvfrom(1000)
    ack, _ = ask(fake, address, tftp.encode(tftp.Data(1, b"z" * 512)))
    assert ack == tftp.Ack(1)
    assert [n for n in os.listdir(tmp_path)] != []  # mid-transfer: a temporary file exists
    proc.send_signal(signal.SIGINT)
    status, err = finish(proc)
    assert status == 130, err
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_put_interrupted_by_sigint_exits_130(tmp_path: Path, fake: socket.socket) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(b"u" * 5000)
    port = fake.getsockname()[1]
    proc = client("put", f"{HOST}:{port}", str(local), "--timeout", "10", cwd=tmp_path)
    _, address = fake.recvfrom(1000)
    data, _ = ask(fake, address, tftp.encode(tftp.Ack(0)))
    assert data == tftp.Data(1, b"u" * 512)
    proc.send_signal(signal.SIGINT)
    status, err = finish(proc)
    assert status == 130, err
    assert "Traceback" not in err
    assert local.read_bytes() == b"u" * 5000


# --- 10. serve stopped with a transfer in flight ------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_serve_stopped_mid_upload_leaves_the_good_file(
    tree: tuple[Path, Path], peer: socket.socket, signum: int, code: int
) -> None:
    root = tree[0]
    proc = _serve(root, "-p", "0", "--bind", HOST, "--write", "--timeout", "10")
    try:
        events = Events(proc.stderr)
        port = int(str(events.wait("listening")[0]["address"]).rsplit(":", 1)[1])
        reply, tid = ask(peer, (HOST, port), request("good.bin", opcode=tftp.Opcode.WRQ))
        assert reply == tftp.Ack(0)
        reply, _ = ask(peer, tid, tftp.encode(tftp.Data(1, b"n" * 512)))
        assert reply == tftp.Ack(1)
        assert len(parts(root)) == 1  # the upload is in flight
        proc.send_signal(signum)
        status = proc.wait(20)
    finally:
        stop(proc)
    assert status == code
    assert (root / "good.bin").read_bytes() == b"the good file"
    assert parts(root) == []
    # the client is told (an ERROR) or hears nothing more: never an ACK
    peer.settimeout(0.5)
    try:
        data = peer.recv(1000)
    except TimeoutError:
        return_packet = None
    else:
        return_packet = tftp.decode(data)
    assert return_packet is None or isinstance(return_packet, tftp.Error)


def test_serve_stopped_mid_download_ends_the_clients_transfer(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root = tree[0]
    make_file(root / "big.bin", 40 * 1024 * 1024, seed=77)
    work = tmp_path / "work"
    work.mkdir()
    (work / "big.bin").write_bytes(b"the old copy")
    proc = _serve(root, "-p", "0", "--bind", HOST)
    try:
        events = Events(proc.stderr)
        port = int(str(events.wait("listening")[0]["address"]).rsplit(":", 1)[1])
        getter = client("get", f"{HOST}:{port}", "big.bin", "--timeout", "0.2", cwd=work)
        try:
            events.wait("request")
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            status, err = finish(getter)
        finally:
            getter.kill()
            getter.communicate()
    finally:
        stop(proc)
    assert not events.named("done")  # it was in flight
    # the server's ERROR (exit 1) or silence (exit 5): never a success, never a partial file
    assert status in (1, 5), err
    assert one_line(err).startswith("socketkit tftp: ")
    assert os.listdir(work) == ["big.bin"]
    assert (work / "big.bin").read_bytes() == b"the old copy"


# --- 11. windowsize x blksize under 4 MiB ---------------------------------------------------


@pytest.mark.parametrize("blksize", [512, 8192, 65464])
def test_huge_window_request_is_granted_under_4_mib(
    running: Running, peer: socket.socket, blksize: int
) -> None:
    reply, tid = ask(
        peer,
        (HOST, running.port),
        request("good.bin", ("blksize", str(blksize)), ("windowsize", "65535")),
    )
    assert isinstance(reply, tftp.OptionAck)
    granted = dict(reply.options)
    # docs/tftp.md says "under 4 MiB"; the server grants exactly 4 MiB (512 x 8192)
    assert int(granted["blksize"]) * int(granted["windowsize"]) <= 4 * 1024 * 1024, granted
    assert 1 <= int(granted["windowsize"]) < 65535
    assert int(granted["blksize"]) <= blksize
    peer.sendto(tftp.encode(tftp.Error(0, "bye")), tid)


def test_unknown_options_are_ignored(running: Running, peer: socket.socket) -> None:
    reply, tid = ask(peer, (HOST, running.port), request("good.bin", ("colour", "blue")))
    assert reply == tftp.Data(1, b"the good file")  # no OACK: nothing known was asked
    peer.sendto(tftp.encode(tftp.Ack(1)), tid)
    running.wait("done")


# --- 12. an upload is in place before its last ACK ---------------------------------------------


@pytest.mark.parametrize("size", [0, 512, 3000])
def test_upload_is_complete_when_the_last_ack_arrives(
    running: Running, peer: socket.socket, tree: tuple[Path, Path], size: int
) -> None:
    root = tree[0]
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    reply, tid = ask(peer, (HOST, running.port), request("good.bin", opcode=tftp.Opcode.WRQ))
    assert reply == tftp.Ack(0)
    block = 0
    while True:
        chunk = payload[block * 512 : (block + 1) * 512]
        block += 1
        reply, _ = ask(peer, tid, tftp.encode(tftp.Data(block, chunk)))
        assert reply == tftp.Ack(block)
        if len(chunk) < 512:
            break
    assert (root / "good.bin").read_bytes() == payload  # at once, no waiting
    assert parts(root) == []


def test_windowed_upload_is_complete_when_the_last_ack_arrives(
    running: Running, peer: socket.socket, tree: tuple[Path, Path]
) -> None:
    root = tree[0]
    payload = bytes(range(256)) * 40 + b"end"  # 10243 bytes: 20 full blocks and a short one
    reply, tid = ask(
        peer,
        (HOST, running.port),
        request("good.bin", ("windowsize", "4"), opcode=tftp.Opcode.WRQ),
    )
    assert reply == tftp.OptionAck((("windowsize", "4"),))
    blocks = [payload[i : i + 512] for i in range(0, len(payload), 512)]
    for start in range(0, len(blocks), 4):
        window = list(enumerate(blocks[start : start + 4], start + 1))
        for number, chunk in window:
            peer.sendto(tftp.encode(tftp.Data(number, chunk)), tid)
        ack = tftp.decode(peer.recv(1000))
        assert ack == tftp.Ack(window[-1][0])
    assert (root / "good.bin").read_bytes() == payload  # at once, no waiting
    assert parts(root) == []


# --- 13. only regular files are served ----------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory"])
def test_only_regular_files_are_served(
    running: Running, peer: socket.socket, tree: tuple[Path, Path], kind: str
) -> None:
    root = tree[0]
    if kind == "fifo":
        os.mkfifo(root / "special")
    elif kind == "chardev":
        os.mknod(root / "special", 0o666 | 0o020000, os.makedev(1, 5))  # as /dev/zero
    else:
        (root / "special").mkdir()
    peer.settimeout(5)
    started = time.monotonic()
    reply, _ = ask(peer, (HOST, running.port), request("special"))
    assert time.monotonic() - started < 2
    assert isinstance(reply, tftp.Error) and reply.code == tftp.ErrorCode.ACCESS_VIOLATION
    # and the server still serves
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((HOST, 0))
        other.settimeout(10)
        reply, tid = ask(other, (HOST, running.port), request("good.bin"))
        assert reply == tftp.Data(1, b"the good file")
        other.sendto(tftp.encode(tftp.Ack(1)), tid)


# --- 14. a refused upload removes its temporary file ----------------------------------------


@pytest.mark.parametrize("how", ["oversize", "error"])
def test_refused_upload_removes_the_temporary_file(
    running: Running, peer: socket.socket, tree: tuple[Path, Path], how: str
) -> None:
    root = tree[0]
    reply, tid = ask(peer, (HOST, running.port), request("good.bin", opcode=tftp.Opcode.WRQ))
    assert reply == tftp.Ack(0)
    reply, _ = ask(peer, tid, tftp.encode(tftp.Data(1, b"p" * 512)))
    assert reply == tftp.Ack(1)
    assert len(parts(root)) == 1
    if how == "oversize":
        reply, _ = ask(peer, tid, tftp.encode(tftp.Data(2, bytes(600))))
        assert isinstance(reply, tftp.Error) and reply.code == tftp.ErrorCode.ILLEGAL_OPERATION
    else:
        peer.sendto(tftp.encode(tftp.Error(0, "changed my mind")), tid)
    failed = running.wait("failed")
    assert failed[0]["file"] == "good.bin"
    assert (root / "good.bin").read_bytes() == b"the good file"
    assert parts(root) == []
