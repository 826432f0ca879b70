"""TFTP on loopback: ``socketkit tftp get`` from ``socketkit tftp serve``, side by side with
tftp-hpa's client fetching from tftpd-hpa (in.tftpd), interleaved, as ratios.

Usage: python3 benchmarks/bench_tftp.py [--quick] [--size-mib 100] [--rounds 5]

Three setups fetch the same file of random bytes (``$TMPDIR/socketkit-bench/``), each round
in a rotated order:

  anchor   tftp-hpa client  <- tftpd-hpa server, blksize 512 (tftp-hpa's client cannot ask
           for another block size), lock-step (neither speaks windowsize)
  ours     socketkit client <- socketkit server, blksize 512, lock-step (the same protocol)
  window   socketkit client <- socketkit server, blksize 512, windowsize 16 (RFC 7440)

Both servers run for the whole benchmark; a run is timed from the client's start to its exit
(the client's process start-up included: Python's is part of socketkit's cost). Socket
buffers are the kernel's defaults on every side (socketkit only grows its receive queue for
a window: 2 x 16 x (512 + 1024) bytes, under the default). CPU seconds per side are measured
per run: the client from wait4, the server from /proc/PID/stat (tftpd-hpa forks a child per
transfer: its CPU is sampled from /proc every 10 ms while it runs). The received file's sha256 is
checked after every run.

Targets (issue 11): ours >= 1.0 x anchor; window >= 3 x anchor.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report

SK = [sys.executable, "-m", "socketkit"]
TFTPD_HPA = "/opt/socketkit-peers/tftpd-hpa/usr/sbin/in.tftpd"
TFTP_HPA = "tftp"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def data_file(size_mib: int) -> Path:
    folder = Path(tempfile.gettempdir()) / "socketkit-bench" / "tftp"
    folder.mkdir(parents=True, exist_ok=True)
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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def udp_bound(port: int) -> bool:
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            if int(line.split()[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (children reaped so far included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS


class Server:
    def __init__(self, argv: list[str], port: int) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = port
        deadline = time.monotonic() + 20
        while not udp_bound(port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} did not bind UDP port {port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


class ChildCpu:
    """CPU seconds of the server's transfer children (tftpd-hpa forks one per transfer and
    reaps it without its times reaching the parent's cutime): sampled every 10 ms while the
    client runs, the last sample of each child kept."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.01):
            for child in children(self.pid):
                try:
                    self.seen[child] = cpu_seconds(child)
                except (OSError, ValueError):
                    pass

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return sum(self.seen.values())


def timed(argv: list[str], cwd: Path, server: Server) -> tuple[float, float, float]:
    """(seconds, client CPU seconds, server CPU seconds) of one client run."""
    before = cpu_seconds(server.proc.pid)
    forked = ChildCpu(server.proc.pid)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watchdog = threading.Timer(600, proc.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    elapsed = time.perf_counter() - start
    time.sleep(0.05)  # the server's last packets (a forked child's end)
    child_cpu = forked.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {err.strip()}")
    server_cpu = cpu_seconds(server.proc.pid) - before + child_cpu
    return elapsed, usage.ru_utime + usage.ru_stime, server_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 MiB, 3 rounds (smoke run)")
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = 20 if args.quick else args.size_mib
    rounds = 3 if args.quick else args.rounds
    source = data_file(size)
    digest = sha256(source)
    work = Path(tempfile.mkdtemp(prefix="bench-tftp-"))
    served = source.parent
    hpa_port, sk_port = free_udp_port(), free_udp_port()
    hpa = Server(
        [TFTPD_HPA, "-L", "-s", "-u", "root", "-a", f"127.0.0.1:{hpa_port}", str(served)],
        hpa_port,
    )
    ours = Server(
        [*SK, "tftp", "serve", str(served), "-p", str(sk_port), "--bind", "127.0.0.1"], sk_port
    )
    out = work / "got.bin"
    setups = {
        "anchor": (
            [TFTP_HPA, "-m", "binary", "127.0.0.1", str(hpa_port), "-c", "get", source.name,
             str(out)],
            hpa,
        ),
        "ours": (
            [*SK, "tftp", "get", f"127.0.0.1:{sk_port}", source.name, "-o", str(out)],
            ours,
        ),
        "window": (
            [*SK, "tftp", "get", f"127.0.0.1:{sk_port}", source.name, "-o", str(out),
             "--windowsize", "16"],
            ours,
        ),
    }  # fmt: skip
    names = list(setups)
    rates: dict[str, list[float]] = {name: [] for name in names}
    client_cpu: dict[str, list[float]] = {name: [] for name in names}
    server_cpu: dict[str, list[float]] = {name: [] for name in names}
    rmem = Path("/proc/sys/net/core/rmem_default").read_text().strip()
    wmem = Path("/proc/sys/net/core/wmem_default").read_text().strip()
    print(f"file: {size} MiB of random bytes; loopback; SO_RCVBUF {rmem}, SO_SNDBUF {wmem}")
    for name, (argv, _server) in setups.items():
        print(f"  {name:<7} {' '.join(argv)}")
    try:
        for index in range(rounds):
            order = names[index % 3 :] + names[: index % 3]
            for name in order:
                argv, server = setups[name]
                out.unlink(missing_ok=True)
                seconds, ccpu, scpu = timed(argv, work, server)
                if sha256(out) != digest:
                    raise RuntimeError(f"{name}: the received file differs")
                rates[name].append(size / seconds)
                client_cpu[name].append(ccpu)
                server_cpu[name].append(scpu)
                print(
                    f"round {index + 1} {name:<7} {size / seconds:7.1f} MiB/s  "
                    f"client CPU {ccpu:5.2f} s  server CPU {scpu:5.2f} s",
                    flush=True,
                )
    finally:
        hpa.stop()
        ours.stop()
        out.unlink(missing_ok=True)
        work.rmdir()
    for name in names:
        print(
            f"{name:<7} median {statistics.median(rates[name]):7.1f} MiB/s, CPU per run: client "
            f"{statistics.median(client_cpu[name]):.2f} s, server "
            f"{statistics.median(server_cpu[name]):.2f} s"
        )
    for name, target, what in (
        ("ours", 1.0, "blksize 512, lock-step"),
        ("window", 3.0, "blksize 512, windowsize 16"),
    ):
        ratios = [x / y for x, y in zip(rates[name], rates["anchor"], strict=True)]
        report(
            f"TFTP get {size} MiB over loopback, socketkit {what} vs tftp-hpa pair",
            ours=f"socketkit tftp get/serve ({what})",
            anchor="tftp-hpa client + tftpd-hpa (blksize 512, lock-step)",
            ours_samples=rates[name],
            anchor_samples=rates["anchor"],
            ratios=ratios,
            target=target,
            unit="MiB/s",
            note=f"CPU per run (client/server): ours {statistics.median(client_cpu[name]):.2f}/"
            f"{statistics.median(server_cpu[name]):.2f} s, tftp-hpa "
            f"{statistics.median(client_cpu['anchor']):.2f}/"
            f"{statistics.median(server_cpu['anchor']):.2f} s",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
