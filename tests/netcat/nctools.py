"""Helpers for the netcat interop tests: run socketkit and the real peers, wait for sockets,
collect output, always stop by PID."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from support.procs import stop

SK = [sys.executable, "-m", "socketkit"]
LOOP = {4: "127.0.0.1", 6: "::1"}


def free_port(proto: str = "tcp", family: int = 4) -> int:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    fam = socket.AF_INET6 if family == 6 else socket.AF_INET
    with socket.socket(fam, kind) as sock:
        sock.bind((LOOP[family], 0))
        return int(sock.getsockname()[1])


def _bound_ports(proto: str) -> set[int]:
    ports: set[int] = set()
    for name in (proto, proto + "6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            state = fields[3]
            if proto == "udp" or state == "0A":  # 0A = LISTEN
                ports.add(port)
    return ports


def wait_bound(port: int | str, proto: str = "tcp", timeout: float = 10.0) -> None:
    """Wait until something listens on ``port`` (or the Unix socket path exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(port, str):
            if os.path.exists(port):
                return
        elif port in _bound_ports(proto):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing bound {proto} {port} within {timeout} s")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def started(argv: Sequence[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """Popen that is always stopped (by PID) and reaped."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(list(argv), **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        stop(proc)


def finish(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """Wait for ``proc`` to exit by itself; fail (and stop it) if it does not in time."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(f"{proc.args!r} did not exit within {timeout} s") from None


class Collector:
    """Read a pipe in a thread; ``wait_for(n)`` until n bytes arrived."""

    def __init__(self, pipe: object) -> None:
        self.pipe = pipe
        self.data = bytearray()
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd = self.pipe.fileno()  # type: ignore[attr-defined]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.done = True
                    self.cond.notify_all()
                    return
                self.data += chunk
                self.cond.notify_all()

    def wait_for(self, size: int, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.data) < size and not self.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return bytes(self.data)

    def wait_line_count(self, count: int, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.data.count(b"\n") < count and not self.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return bytes(self.data)


def json_events(collector: Collector, name: str) -> list[dict[str, object]]:
    """The ``--json`` events called ``name`` that ``collector`` has read so far."""
    out = []
    for line in bytes(collector.data).decode(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["event"] == name:
                out.append(record)
    return out


def run_sk(*args: str, stdin: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``socketkit ARGS`` to the end, output decoded."""
    proc = subprocess.run([*SK, *args], input=stdin, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def one_line(stderr: str) -> str:
    """The one error line of ``stderr`` (and no traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in stderr
    return lines[0]


def write_pki(base: Path) -> dict[str, Path]:
    """A test CA and a certificate for localhost, 127.0.0.1 and ::1 under ``base``: paths
    ``ca`` (the CA's certificate), ``chain`` (certificate and CA) and ``key``."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    paths = {"ca": base / "ca.pem", "chain": base / "chain.pem", "key": base / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    with paths["chain"].open("wb") as fh:
        for blob in cert.cert_chain_pems:
            fh.write(blob.bytes())
    return paths
