"""Fuzz every socketkit packet decoder: only DecodeError may escape, nothing may hang.

Inputs are valid seed packets of every supported kind (Ethernet, 802.1Q/QinQ, SLL, SLL2,
NULL/LOOP, raw IPv4/IPv6 with options and extension headers, ARP, TCP with options, UDP/DNS,
ICMP/ICMPv6), mutated (byte flips, length fields forced to extremes, truncation, insertion,
splicing) plus purely random bytes. Each input goes through ``decode(..., lazy=False)`` and
every lazy accessor (options, payload, checksums), ``summary`` (which must not raise at all),
``format_packet`` and ``hexdump``, for its own link type and one other. Capture files
(pcap/pcapng) are fuzzed too: ``open_capture_file`` + iteration + ``summaries()``.

Usage: python benchmarks/fuzz_decoders.py [--count 1000000] [--files 20000] [--seed N]
(``--quick``: 20,000 packets). Exit status 0 when nothing but DecodeError escaped.
The test suite runs the quick variant (tests/packet/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import io
import random
import struct
import sys
import time
from dataclasses import dataclass, field

from socketkit import DecodeError
from socketkit.packet import (
    TCP,
    IPv4,
    LinkType,
    PcapngWriter,
    PcapWriter,
    decode,
    format_packet,
    hexdump,
    open_capture_file,
    summary,
    verify_checksums,
)
from socketkit.packet.printer import LinePrinter

LINKTYPES = [int(value) for value in LinkType] + [147, 9999]


def _ip4(payload: bytes, proto: int, options: bytes = b"", frag: int = 0x4000) -> bytes:
    ihl = 5 + len(options) // 4
    return (
        struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 1, frag, 64, proto,
                    0, b"\xc6\x12\0\1", b"\xc6\x12\0\2")
        + options + payload
    )  # fmt: skip


def _ip6(payload: bytes, nxt: int) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), nxt, 64)
        + bytes(15)
        + b"\1"
        + bytes(15)
        + b"\2"
        + payload
    )


_TCP_OPTS = (b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07",
             b"\x01\x01\x08\x0a" + bytes(8), b"\x01\x01\x05\x0a" + bytes(8))  # fmt: skip


def _tcp(options: bytes = b"", payload: bytes = b"abc", flags: int = 0x18) -> bytes:
    doff = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", 1234, 80, 1, 2, doff << 4, flags, 512, 0, 0) + options + (payload)
    )


def _udp(payload: bytes, sport: int = 5000, dport: int = 53) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _seeds() -> list[tuple[bytes, int]]:
    eth = b"\x02" * 6 + b"\x04" * 6
    dns = struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\x03abc\x00\x00\x01\x00\x01"
    icmp = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + bytes(16)
    icmp6 = struct.pack("!BBHHH", 128, 0, 0, 7, 1) + bytes(16)
    hop = bytes([60, 0, 1, 4, 0, 0, 0, 0])
    dst = bytes([44, 0, 1, 4, 0, 0, 0, 0])
    frag6 = struct.pack("!BBHI", 6, 0, 1, 99)
    ah = bytes([17, 1]) + bytes(6)
    v4 = [
        _ip4(_tcp(opt), 6) for opt in _TCP_OPTS
    ] + [
        _ip4(_tcp(), 6, options=b"\x94\x04\0\0"),
        _ip4(_udp(dns), 17),
        _ip4(icmp, 1),
        _ip4(_udp(b"x" * 20), 17, frag=0x2000),
        _ip4(b"y" * 20, 17, frag=0x0010),
        _ip4(b"z" * 8, 47),
    ]  # fmt: skip
    v6 = [
        _ip6(_tcp(_TCP_OPTS[1]), 6),
        _ip6(_udp(dns), 17),
        _ip6(icmp6, 58),
        _ip6(hop + dst + frag6 + _tcp(), 0),
        _ip6(ah + _udp(b"q"), 51),
        _ip6(b"", 59),
    ]
    arp = (
        struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
        + bytes(6)
        + b"\xc6\x12\0\1"
        + bytes(6)
        + (b"\xc6\x12\0\2")
    )
    seeds: list[tuple[bytes, int]] = []
    for packet in v4:
        seeds += [
            (eth + b"\x08\x00" + packet, 1),
            (eth + b"\x81\x00\x00\x0a\x08\x00" + packet, 1),
            (eth + b"\x88\xa8\x00\x64\x81\x00\x00\x0a\x08\x00" + packet, 1),
            (packet, 101),
            (packet, 228),
            (struct.pack("<I", 2) + packet, 0),
            (struct.pack("!I", 2) + packet, 108),
            (struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + packet, 113),
            (struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 4, 6, bytes(8)) + packet, 276),
        ]
    for packet in v6:
        sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 1, 1, 0, 6, bytes(8))
        seeds += [(eth + b"\x86\xdd" + packet, 1), (packet, 101), (packet, 229),
                  (sll2 + packet, 276)]  # fmt: skip
    seeds += [(eth + b"\x08\x06" + arp, 1), (eth + b"\x81\x00\x00\x05\x08\x06" + arp, 1),
              (eth + b"\x88\xcc" + bytes(30), 1), (eth + b"\x00\x40" + bytes(30), 1)]  # fmt: skip
    return seeds


_EXTREMES = (0, 1, 0x7F, 0x80, 0xFF)


def _mutate(rnd: random.Random, data: bytes, seeds: list[tuple[bytes, int]]) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        choice = rnd.random()
        if not buf:
            buf = bytearray(rnd.randbytes(rnd.randint(0, 64)))
            continue
        if choice < 0.35:
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
        elif choice < 0.55:
            buf[rnd.randrange(len(buf))] = rnd.choice(_EXTREMES)
        elif choice < 0.7:
            del buf[rnd.randrange(len(buf)) :]
        elif choice < 0.8:
            at = rnd.randrange(len(buf) + 1)
            buf[at:at] = rnd.randbytes(rnd.randint(1, 16))
        elif choice < 0.9:
            other = rnd.choice(seeds)[0]
            at = rnd.randrange(len(buf) + 1)
            buf[at:] = other[rnd.randrange(len(other) + 1) :]
        else:
            at = rnd.randrange(len(buf))
            buf[at : at + 2] = rnd.choice((b"\xff\xff", b"\x00\x00", b"\x00\x05"))
    return bytes(buf)


def _exercise(data: bytes, linktype: int) -> bool:
    """One input through every decoder entry point. True when it decoded cleanly."""
    line = summary(data, linktype, 1_700_000_000_000_000_000)  # must never raise
    assert isinstance(line, str)
    # sniff's tcpdump options (relative seq, -v, -e, -q, -A, -t): one printer per input, in turn
    printer = _PRINTERS[len(data) & 1]
    assert isinstance(printer.line(data, linktype, 1_700_000_000_000_000_000, len(data)), str)
    hexdump(data[:64])
    try:
        packet = decode(data, linktype, lazy=False)
    except DecodeError:
        return False
    assert format_packet(packet) == summary(data, linktype)
    try:
        _ = packet.payload, packet.ip, packet.transport, repr(packet)
        for layer in packet.layers:
            if isinstance(layer, TCP):
                _ = layer.options, layer.mss, layer.sack, layer.timestamps, layer.flags_text
            elif isinstance(layer, IPv4):
                _ = layer.options
        verify_checksums(packet)
    except DecodeError:
        return False
    return True


_PRINTERS = (
    LinePrinter(verbose=2, link=True, ascii=True, stamps=3),
    LinePrinter(relative=False, quick=True, verbose=1, stamps=4),
)


@dataclass
class Stats:
    inputs: int = 0
    clean: int = 0
    decode_errors: int = 0
    files: int = 0
    file_records: int = 0
    slowest_s: float = 0.0
    slowest: str = ""
    failures: list[str] = field(default_factory=list)


def fuzz_packets(count: int, seed: int, stats: Stats) -> None:
    rnd = random.Random(seed)
    seeds = _seeds()
    for index in range(count):
        if index % 10 == 0:
            data, linktype = rnd.randbytes(rnd.randint(0, 120)), rnd.choice(LINKTYPES)
        else:
            base, linktype = rnd.choice(seeds)
            data = _mutate(rnd, base, seeds)
            if index % 7 == 0:
                linktype = rnd.choice(LINKTYPES)
        for lt in (linktype,):
            start = time.perf_counter()
            try:
                ok = _exercise(data, lt)
            except Exception as exc:  # the point: report anything unexpected
                stats.failures.append(f"{type(exc).__name__}: {exc} <- lt={lt} {data.hex()}")
                ok = False
            took = time.perf_counter() - start
            if took > stats.slowest_s:
                stats.slowest_s, stats.slowest = took, f"packet lt={lt} {data.hex()}"
            stats.inputs += 1
            if ok:
                stats.clean += 1
            else:
                stats.decode_errors += 1
        if len(stats.failures) > 20:
            return


def _capture_bytes(rnd: random.Random, seeds: list[tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    writer: PcapWriter | PcapngWriter
    if rnd.random() < 0.5:
        writer = PcapWriter(buf, 1, nanosecond=rnd.random() < 0.5)
    else:
        writer = PcapngWriter(buf, 1, nanosecond=rnd.random() < 0.5)
        writer.add_interface(101)
    for _ in range(rnd.randint(0, 6)):
        data = rnd.choice(seeds)[0]
        if isinstance(writer, PcapngWriter):
            writer.write(rnd.randrange(2**32 * 10**9), data, interface=rnd.randint(0, 1))
        else:
            writer.write(rnd.randrange(2**32 * 10**9), data)
    writer.close()
    return buf.getvalue()


def fuzz_files(count: int, seed: int, stats: Stats) -> None:
    rnd = random.Random(seed + 1)
    seeds = _seeds()
    for _ in range(count):
        raw = _mutate(rnd, _capture_bytes(rnd, seeds), seeds)
        expected: list[str] = []
        for mode in ("records", "summaries"):
            start = time.perf_counter()
            try:
                capture = open_capture_file(io.BytesIO(raw))
                if mode == "records":
                    for record in capture:
                        stats.file_records += 1
                        expected.append(summary(record.data, record.linktype, record.ts_ns))
                else:
                    lines: list[str] = []
                    try:
                        lines.extend(capture.summaries())
                    finally:  # the fused path prints exactly what the record path prints
                        if lines != expected:
                            stats.failures.append(f"file: summaries() differ <- {raw.hex()}")
            except DecodeError:
                pass
            except Exception as exc:  # the point: report anything unexpected
                stats.failures.append(f"file {mode}: {type(exc).__name__}: {exc} <- {raw.hex()}")
            took = time.perf_counter() - start
            if took > stats.slowest_s:
                stats.slowest_s, stats.slowest = took, f"file {mode} {raw.hex()}"
        stats.files += 1
        if len(stats.failures) > 20:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="packets")
    parser.add_argument("--files", type=int, default=20_000, help="mutated capture files")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--quick", action="store_true", help="20,000 packets, 1,000 files")
    args = parser.parse_args()
    count, files = (20_000, 1_000) if args.quick else (args.count, args.files)
    stats = Stats()
    start = time.perf_counter()
    fuzz_packets(count, args.seed, stats)
    fuzz_files(files, args.seed, stats)
    elapsed = time.perf_counter() - start
    print(
        f"fuzz: {stats.inputs} packets ({stats.clean} decoded, {stats.decode_errors} "
        f"DecodeError), {stats.files} files ({stats.file_records} records), "
        f"{len(stats.failures)} other exceptions, slowest input {stats.slowest_s * 1e3:.1f} ms, "
        f"{elapsed:.1f} s"
    )
    print(f"  slowest: {stats.slowest[:160]}")
    for failure in stats.failures[:20]:
        print("  FAIL", failure[:300])
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
