"""pcap / pcapng files: what socketkit writes, tcpdump and tshark read without warnings;
what they write, socketkit reads; damaged files deliver the records before the damage."""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

import pytest

from socketkit import DecodeError
from socketkit.packet import (
    LinkType,
    PcapngWriter,
    PcapWriter,
    Record,
    open_capture_file,
    summary,
)
from support.privilege import require_tool

from . import build

T0 = 1_700_000_000_123_456_789
FRAMES = [
    build.eth(build.tcp4(flags=0x02, options=build.SYN_OPTIONS)),
    build.eth(build.udp4(40000, 45000, b"x" * 300)),
    build.eth(build.ip4(build.icmp_echo(1, 1), 1)),
    build.eth(build.icmp6_echo(1, 2), 0x86DD),
    build.eth(build.arp(1, build.MAC_A, "198.18.0.1", bytes(6), "198.18.0.2"), 0x0806),
]


def _write(path: Path, kind: str, frames: list[bytes] = FRAMES, snaplen: int = 262144) -> None:
    writer: PcapWriter | PcapngWriter
    if kind == "pcap-us":
        writer = PcapWriter(path, LinkType.ETHERNET, snaplen=snaplen)
    elif kind == "pcap-ns":
        writer = PcapWriter(path, LinkType.ETHERNET, snaplen=snaplen, nanosecond=True)
    else:
        writer = PcapngWriter(path, LinkType.ETHERNET, snaplen=snaplen,
                              nanosecond=kind == "pcapng-ns")  # fmt: skip
    with writer:
        for index, frame in enumerate(frames):
            writer.write(T0 + index * 1_000_001, frame)


KINDS = ["pcap-us", "pcap-ns", "pcapng-us", "pcapng-ns"]


@pytest.mark.parametrize("kind", KINDS)
def test_tcpdump_and_tshark_read_our_files_without_warnings(tmp_path: Path, kind: str) -> None:
    tcpdump, tshark = require_tool("tcpdump"), require_tool("tshark")
    path = tmp_path / "out.cap"
    _write(path, kind)
    dump = subprocess.run([tcpdump, "-nn", "-r", str(path)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert dump.returncode == 0
    assert dump.stderr.strip().startswith("reading from file") and "warning" not in dump.stderr
    assert len(dump.stderr.strip().splitlines()) == 1, dump.stderr
    assert len(dump.stdout.splitlines()) == len(FRAMES)
    shark = subprocess.run(
        [tshark, "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.time_epoch"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shark.returncode == 0, shark.stderr
    noise = [line for line in shark.stderr.splitlines() if "Running as user" not in line]
    assert noise == [], shark.stderr
    rows = [line.split("\t") for line in shark.stdout.splitlines()]
    assert [int(row[0]) for row in rows] == [len(frame) for frame in FRAMES]
    digits = 9 if kind.endswith("-ns") else 6
    for index, row in enumerate(rows):
        sec, frac = row[1].split(".")
        want = T0 + index * 1_000_001
        assert int(sec) == want // 10**9
        assert frac[:digits] == f"{want % 10**9:09d}"[:digits]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "rt.cap"
    _write(path, kind, snaplen=100)
    with open_capture_file(path) as capture:
        assert capture.format == kind.split("-", maxsplit=1)[0]
        assert capture.linktype == LinkType.ETHERNET and capture.snaplen == 100
        records = list(capture)
    scale = 1 if kind.endswith("-ns") else 1000
    assert records == [
        Record((T0 + i * 1_000_001) // scale * scale, f[:100], len(f), 1)
        for i, f in enumerate(FRAMES)
    ]


def test_reads_files_written_by_tcpdump_and_tshark(tmp_path: Path) -> None:
    tcpdump, tshark = require_tool("tcpdump"), require_tool("tshark")
    ours = tmp_path / "ours.pcap"
    _write(ours, "pcap-us")
    # tcpdump -w rewrites the packets it reads (its own writer); tshark converts to pcapng
    # (nanosecond and microsecond) and to big-endian-free pcap with ns stamps
    via_tcpdump = tmp_path / "tcpdump.pcap"
    subprocess.run([tcpdump, "-r", str(ours), "-w", str(via_tcpdump)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    outputs = [via_tcpdump]
    for fmt in ("pcapng", "nsecpcap", "pcap"):
        out = tmp_path / f"tshark-{fmt}.cap"
        subprocess.run([tshark, "-r", str(ours), "-F", fmt, "-w", str(out)], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        outputs.append(out)
    expected = [summary(f, 1, (T0 + i * 1_000_001) // 1000 * 1000) for i, f in enumerate(FRAMES)]
    for path in outputs:
        with open_capture_file(path) as capture:
            got = [summary(r.data, r.linktype, r.ts_ns // 1000 * 1000) for r in capture]
        assert got == expected, path.name


def _pcapng_big_endian() -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        return struct.pack(">II", btype, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))

    shb = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb0 = block(1, struct.pack(">HHI", 1, 0, 0) + struct.pack(">HHB3x", 9, 1, 3) + bytes(4))
    idb1 = block(1, struct.pack(">HHI", 101, 0, 65535) + struct.pack(">HHB3x", 9, 1, 0x82)
                 + bytes(4))  # fmt: skip
    data0, data1 = FRAMES[1], FRAMES[1][14:]
    ticks = 1_700_000_000_123
    head0 = struct.pack(">IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data0), len(data0))
    epb0 = block(6, head0 + data0 + bytes(-len(data0) % 4))
    epb1 = block(6, struct.pack(">IIIII", 1, 0, 10, len(data1), 999) + data1
                 + bytes(-len(data1) % 4))  # fmt: skip
    nrb = block(4, bytes(4))  # a name resolution block: skipped
    return shb + idb0 + nrb + idb1 + epb0 + epb1


def test_pcapng_big_endian_multiple_interfaces_and_tsresol() -> None:
    capture = open_capture_file(io.BytesIO(_pcapng_big_endian()))
    records = list(capture)
    assert [(r.linktype, r.orig_len) for r in records] == [(1, len(FRAMES[1])), (101, 999)]
    assert records[0].ts_ns == 1_700_000_000_123_000_000  # if_tsresol 3: milliseconds
    assert records[1].ts_ns == 2_500_000_000  # if_tsresol 0x82: 10 quarter-seconds


def test_pcapng_multiple_interfaces_written(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    path = tmp_path / "multi.pcapng"
    with PcapngWriter(path, LinkType.ETHERNET, interface_name="eth0") as writer:
        raw = writer.add_interface(LinkType.RAW, nanosecond=True, name="tun0")
        writer.write(T0, FRAMES[1])
        writer.write(T0 + 1, FRAMES[1][14:], interface=raw)
    assert [(r.linktype, r.ts_ns) for r in open_capture_file(path)] == [
        (1, T0 // 1000 * 1000), (101, T0 + 1),
    ]  # fmt: skip
    fields = ["-T", "fields", "-e", "frame.interface_name", "-e", "udp.dstport"]
    shark = subprocess.run(
        [tshark, "-r", str(path), *fields], capture_output=True, text=True, timeout=120
    )
    assert shark.stdout.split() == ["eth0", "45000", "tun0", "45000"]


def test_streams_from_a_non_seekable_reader() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, LinkType.ETHERNET) as writer:
        for index in range(3000):
            writer.write(T0 + index, FRAMES[index % len(FRAMES)])

    class Trickle(io.RawIOBase):  # returns at most 7 bytes a read, cannot seek
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            chunk = self.data[self.pos : self.pos + min(size, 7)]
            self.pos += len(chunk)
            return chunk

    assert sum(1 for _ in open_capture_file(Trickle(buf.getvalue()))) == 3000  # type: ignore[arg-type]


def _pcap_bytes(snaplen: int = 262144) -> bytes:
    buf = io.BytesIO()
    with PcapWriter(buf, LinkType.ETHERNET, snaplen=snaplen) as writer:
        for index, frame in enumerate(FRAMES):
            writer.write(T0 + index, frame)
    return buf.getvalue()


def _pcapng_bytes() -> bytes:
    buf = io.BytesIO()
    with PcapngWriter(buf, LinkType.ETHERNET) as writer:
        for index, frame in enumerate(FRAMES):
            writer.write(T0 + index, frame)
    return buf.getvalue()


def _offsets_pcap(data: bytes) -> list[int]:
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


def test_damaged_pcap_delivers_records_before_the_damage() -> None:
    data = _pcap_bytes()
    starts = _offsets_pcap(data)
    cases = {
        "ends inside a record": data[: starts[3] + 20],
        "ends inside a record header": data[: starts[3] + 5],
        "record beyond the snap length": data[: starts[3] + 8]
        + struct.pack("<I", 262145) + data[starts[3] + 12 :],
    }  # fmt: skip
    for name, damaged in cases.items():
        capture = open_capture_file(io.BytesIO(damaged))
        got = []
        with pytest.raises(DecodeError) as info:
            for record in capture:
                got.append(record.data)
        assert got == FRAMES[:3], name
        assert info.value.layer == "pcap"
        # the fused summary path delivers the same lines, then the same error
        lines = []
        with pytest.raises(DecodeError):
            for line in open_capture_file(io.BytesIO(damaged)).summaries():
                lines.append(line)
        assert len(lines) == 3, name


def test_record_beyond_a_small_snap_length_is_cut_to_it() -> None:
    """As libpcap (sf-pcap.c): a record longer than the header's snap length, but within the
    link type's maximum, is kept up to the snap length (tests/packet/test_snaplen.py compares
    with tcpdump)."""
    data = bytearray(_pcap_bytes())
    struct.pack_into("<I", data, 16, 20)  # the header's snap length, below every record
    records = list(open_capture_file(io.BytesIO(bytes(data))))
    assert [r.data for r in records] == [frame[:20] for frame in FRAMES]
    assert [r.orig_len for r in records] == [len(frame) for frame in FRAMES]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"\xd4\xc3", "too short"),
        (b"GIF89a" + bytes(30), "bad magic"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "pcap file header"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00", "section header"),
    ],
)
def test_bad_headers_raise_at_open(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        open_capture_file(io.BytesIO(data))
    assert reason in str(info.value)


def test_damaged_pcapng() -> None:
    data = _pcapng_bytes()
    # find the 4th EPB: skip SHB, IDB and three EPBs by their lengths
    pos, blocks = 0, []
    while pos < len(data):
        blocks.append(pos)
        pos += struct.unpack_from("<I", data, pos + 4)[0]
    fourth = blocks[2 + 3]
    cases = {
        "ends inside a block": data[: fourth + 30],
        "bad block length": data[: fourth + 4] + struct.pack("<I", 13) + data[fourth + 8 :],
        "trailer": data[: blocks[-1] - 1] + b"\xff" + data[blocks[-1] :],
    }
    for name, damaged in cases.items():
        got = []
        with pytest.raises(DecodeError) as info:
            for record in open_capture_file(io.BytesIO(damaged)):
                got.append(record.data)
        assert got == FRAMES[:3], name
        assert info.value.layer == "pcapng"
        lines = []
        with pytest.raises(DecodeError):
            for line in open_capture_file(io.BytesIO(damaged)).summaries():
                lines.append(line)
        assert len(lines) == 3, name


def test_tcpdump_also_rejects_what_we_reject(tmp_path: Path) -> None:
    """The damaged-file behaviour matches tcpdump's: records first, then an error."""
    tcpdump = require_tool("tcpdump")
    data = _pcap_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: _offsets_pcap(data)[3] + 20])
    result = subprocess.run([tcpdump, "-nn", "-r", str(path)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert len(result.stdout.splitlines()) == 3
    assert "truncated" in result.stderr


def test_writer_validation_and_snap(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), 1, snaplen=0)
    buf = io.BytesIO()
    writer = PcapWriter(buf, 1, snaplen=10)
    writer.write(T0, bytes(range(50)), orig_len=70)
    with pytest.raises(ValueError):
        writer.write(-1, b"x")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError):
        writer.write(T0, b"x")
    (record,) = list(open_capture_file(io.BytesIO(buf.getvalue())))
    assert record.data == bytes(range(10)) and record.orig_len == 70
    png = PcapngWriter(io.BytesIO(), 1)
    with pytest.raises(ValueError):
        png.write(T0, b"x", interface=3)


@pytest.mark.parametrize("nanosecond", [False, True])
def test_big_endian_pcap(nanosecond: bool) -> None:
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    frame = FRAMES[1]
    data = struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    data += struct.pack(">IIII", 1_700_000_000, 123456, len(frame), len(frame) + 5) + frame
    (record,) = list(open_capture_file(io.BytesIO(data)))
    frac_ns = 123456 if nanosecond else 123456000
    assert record == Record(1_700_000_000 * 10**9 + frac_ns, frame, len(frame) + 5, 1)
    (line,) = list(open_capture_file(io.BytesIO(data)).summaries())
    assert line == summary(frame, 1, record.ts_ns)


def test_reading_streams_in_constant_memory(tmp_path: Path) -> None:
    """A 27 MB file is read (records, and summaries) with a few MB of peak allocation."""
    import tracemalloc

    path = tmp_path / "big.pcap"
    frame = FRAMES[1]  # 342 bytes
    with PcapWriter(path, LinkType.ETHERNET) as writer:
        for index in range(80_000):
            writer.write(T0 + index * 1000, frame)
    assert path.stat().st_size > 27_000_000
    tracemalloc.start()
    try:
        with open_capture_file(path) as capture:
            count = sum(1 for _ in capture)
        _, peak_records = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with open_capture_file(path) as capture:
            lines = sum(1 for _ in capture.summaries())
        _, peak_lines = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == lines == 80_000
    assert peak_records < 8_000_000, peak_records
    assert peak_lines < 8_000_000, peak_lines
