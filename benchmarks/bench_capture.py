"""Capture to file at an offered 400 k datagrams/s: socketkit sniff -w vs tcpdump -w.

Usage: python3 benchmarks/bench_capture.py [--quick] [--rate 400000] [--seconds 2] [--rounds 3]

Needs root (a network namespace). Inside a fresh namespace whose ``lo`` has
``tx-udp-segmentation`` off (so every GSO segment is captured on its own), a Python UDP GSO
sender (pinned to CPU 1) offers 64-byte frames at ``--rate`` for ``--seconds``; the capturer
(pinned to CPU 0) writes ``udp port P`` to a pcap. Both capturers get the same 32 MiB ring
(tcpdump -B 32768) and the default snap length. Per run we record:

* fraction kept: packets in the file / datagrams the sender sent (target >= 95 %),
* kernel drops as the tool reports them ("N dropped by kernel"),
* CPU per packet: the capturer's utime+stime (/proc/PID/stat) from the moment it listens to
  the moment the sender has finished and the last block was handed over, / packets kept.

Runs alternate socketkit and tcpdump (harness.interleave); the verdict lines are ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import report
from support.netlab import Lab

PORT = 9400
TICK = os.sysconf("SC_CLK_TCK")

SENDER = r"""
import socket, sys, time
rate, seconds, port = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
seg = 22                      # 14 + 20 + 8 + 22 = 64-byte frames
per_send = 64                 # segments per GSO send
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", port))  # a sink that never reads: no ICMP port unreachable storm
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_UDP, 103, seg)  # UDP_SEGMENT
s.connect(("127.0.0.1", port))
buf = bytes(seg * per_send)
sent = 0
start = time.monotonic()
end = start + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * rate)
    if sent + per_send <= due:
        try:
            s.send(buf)
            sent += per_send
        except OSError:
            pass
    else:
        time.sleep(0.0002)
print(sent, time.monotonic() - start)
"""


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _count_pcap(path: Path) -> int:
    data = path.read_bytes()
    if len(data) < 24:
        return 0
    magic = struct.unpack_from("<I", data)[0]
    fmt = "<IIII" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">IIII"
    off, n = 24, 0
    while off + 16 <= len(data):
        caplen = struct.unpack_from(fmt, data, off)[2]
        if off + 16 + caplen > len(data):
            break
        off += 16 + caplen
        n += 1
    return n


def _one_run(ns: str, tool: str, rate: float, seconds: float, workdir: Path) -> dict[str, float]:
    out = workdir / f"{tool}.pcap"
    if out.exists():
        out.unlink()
    if tool == "socketkit":
        argv = [sys.executable, "-m", "socketkit", "sniff", "-i", "lo", "-w", str(out),
                f"udp port {PORT}"]  # fmt: skip
    else:
        argv = ["tcpdump", "-i", "lo", "-B", "32768", "-w", str(out), f"udp port {PORT}"]
    cap = subprocess.Popen(
        ["ip", "netns", "exec", ns, "taskset", "-c", "0", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert cap.stderr is not None
        line = cap.stderr.readline().decode()
        if "listening" not in line:
            raise RuntimeError(f"{tool} did not start: {line}")
        time.sleep(0.3)
        cpu0 = _cpu_ticks(cap.pid)
        sender = subprocess.run(
            ["ip", "netns", "exec", ns, "taskset", "-c", "1", sys.executable, "-c", SENDER,
             str(rate), str(seconds), str(PORT)],
            capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
        sent_s, took_s = sender.stdout.split()
        time.sleep(1.5)  # both hand over their last ring block (tcpdump's timeout is 1 s)
        cpu1 = _cpu_ticks(cap.pid)
        cap.send_signal(signal.SIGINT)
        _o, err_b = cap.communicate(timeout=60)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    err = err_b.decode()
    drops = re.search(r"(\d+) (?:packets )?dropped by kernel", err)
    kept = _count_pcap(out)
    sent = int(sent_s)
    return {
        "sent": sent,
        "offered": sent / float(took_s),
        "kept": kept,
        "fraction": kept / sent if sent else 0.0,
        "drops": float(drops.group(1)) if drops else float("nan"),
        "cpu_us": (cpu1 - cpu0) / TICK * 1e6 / kept if kept else float("inf"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rate", type=float, default=400_000.0)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_capture needs root (network namespace, packet sockets)", file=sys.stderr)
        return 2
    seconds = 0.5 if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    runs: dict[str, list[dict[str, float]]] = {"socketkit": [], "tcpdump": []}
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o777)  # tcpdump drops to its own user before writing
        host = lab.host("cap")
        host.run(["ethtool", "-K", "lo", "tx-udp-segmentation", "off"])
        for index in range(rounds):
            order = ("socketkit", "tcpdump") if index % 2 == 0 else ("tcpdump", "socketkit")
            for tool in order:
                result = _one_run(host.name, tool, args.rate, seconds, workdir)
                runs[tool].append(result)
                print(
                    f"  {tool:9s} offered {result['offered'] / 1e3:6.0f} k/s  kept "
                    f"{result['fraction'] * 100:6.2f} %  kernel drops {result['drops']:.0f}  "
                    f"CPU {result['cpu_us']:.2f} us/packet",
                    flush=True,
                )
    ours, anchor = runs["socketkit"], runs["tcpdump"]
    kept_o = [r["fraction"] * 100 for r in ours]
    kept_a = [r["fraction"] * 100 for r in anchor]
    cpu_o = [r["cpu_us"] for r in ours]
    cpu_a = [r["cpu_us"] for r in anchor]
    offered = statistics.median(r["offered"] for r in ours + anchor)
    note = (
        f"offered {offered / 1e3:.0f} k datagrams/s; socketkit kept median "
        f"{statistics.median(kept_o):.2f} % (target >= 95 %), kernel drops "
        f"{[int(r['drops']) for r in ours]}, CPU {statistics.median(cpu_o):.2f} us/packet "
        f"(target <= 2); tcpdump kept {statistics.median(kept_a):.2f} %, drops "
        f"{[int(r['drops']) for r in anchor]}, CPU {statistics.median(cpu_a):.2f} us/packet"
    )
    report(
        "capture to file @400k/s: fraction kept (socketkit/tcpdump)",
        ours="socketkit sniff -w",
        anchor="tcpdump -w",
        ours_samples=kept_o,
        anchor_samples=kept_a,
        ratios=[o / a if a else float("inf") for o, a in zip(kept_o, kept_a, strict=True)],
        target=0.95,
        unit="% kept",
        note=note,
    )
    report(
        "capture to file @400k/s: CPU per packet (tcpdump us / socketkit us, higher is better)",
        ours="socketkit sniff -w",
        anchor="tcpdump -w",
        ours_samples=cpu_o,
        anchor_samples=cpu_a,
        ratios=[a / o if o else 0.0 for o, a in zip(cpu_o, cpu_a, strict=True)],
        target=None,
        unit="us CPU/packet",
        note=note,
    )
    kept_ok = statistics.median(kept_o) >= 95.0
    cpu_ok = statistics.median(cpu_o) <= 2.0
    print(
        f"ABSOLUTE socketkit kept {statistics.median(kept_o):.2f} % "
        f"({'PASS' if kept_ok else 'BELOW TARGET'} >= 95 %), CPU "
        f"{statistics.median(cpu_o):.2f} us/packet ({'PASS' if cpu_ok else 'ABOVE TARGET'} <= 2)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
