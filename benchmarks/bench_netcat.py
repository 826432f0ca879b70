"""A pipe over loopback: ``socketkit listen > /dev/null`` fed by ``socketkit connect < FILE``,
side by side with netcat-openbsd and ncat doing the same, interleaved, as ratios.

Usage: python3 benchmarks/bench_netcat.py [--quick] [--size-mib 4096] [--rounds 3]

The data is a file of random bytes made once (``$TMPDIR/socketkit-bench/random-<N>MiB.bin``)
and kept in the page cache by a warm-up read. One run is: start the listener (its stdout
/dev/null), wait until it listens, start the client with stdin from the file, and time from
the client's start until *both* processes have exited. Process start-up is included for every
tool (socketkit's Python start-up is part of its cost). Rates are Gbit/s of payload.

Targets (issue 3): >= 1.0x netcat-openbsd, >= 2.0x ncat.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import interleave, report

SK = [sys.executable, "-m", "socketkit"]


def data_file(size_mib: int) -> Path:
    folder = Path(tempfile.gettempdir()) / "socketkit-bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"random-{size_mib}MiB.bin"
    if not path.exists() or path.stat().st_size != size_mib << 20:
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            for _ in range(size_mib):
                fh.write(os.urandom(1 << 20))
        tmp.rename(path)
    with path.open("rb") as fh:  # warm the page cache
        while fh.read(16 << 20):
            pass
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


def one_run(server: list[str], client: list[str], path: Path) -> float:
    """Seconds from the client's start until both have exited."""
    with (
        open(os.devnull, "wb") as null,
        path.open("rb") as source,
        subprocess.Popen(server, stdin=subprocess.PIPE, stdout=null) as srv,
    ):
        deadline = time.monotonic() + 10
        port = int(server[-1])
        while not listening(port):
            if time.monotonic() > deadline or srv.poll() is not None:
                raise RuntimeError(f"{server[0]} did not start listening")
            time.sleep(0.005)
        start = time.perf_counter()
        cli = subprocess.Popen(client, stdin=source, stdout=null)
        # Blocking waits, so the clock stops when the process exits: Popen.wait(timeout)
        # polls with sleeps of up to 50 ms, which is 3 % of a 1.5 s run. A timer bounds them.
        watchdog = threading.Timer(300, _kill, (cli, srv))
        watchdog.start()
        try:
            cli.wait()
            srv.wait()
        finally:
            watchdog.cancel()
            _kill(cli, srv)
        elapsed = time.perf_counter() - start
        if cli.returncode != 0 or srv.returncode != 0:
            raise RuntimeError(f"{client[0]}: exit {cli.returncode}/{srv.returncode}")
        assert srv.stdin is not None
        srv.stdin.close()
    return elapsed


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def runner(tool: str, path: Path) -> Callable[[], float]:
    size_bits = path.stat().st_size * 8

    def run() -> float:
        port = str(free_port())
        if tool == "socketkit":
            server = [*SK, "listen", "127.0.0.1", port]
            client = [*SK, "connect", "127.0.0.1", port]
        elif tool == "nc.openbsd":
            server = ["nc.openbsd", "-l", "127.0.0.1", port]
            client = ["nc.openbsd", "-N", "127.0.0.1", port]
        else:  # ncat: the listener's stdin stays open (ncat 7.93 quits at its stdin's EOF)
            server = ["ncat", "-l", "127.0.0.1", port]
            client = ["ncat", "127.0.0.1", port]
        return size_bits / one_run(server, client, path) / 1e9

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB, 3 rounds (smoke run)")
    parser.add_argument("--size-mib", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = 256 if args.quick else args.size_mib
    rounds = 3 if args.quick else args.rounds
    path = data_file(size)
    ours = runner("socketkit", path)
    for anchor, target in (("nc.openbsd", 1.0), ("ncat", 2.0)):
        a, b, ratios = interleave(ours, runner(anchor, path), rounds)
        report(
            f"netcat pipe {size} MiB over loopback, vs {anchor}",
            ours="socketkit listen/connect",
            anchor=f"{anchor} listen/connect",
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=target,
            unit="Gbit/s",
            note="wall time from client start to both exits; file in page cache; stdout /dev/null",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
