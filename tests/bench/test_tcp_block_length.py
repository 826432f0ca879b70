"""-l for TCP: the sender writes blocks of exactly -l bytes, as iperf3 does (strace shows the
send calls); without -l, the default 128 KiB blocks go 8 per call (1 MiB), the fast path."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, wait_listening

SENDTO = re.compile(r"sendto\(\d+, .*?, (\d+), 0, NULL, 0\)\s+= (-?\d+)")


@pytest.fixture
def iperf3_port() -> Iterator[int]:
    port = free_port()
    with running([require_tool("iperf3"), "-s", "-p", str(port)], stdout=subprocess.DEVNULL):
        wait_listening(port)
        yield port


def _send_sizes(tmp_path: Path, port: int, *args: str) -> tuple[list[int], str]:
    """The lengths of the client's sendto calls larger than a control message, and stdout."""
    trace = tmp_path / "trace"
    proc = subprocess.run(
        [
            require_tool("strace"),
            "-f",
            "-qq",
            "-e",
            "trace=sendto",
            "-e",
            "abbrev=all",
            "-s",
            "0",
            "-o",
            str(trace),
            *SK,
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            str(port),
            "-i",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    sizes = [int(m.group(1)) for m in SENDTO.finditer(trace.read_text())]
    return sizes, proc.stdout


@pytest.mark.parametrize(("arg", "block"), [("1", 1), ("1K", 1024), ("8000", 8000)])
def test_length_sets_the_size_of_every_send(
    tmp_path: Path, iperf3_port: int, arg: str, block: int
) -> None:
    sizes, _ = _send_sizes(tmp_path, iperf3_port, "-t", "0.5", "-l", arg)
    data = [n for n in sizes if n == block]
    assert len(data) > 100, sizes[:50]
    # Control messages are a few bytes or a JSON document; no data send exceeds -l.
    big = [n for n in sizes if n > max(block, 4096)]
    assert big == [], big[:10]


def test_default_length_keeps_the_fast_path(tmp_path: Path, iperf3_port: int) -> None:
    sizes, _ = _send_sizes(tmp_path, iperf3_port, "-t", "0.5")
    assert 1024 * 1024 in sizes, sorted(set(sizes))[-5:]
    assert max(sizes) == 1024 * 1024


def test_help_says_what_the_default_tcp_block_is() -> None:
    out = subprocess.run(
        [*SK, "bench", "client", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    flat = " ".join(out.split())
    assert "one send call per block of exactly LEN" in flat, flat
    assert "TCP 128K blocks, 8 per send call" in flat, flat


def test_server_sends_exact_blocks_for_reverse(tmp_path: Path) -> None:
    """-R -l 1K against a socketkit server: the server's send calls are 1 KiB each."""
    port = free_port()
    trace = tmp_path / "trace"
    server = [
        require_tool("strace"),
        "-f",
        "-qq",
        "-e",
        "trace=sendto",
        "-s",
        "0",
        "-o",
        str(trace),
        *SK,
        "bench",
        "server",
        "-1",
        "-B",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with running(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        wait_listening(port, timeout=30)
        client = subprocess.run(
            [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-R", "-l", "1K", "-t", "0.5"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert client.returncode == 0, client.stderr
        proc.wait(30)
    sizes = [int(m.group(1)) for m in SENDTO.finditer(trace.read_text())]
    assert len([n for n in sizes if n == 1024]) > 100, sizes[:50]
    assert [n for n in sizes if n > 4096] == [], sorted(set(sizes))[-5:]
