"""pcap records longer than the file header's snap length are read as libpcap reads them
(sf-pcap.c): a record up to the link type's maximum (262144 for most) is accepted and cut to
the snap length; only a longer one is damage. Checked against tcpdump and tshark reading the
same files."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from socketkit import DecodeError
from socketkit.packet import open_capture_file
from support.privilege import require_tool

from . import build

T0 = 1_700_000_000
FRAMES = [
    build.eth(build.ip4(build.udp(1234, 5678, b"%010d" % i), 17, ident=i)) for i in range(5)
]  # 52 bytes each: 14 Ethernet + 20 IPv4 + 8 UDP + 10 data


def _pcap(snaplen: int, records: list[bytes], *, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    out = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)
    for index, frame in enumerate(records):
        out += struct.pack(order + "IIII", T0 + index, index, len(frame), len(frame)) + frame
    return out


def _sk(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socketkit", "sniff", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )


def _tcpdump(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("tcpdump"), "-nn", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("snaplen", [13, 46])
@pytest.mark.parametrize("big_endian", [False, True])
def test_records_beyond_the_snap_length_are_cut_to_it(snaplen: int, big_endian: bool) -> None:
    capture = open_capture_file(io.BytesIO(_pcap(snaplen, FRAMES, big_endian=big_endian)))
    records = list(capture)
    assert [r.data for r in records] == [f[:snaplen] for f in FRAMES]
    assert [r.orig_len for r in records] == [52] * 5
    lines = list(
        open_capture_file(io.BytesIO(_pcap(snaplen, FRAMES, big_endian=big_endian))).summaries()
    )
    assert len(lines) == 5


def _dumps(text: str) -> list[list[str]]:
    """The hex lines of each packet in ``tcpdump -X`` output (packets without any omitted)."""
    packets: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("\t"):
            packets[-1].append(line)
        else:
            packets.append([])
    return [p for p in packets if p]


@pytest.mark.parametrize("snaplen", [13, 46])
def test_sniff_reads_them_as_tcpdump_does(tmp_path: Path, snaplen: int) -> None:
    path = tmp_path / f"snap{snaplen}.pcap"
    path.write_bytes(_pcap(snaplen, FRAMES))
    ours, theirs = _sk("-r", str(path)), _tcpdump("-r", str(path))
    assert ours.returncode == 0 == theirs.returncode, ours.stderr
    assert ours.stdout.count("\n") == 5 == theirs.stdout.count("\n")
    if snaplen == 46:  # the headers are whole: the same lines ("UDP, length 10")
        assert ours.stdout == theirs.stdout
    # the filter sees the cut packet, as libpcap's does: the same count as tcpdump
    for expression in ("udp port 5678", "ip", "udp"):
        ours = _sk("-r", str(path), *expression.split())
        theirs = _tcpdump("-r", str(path), *expression.split())
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout.count("\n") == theirs.stdout.count("\n"), expression
    # the dumps show the kept bytes only
    for flag in ("-X", "-XX"):
        ours, theirs = _sk("-r", str(path), flag), _tcpdump("-r", str(path), flag)
        assert _dumps(ours.stdout) == _dumps(theirs.stdout), flag
        assert len(_dumps(ours.stdout)) == (0 if (snaplen, flag) == (13, "-X") else 5)
    records = [json.loads(line) for line in _sk("-r", str(path), "--json").stdout.splitlines()]
    assert [(r["caplen"], r["len"]) for r in records] == [(snaplen, 52)] * 5


def test_tshark_counts_the_same_records(tmp_path: Path) -> None:
    path = tmp_path / "snap46.pcap"
    path.write_bytes(_pcap(46, FRAMES))
    res = subprocess.run(
        [require_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.split()) == 5 == _sk("-r", str(path)).stdout.count("\n")


def test_a_record_beyond_the_link_type_maximum_is_damage(tmp_path: Path) -> None:
    """libpcap refuses a record longer than 262144 bytes (Ethernet's maximum) whatever the
    snap length; tcpdump prints the records before it and fails, and so does sniff."""
    data = _pcap(46, FRAMES[:2]) + struct.pack("<IIII", T0 + 2, 0, 262145, 262145)
    data += bytes(262145) + _pcap(46, FRAMES[2:3])[24:]
    path = tmp_path / "big.pcap"
    path.write_bytes(data)
    with pytest.raises(DecodeError) as info:
        list(open_capture_file(io.BytesIO(data)))
    assert "262145" in info.value.reason
    ours, theirs = _sk("-r", str(path)), _tcpdump("-r", str(path))
    assert theirs.returncode == 1 and theirs.stdout.count("\n") == 2
    assert ours.returncode == 10
    assert ours.stdout == theirs.stdout
    [line] = ours.stderr.splitlines()
    assert line.startswith("socketkit sniff: pcap: record length 262145 beyond"), line
