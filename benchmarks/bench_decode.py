"""Decode + tcpdump-style summary of a 1,000,000-packet loopback capture, side by side.

Setup (not runtime dependencies): ``pip install -e .[bench]`` (scapy, dpkt); tcpdump and
root for the capture (ping -f, tcpdump -i lo).

The capture is REAL traffic, not synthesised: ``tcpdump -i lo -s 128 -c 1000000 -w`` while
this script generates TCP (IPv4 + IPv6, small NODELAY writes), UDP (IPv4 + IPv6) and ICMP
echo (``ping -f``, IPv4 + IPv6) on loopback. It is kept in benchmarks/_build/ and reused.

Comparisons (interleaved rounds, median of per-round ratios; rates in packets/s):
  * socketkit ``open_capture_file`` + ``summary`` vs scapy ``PcapReader`` + ``summary()``
    (scapy on the first 3,000 packets: it is slow; rates compared)        target >= 100x
  * vs dpkt ``Reader`` + Ethernet/IP objects + the same kind of line       target >= 5x
  * vs a hand-written ``struct.unpack_from`` decoder in this file that produces the SAME
    line (checked line by line before timing)                              target >= 1.0x
  * whole process: ``python -c <read + summary + print>`` vs ``tcpdump -nn -r`` to /dev/null,
    default environment (target >= 1.0x) and with TZ=UTC (reported).

Usage: python benchmarks/bench_decode.py [--quick] [--packets N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import interleave, report

BUILD = Path(__file__).resolve().parent / "_build"


# --- making the capture -------------------------------------------------------------------


def _udp(family: int, host: str, count: int) -> None:
    rx = socket.socket(family, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    rx.setblocking(False)
    tx = socket.socket(family, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname()[:2])
    sizes = (18, 64, 200, 512, 1000)
    payloads = [bytes(size) for size in sizes]
    for index in range(count):
        try:
            tx.send(payloads[index % 5])
        except OSError:
            pass
        if index % 64 == 0:
            try:
                while True:
                    rx.recv(2048)
            except BlockingIOError:
                pass
    tx.close()
    rx.close()


def _tcp(family: int, host: str, count: int) -> None:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(1)

    def drain() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    client = socket.create_connection(listener.getsockname()[:2])
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    chunk = b"x" * 90
    for index in range(count):
        client.send(chunk if index % 7 else chunk * 10)
        if index % 16 == 0:
            time.sleep(0)  # let the reader run so segments go out one by one
    client.close()
    reader.join(10)
    listener.close()


def make_capture(path: Path, packets: int) -> None:
    """Capture ``packets`` real loopback packets with tcpdump -s 128 (needs root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-s", "128", "-c", str(packets), "-w", str(part), "-U"],
        stderr=subprocess.PIPE,
    )
    assert tcpdump.stderr is not None
    tcpdump.stderr.readline()  # "listening on lo ..."
    share = packets // 10 + 1
    jobs = [
        threading.Thread(target=_udp, args=(socket.AF_INET, "127.0.0.1", 3 * share)),
        threading.Thread(target=_udp, args=(socket.AF_INET6, "::1", share)),
        threading.Thread(target=_tcp, args=(socket.AF_INET, "127.0.0.1", 3 * share)),
        threading.Thread(target=_tcp, args=(socket.AF_INET6, "::1", share)),
    ]
    pings = [
        subprocess.Popen(["ping", "-q", "-f", "-c", str(share), "127.0.0.1"],
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(["ping", "-q", "-6", "-f", "-c", str(share // 2), "::1"],
                         stdout=subprocess.DEVNULL),
    ]  # fmt: skip
    for job in jobs:
        job.daemon = True
        job.start()
    deadline = time.monotonic() + 300
    try:
        while tcpdump.poll() is None and time.monotonic() < deadline:
            if all(not job.is_alive() for job in jobs) and all(p.poll() is not None for p in pings):
                # traffic finished before tcpdump saw enough packets: top up with UDP
                _udp(socket.AF_INET, "127.0.0.1", share)
            time.sleep(0.05)
    finally:
        for proc in pings:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
        if tcpdump.poll() is None:
            tcpdump.terminate()
            tcpdump.wait(10)
    part.rename(path)


# --- socketkit ---------------------------------------------------------------------------


def socketkit_lines(path: Path, limit: int) -> Iterator[str]:
    from socketkit.packet import open_capture_file, summary

    with open_capture_file(path) as capture:
        for index, rec in enumerate(capture):
            if index >= limit:
                break
            yield summary(rec.data, rec.linktype, rec.ts_ns)


def socketkit_rate(path: Path, limit: int) -> float:
    """``CaptureFile.summaries()``: the public decode+summary path (fused for pcap)."""
    from socketkit.packet import open_capture_file

    sink: list[str] = []
    append = sink.append
    start = time.perf_counter()
    count = 0
    with open_capture_file(path) as capture:
        for line in capture.summaries():
            append(line)
            count += 1
            if count >= limit:
                break
            if len(sink) >= 4096:
                sink.clear()
    return count / (time.perf_counter() - start)


def socketkit_record_rate(path: Path, limit: int) -> float:
    """Per record: ``for rec in open_capture_file(...)`` + ``summary(data, linktype, ts)``."""
    from socketkit.packet import open_capture_file, summary

    sink: list[str] = []
    append = sink.append
    start = time.perf_counter()
    count = 0
    with open_capture_file(path) as capture:
        for rec in capture:
            append(summary(rec.data, rec.linktype, rec.ts_ns))
            count += 1
            if count >= limit:
                break
            if len(sink) >= 4096:
                sink.clear()
    return count / (time.perf_counter() - start)


# --- the hand-written struct.unpack_from decoder (the ">= 1.0x" anchor) --------------------
# Written the way one would by hand: per-layer unpack_from, inet_ntop, f-strings. It makes
# exactly socketkit's line for Ethernet -> IPv4/IPv6 -> TCP/UDP/ICMP echo, and a fallback
# line (never compared) for anything else.

_REC = struct.Struct("<IIII")
_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCPH = struct.Struct("!HHIIBBHHH")
_UDPH = struct.Struct("!HHHH")
_ICMPH = struct.Struct("!BBHHH")
_FLAG_BITS = ((1, "F"), (2, "S"), (4, "R"), (8, "P"), (16, "."), (32, "U"), (64, "E"), (128, "W"))


def _hand_tcp_options(opts: bytes) -> str:
    out = []
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            out.append("eol")
            break
        if kind == 1:
            out.append("nop")
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            out.append("bad opt")
            break
        length = opts[i + 1]
        if kind == 2 and length == 4:
            out.append(f"mss {struct.unpack_from('!H', opts, i + 2)[0]}")
        elif kind == 3 and length == 3:
            out.append(f"wscale {opts[i + 2]}")
        elif kind == 4 and length == 2:
            out.append("sackOK")
        elif kind == 8 and length == 10:
            val, ecr = struct.unpack_from("!II", opts, i + 2)
            out.append(f"TS val {val} ecr {ecr}")
        elif kind in (2, 3, 4, 8) or (kind == 5 and (length - 2) % 8):
            out.append("bad opt")
            break
        elif kind == 5:
            edges = struct.unpack_from(f"!{(length - 2) // 4}I", opts, i + 2)
            blocks = " ".join(f"{{{edges[j]}:{edges[j + 1]}}}" for j in range(0, len(edges), 2))
            out.append(f"sack {len(edges) // 2} {blocks}")
        else:
            out.append(f"opt-{kind}:{opts[i + 2 : i + length].hex()}")
        i += length
    return ",".join(out)


def _hand_tcp(buf: bytes, at: int, plen: int, word: str, src: str, dst: str) -> str:  # noqa: PLR0917
    sport, dport, seq, ack, off, flags, win, _sum, urp = _TCPH.unpack_from(buf, at)
    doff = (off >> 4) * 4
    length = plen - doff
    letters = "".join(ch for bit, ch in _FLAG_BITS if flags & bit) or "none"
    parts = [f"{word} {src}.{sport} > {dst}.{dport}: Flags [{letters}]"]
    if length > 0:
        parts.append(f", seq {seq}:{(seq + length) & 0xFFFFFFFF}")
    elif flags & 7:
        parts.append(f", seq {seq}")
    if flags & 16:
        parts.append(f", ack {ack}")
    parts.append(f", win {win}")
    if flags & 32:
        parts.append(f", urg {urp}")
    if doff > 20:
        parts.append(f", options [{_hand_tcp_options(buf[at + 20 : at + doff])}]")
    parts.append(f", length {length}")
    return "".join(parts)


def _hand_line(buf: bytes) -> str | None:
    """The line for one Ethernet frame, or None when this decoder does not handle it."""
    if len(buf) < 14:
        return None
    _dst, _src, etype = _ETH.unpack_from(buf, 0)
    if etype == 0x0800:
        if len(buf) < 34:
            return None
        vihl, _tos, total, _id, frag, _ttl, proto, _sum, src, dst = _IP4.unpack_from(buf, 14)
        ihl = (vihl & 15) * 4
        if vihl != 0x45 or frag & 0x3FFF:
            return None
        word, s, d, at, plen = "IP", socket.inet_ntoa(src), socket.inet_ntoa(dst), 34, total - 20
    elif etype == 0x86DD:
        if len(buf) < 54:
            return None
        _v, plen, proto, _hl, src6, dst6 = _IP6.unpack_from(buf, 14)
        ihl = 40
        s = socket.inet_ntop(socket.AF_INET6, src6)
        d = socket.inet_ntop(socket.AF_INET6, dst6)
        word, at = "IP6", 54
    else:
        return None
    if proto == 6:
        if len(buf) < at + 20:
            return None
        doff = (buf[at + 12] >> 4) * 4
        if doff < 20 or len(buf) < at + doff or plen < doff:
            return None
        return _hand_tcp(buf, at, plen, word, s, d)
    if proto == 17:
        if len(buf) < at + 8:
            return None
        sport, dport, ulen, _sum = _UDPH.unpack_from(buf, at)
        if ulen < 8:
            return None
        return f"{word} {s}.{sport} > {d}.{dport}: UDP, length {ulen - 8}"
    if proto in (1, 58):
        if len(buf) < at + 8:
            return None
        icmp_type, _code, _sum, ident, seq = _ICMPH.unpack_from(buf, at)
        names = {8: "request", 0: "reply"} if proto == 1 else {128: "request", 129: "reply"}
        if icmp_type not in names or (proto == 1) != (word == "IP"):
            return None
        label = "ICMP echo" if proto == 1 else "ICMP6, echo"
        return f"{word} {s} > {d}: {label} {names[icmp_type]}, id {ident}, seq {seq}, length {plen}"
    del ihl
    return None


def hand_lines(path: Path, limit: int) -> Iterator[str | None]:
    cache: dict[int, str] = {}
    with open(path, "rb") as fh:
        data = fh.read(24)
        count = 0
        while count < limit:
            head = fh.read(16)
            if len(head) < 16:
                break
            sec, usec, caplen, _orig = _REC.unpack(head)
            buf = fh.read(caplen)
            line = _hand_line(buf)
            if line is not None:
                hms = cache.get(sec)
                if hms is None:
                    hms = cache[sec] = time.strftime("%H:%M:%S", time.localtime(sec))
                line = f"{hms}.{usec:06d} {line}"
            yield line
            count += 1
    del data


def hand_rate(path: Path, limit: int) -> float:
    start = time.perf_counter()
    count = 0
    for _line in hand_lines(path, limit):
        count += 1
    return count / (time.perf_counter() - start)


# --- scapy and dpkt ----------------------------------------------------------------------


def scapy_rate(path: Path, limit: int) -> float:
    from scapy.all import PcapReader  # type: ignore[import-untyped]  # loads the layers

    start = time.perf_counter()
    count = 0
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            pkt.summary()
            count += 1
            if count >= limit:
                break
    return count / (time.perf_counter() - start)


def dpkt_rate(path: Path, limit: int) -> float:
    import dpkt  # type: ignore[import-untyped]

    start = time.perf_counter()
    count = 0
    sink: list[str] = []
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            stamp = time.strftime("%H:%M:%S", time.localtime(ts))
            if isinstance(ip, dpkt.ip.IP):
                src, dst, word = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), "IP"
            elif isinstance(ip, dpkt.ip6.IP6):
                src = socket.inet_ntop(socket.AF_INET6, ip.src)
                dst = socket.inet_ntop(socket.AF_INET6, ip.dst)
                word = "IP6"
            else:
                count += 1
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP):
                line = (
                    f"{stamp} {word} {src}.{l4.sport} > {dst}.{l4.dport}: Flags [{l4.flags}], "
                    f"seq {l4.seq}, ack {l4.ack}, win {l4.win}, length {len(l4.data)}"
                )
            elif isinstance(l4, dpkt.udp.UDP):
                line = (
                    f"{stamp} {word} {src}.{l4.sport} > {dst}.{l4.dport}: UDP, length {l4.ulen - 8}"
                )
            else:
                line = f"{stamp} {word} {src} > {dst}: {type(l4).__name__}"
            sink.append(line)
            if len(sink) > 4096:
                sink.clear()
            count += 1
            if count >= limit:
                break
    return count / (time.perf_counter() - start)


# --- whole process ------------------------------------------------------------------------

_OURS_PROGRAM = """
import sys
from socketkit.packet import open_capture_file
with open_capture_file(sys.argv[1]) as capture:
    capture.write_summaries(sys.stdout)
"""


def _timed(argv: list[str], env: dict[str, str], packets: int) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return packets / (time.perf_counter() - start)


def whole_process(path: Path, packets: int, rounds: int, tz: str | None) -> None:
    env = dict(os.environ)
    if tz is None:
        env.pop("TZ", None)
    else:
        env["TZ"] = tz
    ours = [sys.executable, "-c", _OURS_PROGRAM, str(path)]
    theirs = ["tcpdump", "-nn", "-r", str(path)]
    a, b, ratios = interleave(
        lambda: _timed(ours, env, packets), lambda: _timed(theirs, env, packets), rounds
    )
    label = "default env" if tz is None else f"TZ={tz}"
    report(
        f"decode+summary whole process vs tcpdump -nn -r ({label})",
        ours="python: open_capture_file(...).write_summaries(stdout)",
        anchor="tcpdump -nn -r > /dev/null",
        ours_samples=a,
        anchor_samples=b,
        ratios=ratios,
        target=1.0 if tz is None else None,
        unit="packets/s",
        note=f"{packets} packets, {path.name}; TZ unset means glibc re-reads /etc/localtime",
    )


def _count(path: Path) -> int:
    from socketkit.packet import open_capture_file

    with open_capture_file(path) as capture:
        return sum(1 for _ in capture)


def check_same_lines(path: Path, limit: int) -> int:
    """The hand-written decoder's lines equal socketkit's; returns how many were compared."""
    compared = 0
    for ours, hand in zip(socketkit_lines(path, limit), hand_lines(path, limit), strict=True):
        if hand is None:
            continue
        if ours != hand:
            raise SystemExit(f"line mismatch:\n  socketkit: {ours}\n  hand:      {hand}")
        compared += 1
    return compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--packets", type=int, default=1_000_000, help="capture size")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    packets = 50_000 if args.quick else args.packets
    rounds = 2 if args.quick else args.rounds
    path = BUILD / f"loopback-mix-{packets}.pcap"
    if not path.exists():
        if os.geteuid() != 0:
            raise SystemExit("making the capture needs root (tcpdump -i lo, ping -f)")
        print(f"capturing {packets} loopback packets with tcpdump -s 128 -> {path}", flush=True)
        make_capture(path, packets)
    total = _count(path)
    print(f"{path}: {total} packets", flush=True)
    compared = check_same_lines(path, min(total, 200_000))
    print(f"hand-written decoder: identical lines on {compared} packets", flush=True)

    inproc = min(total, 200_000)
    rate_ours: Callable[[], float] = lambda: socketkit_rate(path, inproc)  # noqa: E731
    for name, anchor, limit, target in (
        ("scapy PcapReader + summary()", scapy_rate, 3_000 if not args.quick else 500, 100.0),
        ("dpkt Reader + objects + line", dpkt_rate, min(total, 100_000), 5.0),
        ("hand-written struct.unpack_from decoder, same line", hand_rate, inproc, 1.0),
    ):
        a, b, ratios = interleave(rate_ours, lambda f=anchor, n=limit: f(path, n), rounds)  # type: ignore[misc]
        report(
            f"decode+summary vs {name}",
            ours="socketkit open_capture_file(...).summaries()",
            anchor=name,
            ours_samples=a,
            anchor_samples=b,
            ratios=ratios,
            target=target,
            unit="packets/s",
            note=f"{path.name}; socketkit over {inproc} packets, anchor over {limit}",
        )
    a, b, ratios = interleave(
        lambda: socketkit_record_rate(path, inproc), lambda: hand_rate(path, inproc), rounds
    )
    report(
        "per-record summary() vs hand-written struct.unpack_from decoder, same line",
        ours="socketkit: for rec in open_capture_file(...): summary(rec.data, ...)",
        anchor="hand-written struct.unpack_from decoder",
        ours_samples=a,
        anchor_samples=b,
        ratios=ratios,
        target=1.0,
        unit="packets/s",
        note=f"{path.name}; {inproc} packets each",
    )
    whole_process(path, total, max(2, rounds - 2), None)
    whole_process(path, total, max(2, rounds - 2), "UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
