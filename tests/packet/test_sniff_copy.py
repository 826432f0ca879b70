"""``sniff -r IN -w OUT`` keeps each packet's link type: a pcapng input with interfaces of
different link types is copied to pcapng with the same interfaces (tcpdump prints the copy as
tshark decodes the input); a pcap output, which holds one link type, is refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from socketkit.packet import PcapngWriter
from support.privilege import require_tool

from . import build

ENV = {"TZ": "UTC", "PATH": "/usr/bin:/bin"}


def _mixed(path: Path) -> None:
    with PcapngWriter(path, 1) as writer:
        cooked = writer.add_interface(276)
        writer.write(1_000_000_000, build.eth(build.ip4(build.udp(1, 2, b"eth"), 17)))
        writer.write(
            2_000_000_000, build.sll2(build.ip4(build.udp(3, 4, b"sll2"), 17)), None, cooked
        )
        writer.write(3_000_000_000, build.eth(build.ip4(build.udp(5, 6, b"eth2"), 17)))


def _sk(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socketkit", "sniff", *argv],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip


def _tshark(path: Path) -> str:
    """Each packet's link layer and ports as tshark decodes them (libpcap, so tcpdump, reads
    no pcapng whose interfaces differ in link type; tshark does)."""
    res = subprocess.run(
        [require_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.protocols",
         "-e", "udp.srcport", "-e", "udp.dstport"],
        capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_a_pcapng_copy_keeps_every_link_type(tmp_path: Path) -> None:
    src, copy = tmp_path / "mixed.pcapng", tmp_path / "copy.pcapng"
    _mixed(src)
    res = _sk("-r", str(src), "--pcapng", "-w", str(copy), "udp")
    assert res.returncode == 0, res.stderr
    expected = _tshark(src)
    assert expected.splitlines() == [
        "eth:ethertype:ip:udp:data\t1\t2",
        "sll:ethertype:ip:udp:data\t3\t4",
        "eth:ethertype:ip:udp:data\t5\t6",
    ]
    assert _tshark(copy) == expected


def test_a_pcap_copy_of_mixed_link_types_is_refused(tmp_path: Path) -> None:
    src, copy = tmp_path / "mixed.pcapng", tmp_path / "copy.pcap"
    _mixed(src)
    res = _sk("-r", str(src), "-w", str(copy))
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        f"socketkit sniff: {copy}: a pcap file holds one link type, and this input has 1 and "
        "276: write pcapng (--pcapng)"
    ]
    assert not copy.exists()  # no partial copy left behind


def test_reading_and_writing_one_file_is_refused_and_keeps_it(tmp_path: Path) -> None:
    src = tmp_path / "mixed.pcapng"
    _mixed(src)
    before = src.read_bytes()
    res = _sk("-r", str(src), "-w", str(src))
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"socketkit sniff: -r and -w name the same file ({src}): writing would destroy what "
        "is being read",
        "see 'socketkit sniff --help'",
    ]
    assert src.read_bytes() == before


def test_a_pcap_copy_keeps_the_inputs_snap_length(tmp_path: Path) -> None:
    """The copy's header said 262144 whatever the input's snap length was."""
    import struct

    frame = build.eth(build.ip4(build.udp(1, 2, b"x" * 40), 17))
    src, copy = tmp_path / "in.pcap", tmp_path / "out.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 64, 1)
    record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    src.write_bytes(header + record)
    res = _sk("-r", str(src), "-w", str(copy))
    assert res.returncode == 0, res.stderr
    out = copy.read_bytes()
    assert struct.unpack_from("<I", out, 16)[0] == 64
    # The 82-byte record is kept up to the snap length, as libpcap reads it; its length stays.
    assert out[24:] == struct.pack("<IIII", 1, 0, 64, len(frame)) + frame[:64]
