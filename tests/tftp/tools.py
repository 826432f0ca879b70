"""Helpers of the TFTP tests: ``socketkit tftp`` as a subprocess, files with known digests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.procs import stop

SK = [sys.executable, "-m", "socketkit"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_file(path: Path, size: int, seed: int = 0) -> Path:
    """``size`` pseudo-random bytes (deterministic per seed, fast for 100 MiB)."""
    block = hashlib.sha512(str(seed).encode()).digest() * 16384  # 1 MiB
    with path.open("wb") as fh:
        left = size
        counter = 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            # vary each MiB so a repeated or missing MiB changes the digest
            fh.write(counter.to_bytes(8, "big") + chunk[8:] if len(chunk) > 8 else chunk)
            left -= len(chunk)
            counter += 1
    return path


def run_sk(
    *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SK, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in stderr
    return lines[0]


class Events:
    """The ``--json`` lines of a process's stderr, read in a thread."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[dict[str, Any]] = []
        self.other: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for raw in pipe:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                if line.startswith("{"):
                    self.lines.append(json.loads(line))
                else:
                    self.other.append(line)
                self._cond.notify_all()

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.lines if e["event"] == name]

    def wait(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([e for e in self.lines if e["event"] == name]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no {count} {name!r} events in {timeout} s: {self.lines} {self.other}"
                    )
                self._cond.wait(left)
            return [e for e in self.lines if e["event"] == name]


@contextlib.contextmanager
def sk_server(
    directory: Path, *args: str, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()
) -> Iterator[tuple[int, Events, subprocess.Popen[bytes]]]:
    """``socketkit tftp serve DIR --json -p 0 --bind HOST ARGS``: yields (port, events, proc)."""
    proc = subprocess.Popen(
        [*prefix, *SK, "tftp", "serve", str(directory), "-p", "0", "--bind", host, "--json", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        events = Events(proc.stderr)
        listening = events.wait("listening", timeout=30)[0]
        port = int(str(listening["address"]).rsplit(":", 1)[1])
        yield port, events, proc
    finally:
        stop(proc)


class Running:
    """A library ``tftp.serve`` running in the test, and the events it reported."""

    def __init__(self, srv: Any, events: list[tuple[str, dict[str, Any]]]):
        self.server = srv
        self.events = events
        self.port = int(srv.address.rsplit(":", 1)[1])

    def wait(self, name: str, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [f for n, f in list(self.events) if n == name]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no {count} {name!r} events: {self.events}")
