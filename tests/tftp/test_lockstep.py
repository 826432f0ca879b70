"""The lock-step loop (windowsize 1) in both of its forms: ``tftp_lockstep`` in _speedups.c and
the Python loop it mirrors (``socketkit/tftp/_channel.py``, ``_lockstep``). Each test runs with
one forced and checks what the peer sees on the wire: DATA and ACK numbers, retransmissions
after the timer, no answer to a stale ACK, and the file's bytes.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import socketkit.tftp as sktftp
from socketkit.proto import tftp
from socketkit.tftp import _channel

HOST = "127.0.0.1"
PURE = bool(os.environ.get("SOCKETKIT_PURE"))
BLOCK = 512


@pytest.fixture(params=["pure"] if PURE else ["c", "pure"])
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force one form of the loop."""
    if request.param == "c":
        assert _channel.c_lockstep is not None  # built in CI (gcc is installed)
    else:
        monkeypatch.setattr(_channel, "c_lockstep", None)
    return str(request.param)


def test_c_loop_in_use() -> None:
    """The C loop runs unless SOCKETKIT_PURE=1 says otherwise."""
    assert (_channel.c_lockstep is not None) is (not PURE)


def pattern(size: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(size))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    srv = sktftp.serve(served, f"{HOST}:0", write=True, timeout=5)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(srv.address.rsplit(":", 1)[1]), served
    finally:
        srv.close()
        thread.join(10)


@pytest.mark.usefixtures("loop")
def test_get_and_put_of_many_blocks_with_progress(server: tuple[int, Path], tmp_path: Path) -> None:
    """1,600 blocks each way (past the loop's progress interval of 512 blocks), the last one
    short; progress is reported on the way, and the bytes arrive unchanged."""
    port, served = server
    data = pattern(1600 * BLOCK - 100)
    (served / "f.bin").write_bytes(data)
    seen: list[tuple[int, int | None]] = []
    report = sktftp.get(
        f"{HOST}:{port}", "f.bin", tmp_path / "got.bin", progress=lambda n, t: seen.append((n, t))
    )
    assert (tmp_path / "got.bin").read_bytes() == data
    assert report.size == len(data)
    middle = [n for n, _ in seen if 0 < n < len(data)]
    assert len(middle) >= 2 and middle == sorted(middle)
    assert seen[-1] == (len(data), len(data))
    report = sktftp.put(f"{HOST}:{port}", tmp_path / "got.bin", "back.bin")
    assert report.size == len(data)
    assert (served / "back.bin").read_bytes() == data


def _in_thread(target: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target(*args, **kwargs))
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _ack_number(sock: socket.socket) -> int:
    data, _ = sock.recvfrom(100)
    packet = tftp.decode(data)
    assert isinstance(packet, tftp.Ack), packet
    return packet.block


@pytest.mark.usefixtures("loop")
def test_receiver_answers_a_duplicate_and_waits_for_the_senders_retransmission(
    tmp_path: Path,
) -> None:
    """A scripted server: block 3 comes twice (our loop leaves for the general path, which
    ACKs it again); then the server is silent past the client's timeout, and the client sends
    nothing (once DATA flows only the sender retransmits, RFC 1123 4.2.3.1); the server's
    retransmitted block 4 is ACKed again, and the transfer completes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listen:
        listen.bind((HOST, 0))
        listen.settimeout(20)
        thread, outcome = _in_thread(
            sktftp.get, f"{HOST}:{listen.getsockname()[1]}", "f.bin", tmp_path / "f.bin",
            timeout=0.3,
        )  # fmt: skip
        _request, client = listen.recvfrom(1000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
            tid.bind((HOST, 0))
            tid.settimeout(20)
            blocks = {n: pattern(BLOCK * 7)[(n - 1) * BLOCK : n * BLOCK] for n in range(1, 8)}
            blocks[7] = b"end"
            acks = []
            for n in (1, 2, 3, 3, 4):
                tid.sendto(tftp.encode(tftp.Data(n, blocks[n])), client)
                acks.append(_ack_number(tid))
            tid.settimeout(0.8)  # past the client's timer (0.3 s, then 0.6 s)
            with pytest.raises(TimeoutError):
                tid.recvfrom(100)
            tid.settimeout(20)
            for n in (4, 5, 6, 7):  # block 4 again: the server's retransmission
                tid.sendto(tftp.encode(tftp.Data(n, blocks[n])), client)
                acks.append(_ack_number(tid))
        thread.join(20)
    assert acks == [1, 2, 3, 3, 4, 4, 5, 6, 7]
    assert not isinstance(outcome[0], BaseException), outcome
    assert (tmp_path / "f.bin").read_bytes() == b"".join(blocks[n] for n in range(1, 8))


@pytest.mark.usefixtures("loop")
def test_sender_ignores_a_stale_ack_and_retransmits_after_the_timer(tmp_path: Path) -> None:
    """A scripted client reads from our server: a repeated old ACK gets no DATA (no Sorcerer's
    Apprentice), silence gets the block in flight again after the timeout, and the file
    arrives whole."""
    served = tmp_path / "served"
    served.mkdir()
    data = pattern(6 * BLOCK + 10)
    (served / "f.bin").write_bytes(data)
    srv = sktftp.serve(served, f"{HOST}:0", timeout=0.5)
    server_thread = threading.Thread(target=srv.serve_forever, daemon=True)
    server_thread.start()
    got: list[tuple[int, bytes]] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((HOST, 0))
            peer.settimeout(20)
            port = int(srv.address.rsplit(":", 1)[1])
            peer.sendto(b"\0\1f.bin\0octet\0", (HOST, port))

            def take() -> tuple[int, bytes]:
                raw, tid = peer.recvfrom(1000)
                packet = tftp.decode(raw)
                assert isinstance(packet, tftp.Data), packet
                got.append((packet.block, packet.data))
                return tid

            tid = take()
            for n in (1, 2, 3):
                peer.sendto(tftp.encode(tftp.Ack(n)), tid)
                take()
            peer.sendto(tftp.encode(tftp.Ack(2)), tid)  # stale: must not be answered
            peer.settimeout(0.3)
            with pytest.raises(TimeoutError):
                peer.recvfrom(1000)
            peer.settimeout(20)
            take()  # block 4 again, after the server's timer
            for n in (4, 5, 6):
                peer.sendto(tftp.encode(tftp.Ack(n)), tid)
                take()
            peer.sendto(tftp.encode(tftp.Ack(7)), tid)
    finally:
        srv.close()
        server_thread.join(10)
    assert [n for n, _ in got] == [1, 2, 3, 4, 4, 5, 6, 7]
    assert got[3] == got[4]  # the retransmission is the same DATA
    blocks = dict(got)
    assert b"".join(blocks[n] for n in range(1, 8)) == data


class _FailingFile:
    """A file whose fifth read or write fails (a full disk, an I/O error)."""

    def __init__(self, code: int) -> None:
        self.calls = 0
        self.code = code

    def _count(self) -> None:
        self.calls += 1
        if self.calls == 5:
            raise OSError(self.code, os.strerror(self.code))

    def write(self, data: bytes) -> int:
        self._count()
        return len(data)

    def read(self, size: int = -1) -> bytes:
        self._count()
        return pattern(size if size >= 0 else 100 * BLOCK)[:size]


def _scripted_transfer(tmp_path: Path, opcode: int, local: Any) -> tuple[list[Any], Any]:
    """Our client against a scripted server that moves blocks in lock-step until an ERROR
    comes: returns the packets the client sent (after its request) and its outcome."""
    call = sktftp.get if opcode == 1 else sktftp.put
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listen:
        listen.bind((HOST, 0))
        listen.settimeout(20)
        args = ("f.bin", local) if opcode == 1 else (local, "f.bin")
        thread, outcome = _in_thread(call, f"{HOST}:{listen.getsockname()[1]}", *args, timeout=5)
        _request, client = listen.recvfrom(1000)
        seen: list[Any] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
            tid.bind((HOST, 0))
            tid.settimeout(20)
            if opcode == 2:
                tid.sendto(tftp.encode(tftp.Ack(0)), client)
            for n in range(1, 50):
                if opcode == 1:
                    tid.sendto(tftp.encode(tftp.Data(n, pattern(BLOCK))), client)
                data, _ = tid.recvfrom(1000)
                packet = tftp.decode(data)
                seen.append(packet)
                if isinstance(packet, tftp.Error):
                    break
                if opcode == 2:
                    tid.sendto(tftp.encode(tftp.Ack(n)), client)
        thread.join(20)
    return seen, outcome[0]


@pytest.mark.usefixtures("loop")
def test_a_full_disk_during_a_get_sends_error_3(tmp_path: Path) -> None:
    """The fifth write fails (ENOSPC): the server gets ERROR 3 right after the ACK of that
    block (ACKs go out before the write), and the get raises the disk's error."""
    seen, outcome = _scripted_transfer(tmp_path, 1, _FailingFile(errno.ENOSPC))
    assert seen == [*(tftp.Ack(n) for n in range(1, 6)), tftp.Error(3, "no space left on device")]
    assert isinstance(outcome, OSError) and outcome.errno == errno.ENOSPC


@pytest.mark.usefixtures("loop")
def test_a_read_error_during_a_put_sends_error_0(tmp_path: Path) -> None:
    """The fifth read of the local file fails (EIO): the server gets ERROR 0 with the reason
    instead of the next block, and the put raises the file's error."""
    seen, outcome = _scripted_transfer(tmp_path, 2, _FailingFile(errno.EIO))
    assert [type(p).__name__ for p in seen[:-1]] == ["Data"] * (len(seen) - 1)
    assert seen[-1] == tftp.Error(0, "input/output error")
    assert isinstance(outcome, OSError) and outcome.errno == errno.EIO
