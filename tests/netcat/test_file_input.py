"""stdin from a regular file: the memory-map path (MmapPump) sends the bytes from the file's
current offset, leaves the shared offset where a read would, and reports a file that shrinks
under it as one line with exit 9 (never SIGBUS)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from socketkit.netcat.pumps import MmapPump
from socketkit.netcat.relay import MMAP_MIN

from .nctools import SK, finish, started


class _Sink:
    """A loopback TCP server that accepts one client and keeps every byte it sends.
    ``gate`` holds off reading until it is set (so the sender fills its buffers first)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.data = bytearray()
        self.gate = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(30)
        conn, _ = self.listener.accept()
        with conn:
            self.gate.wait(30)
            conn.settimeout(30)
            while chunk := conn.recv(1 << 20):
                self.data += chunk

    def close(self) -> bytes:
        self.gate.set()
        self.thread.join(30)
        self.listener.close()
        return bytes(self.data)


def _connect(port: int, stdin: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SK, "connect", "127.0.0.1", str(port)],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_file_from_an_unaligned_offset_arrives_whole_and_the_offset_advances(
    tmp_path: Path,
) -> None:
    content = os.urandom(3 * MMAP_MIN + 12345)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    offset = 4096 * 3 + 17  # not a page boundary: the map starts below it
    sink = _Sink()
    sink.gate.set()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        with started([*SK, "connect", "127.0.0.1", str(sink.port)], stdin=fd) as proc:
            assert finish(proc) == 0
        got = sink.close()
        assert got == content[offset:]
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(content)  # as cat would leave it
    finally:
        os.close(fd)


def test_a_file_that_shrinks_while_sent_is_one_line_and_exit_9(tmp_path: Path) -> None:
    size = MmapPump.WINDOW  # one window: the shrink lands inside the mapping
    path = tmp_path / "shrinks.bin"
    with path.open("wb") as fh:
        fh.truncate(size)
    sink = _Sink()
    fd = os.open(path, os.O_RDONLY)
    try:
        proc = _connect(sink.port, fd)
        try:
            # The sink does not read yet: the sender stops after its socket buffers fill,
            # a few MiB into the 32 MiB window.
            time.sleep(1.0)
            assert proc.poll() is None
            os.truncate(path, 0)
            sink.close()
            assert finish(proc) == 9
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert err.count("\n") == 1, err
        assert "shrank while it was being sent" in err
        assert "Traceback" not in err
    finally:
        os.close(fd)
