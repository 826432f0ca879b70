"""socketkit bench vs iperf3 on loopback, side by side in one run (median ratios).

Every round runs a fresh server process and a client process, like a user would:
  * TCP, 1 stream, 10 s: socketkit client+server vs iperf3 client+server  (target >= 1.1x)
  * mixed pairs: socketkit client -> iperf3 server, iperf3 client -> socketkit server,
    each vs iperf3 <-> iperf3                                               (target >= 1.0x)
  * TCP -P 2 and -R                                                          (target >= 1.0x)
  * UDP -b 0 -l 1400, datagrams received per second, plain sends            (target >= 1.0x)
  * the same with UDP GSO on the sender and GRO on the receiver             (target >= 5x)

    python3 benchmarks/bench_iperf3.py [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import interleave, report

HERE = Path(__file__).parent
ENV = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}
SK = [sys.executable, "-m", "socketkit", "bench"]
IPERF3 = shutil.which("iperf3") or "iperf3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int) -> None:
    want = f":{port:04X}"
    for _ in range(400):
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name) as fh:
                if any(
                    line.split()[1].endswith(want) and line.split()[3] == "0A"
                    for line in fh.readlines()[1:]
                ):
                    return
        time.sleep(0.025)
    raise SystemExit(f"no server on port {port}")


def one_run(server: str, client: str, args: list[str]) -> dict[str, Any]:
    """One test with a fresh server; the client's JSON document."""
    port = free_port()
    if server == "sk":
        srv_argv = [*SK, "server", "-p", str(port), "-1"]
    else:
        srv_argv = [IPERF3, "-s", "-1", "-p", str(port)]
    srv = subprocess.Popen(srv_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_listening(port)
        if client == "sk":
            argv = [*SK, "client", "127.0.0.1", "-p", str(port), "-J", "-i", "0", *args]
        else:
            argv = [IPERF3, "-c", "127.0.0.1", "-p", str(port), "-J", "-i", "0", *args]
        out = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {out.stderr or out.stdout[-500:]}")
        return json.loads(out.stdout)  # type: ignore[no-any-return]
    finally:
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def gbits(doc: dict[str, Any]) -> float:
    return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9


def kdgrams(doc: dict[str, Any]) -> float:
    """Thousands of datagrams received per second (sender's count minus the lost)."""
    s = doc["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3


def compare(
    name: str,
    ours: tuple[str, str, list[str]],
    anchor: tuple[str, str, list[str]],
    *,
    rounds: int,
    target: float,
    metric: str = "gbits",
    note: str = "",
) -> None:
    measure = gbits if metric == "gbits" else kdgrams
    unit = "Gbit/s" if metric == "gbits" else "k datagrams/s"
    a, b, ratios = interleave(
        lambda: measure(one_run(*ours)), lambda: measure(one_run(*anchor)), rounds
    )
    label = {"sk": "socketkit", "ip": "iperf3"}
    report(
        name,
        ours=f"{label[ours[1]]} client -> {label[ours[0]]} server {' '.join(ours[2])}".strip(),
        anchor=f"iperf3 client -> iperf3 server {' '.join(anchor[2])}".strip(),
        ours_samples=a,
        anchor_samples=b,
        ratios=ratios,
        target=target,
        unit=unit,
        note=note,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the short tests")
    args = parser.parse_args()
    long_t, short_t, rounds = "10", str(args.seconds), args.rounds
    if args.quick:
        long_t, short_t, rounds = "1", "1", 1
    tcp1 = ["-t", long_t]
    short = ["-t", short_t]
    compare("bench TCP 1 stream", ("sk", "sk", tcp1), ("ip", "ip", tcp1), rounds=rounds,
            target=1.1)  # fmt: skip
    compare("bench TCP mixed: socketkit client -> iperf3 server", ("ip", "sk", short),
            ("ip", "ip", short), rounds=rounds, target=1.0)  # fmt: skip
    compare("bench TCP mixed: iperf3 client -> socketkit server", ("sk", "ip", short),
            ("ip", "ip", short), rounds=rounds, target=1.0)  # fmt: skip
    p2 = [*short, "-P", "2"]
    compare("bench TCP -P 2", ("sk", "sk", p2), ("ip", "ip", p2), rounds=rounds, target=1.0)
    rev = [*short, "-R"]
    compare("bench TCP -R", ("sk", "sk", rev), ("ip", "ip", rev), rounds=rounds, target=1.0)
    udp = [*short, "-u", "-b", "0", "-l", "1400"]
    compare("bench UDP -b 0 -l 1400, plain", ("sk", "sk", [*udp, "--no-gso"]),
            ("ip", "ip", udp), rounds=rounds, target=1.0, metric="dgrams",
            note="datagrams received per second; no GSO: ordinary datagrams, 64 per "
            "sendmmsg/recvmmsg call (ctypes), and an 8 MiB receive queue (iperf3 keeps "
            "the default)")  # fmt: skip
    compare("bench UDP -b 0 -l 1400, GSO/GRO", ("sk", "sk", [*udp, "--gso"]),
            ("ip", "ip", udp), rounds=rounds, target=5.0, metric="dgrams",
            note="UDP_SEGMENT on the sender, UDP_GRO on the receiver")  # fmt: skip


if __name__ == "__main__":
    main()
