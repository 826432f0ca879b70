"""TFTP peers from Debian for interop tests: tftp-hpa's client and server, atftp and atftpd.

Servers run in the foreground on a loopback port (or in a namespace, via ``prefix``), as root
(``-u root``/``--user root``: the served directory is a pytest tmp_path), and are stopped by
PID when the ``with`` block ends, also on failure.

tftpd-hpa conflicts with atftpd as a Debian package, so its server is unpacked (scripts/test)
at :data:`TFTPD_HPA`; /usr/sbin/in.tftpd is atftpd's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .procs import stop

TFTPD_HPA = "/opt/socketkit-peers/tftpd-hpa/usr/sbin/in.tftpd"
ATFTPD = "/usr/sbin/atftpd"
TFTP_HPA = "/usr/bin/tftp"
ATFTP = "/usr/bin/atftp"


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_bound(port: int, proc: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    """Until something has the UDP port bound (ss -uln), or the process died."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            out = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the TFTP server exited with {proc.returncode}: {out.strip()}")
        listing = subprocess.run(
            ["ss", "-Huln", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
        if listing.strip():
            return
        time.sleep(0.02)
    raise RuntimeError(f"the TFTP server did not bind UDP port {port} in {deadline} s")


@contextlib.contextmanager
def tftpd_hpa(
    directory: Path, *, host: str = "127.0.0.1", create: bool = False, max_blksize: int = 65464
) -> Iterator[int]:
    """tftp-hpa's server on ``host``: yields the port."""
    port = free_udp_port(host)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = [TFTPD_HPA, "-L", "-s", "-u", "root", "-a", addr, "-B", str(max_blksize)]
    if create:
        argv.append("-c")
    argv.append(str(directory))
    with _server(argv, port) as p:
        yield p


@contextlib.contextmanager
def atftpd(directory: Path, *, host: str = "127.0.0.1") -> Iterator[int]:
    """atftpd in the foreground on ``host``: yields the port."""
    port = free_udp_port(host)
    argv = [
        ATFTPD, "--daemon", "--no-fork", "--port", str(port), "--bind-address", host,
        "--user", "root", "--group", "root", "--logfile", "/dev/null", "--no-multicast",
        str(directory),
    ]  # fmt: skip
    with _server(argv, port) as p:
        yield p


@contextlib.contextmanager
def _server(argv: Sequence[str], port: int) -> Iterator[int]:
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_bound(port, proc)
        yield port
    finally:
        stop(proc)


def tftp_hpa(
    host: str, port: int, command: str, *, cwd: Path, mode: str = "binary", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """tftp-hpa's client: ``command`` is e.g. ``get REMOTE LOCAL`` or ``put LOCAL REMOTE``."""
    argv = [TFTP_HPA, "-m", mode, host, str(port), "-c", *command.split()]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def atftp(
    host: str,
    port: int,
    action: str,
    local: str,
    remote: str,
    *,
    cwd: Path,
    options: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """atftp's client: ``action`` "get" or "put"; ``options`` like ``["blksize 1428"]``."""
    argv = [ATFTP, f"--{action}", "-l", local, "-r", remote]
    for option in options:
        argv += ["--option", option]
    argv += [host, str(port)]
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )
