"""Shared helpers for the bench tests: free ports, readiness, running socketkit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import IO, Any

SK = [sys.executable, "-m", "socketkit"]


def free_port() -> int:
    """A TCP and UDP port free right now on 127.0.0.1 (the kernel's choice)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on TCP ``port`` without connecting to it (a connection
    would use up ``iperf3 -s -1``)."""
    want = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name) as fh:
                for line in fh.readlines()[1:]:
                    cols = line.split()
                    if cols[1].endswith(want) and cols[3] == "0A":
                        return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def run_json(argv: list[str], timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    """Run a command that prints one JSON document; (exit status, document, stderr)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError as exc:
        raise AssertionError(f"not JSON: {proc.stdout[:500]!r} / {proc.stderr[-500:]!r}") from exc
    return proc.returncode, doc, proc.stderr


def wait_for_first_interval(stdout: IO[bytes] | None) -> None:
    """Read a running client's output up to its first interval line; fail (not spin until
    pytest's timeout) if the output ends before one."""
    assert stdout is not None
    for line in iter(stdout.readline, b""):
        if b"sec" in line:
            return
    raise AssertionError("the client's output ended before its first interval line")
