"""Filter compilation (libpcap via ctypes), the cooked-socket rewrite, user-space filtering."""

from __future__ import annotations

import ctypes
import re
import struct
import subprocess

import pytest

from socketkit import MissingDependency
from socketkit.raw import bpf
from support.privilege import require_tool


def _tcpdump_dd(linktype_name: str, expression: str) -> list[tuple[int, int, int, int]]:
    out = subprocess.run(
        [require_tool("tcpdump"), "-y", linktype_name, "-dd", expression],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return [
        tuple(int(x, 0) for x in m.groups())  # type: ignore[misc]
        for m in re.finditer(r"\{\s*(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\s*\}", out)
    ]


@pytest.mark.parametrize("expression", ["tcp port 80", "udp and not port 53", "icmp or arp"])
def test_compiled_program_equals_tcpdump_dd(expression: str) -> None:
    assert bpf.compile_filter(expression, 1) == _tcpdump_dd("EN10MB", expression)


def test_syntax_error_is_a_filter_error_with_libpcaps_message() -> None:
    with pytest.raises(bpf.FilterError, match="syntax error"):
        bpf.compile_filter("tcp prot 80", 1)


def test_missing_libpcap_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lib(name: str, *a: object, **k: object) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(bpf, "_lib", None)
    monkeypatch.setattr(bpf.ctypes, "CDLL", no_lib)
    with pytest.raises(MissingDependency, match=r"libpcap0\.8"):
        bpf.compile_filter("tcp", 1)


def test_cooked_rewrite_moves_loads_and_uses_ancillary_protocol() -> None:
    program = bpf.compile_filter("tcp port 80", 276)
    fixed = bpf.for_cooked_socket(program)
    assert fixed is not None
    protocol_load = (0x20, 0, 0, (bpf.SKF_AD_OFF & 0xFFFFFFFF) + bpf.SKF_AD_PROTOCOL)
    assert fixed[0] == protocol_load
    # Every packet load past the SLL2 header moved back by its 20 bytes.
    for before, after in zip(program[1:], fixed[1:], strict=True):
        if before[0] in (0x28, 0x30, 0x48, 0xB1):
            assert after[3] == before[3] - 20


def test_cooked_rewrite_refuses_link_layer_fields() -> None:
    # "inbound" reads the SLL2 packet type: fine (ancillary); a link-address byte is not.
    assert bpf.for_cooked_socket(bpf.compile_filter("inbound", 276)) is not None
    assert bpf.for_cooked_socket([(0x30, 0, 0, 13), (0x06, 0, 0, 1)]) is None


def test_loopback_dedup_prefix_jumps_into_the_program() -> None:
    program = bpf.with_loopback_dedup(bpf.accept_all(100), lo_ifindex=1)
    assert len(program) == 6
    assert program[1] == (0x15, 0, 3, bpf.PACKET_OUTGOING)  # not outgoing -> user program
    assert program[3] == (0x15, 0, 1, 1)  # outgoing but not lo -> user program
    assert program[4] == (0x06, 0, 0, 0)  # outgoing on lo -> drop
    assert program[5] == (0x06, 0, 0, 100)


def _udp_frame(dport: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes(4), bytes(4))
    udp = struct.pack("!HHHH", 1234, dport, 8, 0)
    return bytes(12) + b"\x08\x00" + ip + udp


def test_offline_filter_matches_like_the_kernel_would() -> None:
    flt = bpf.OfflineFilter("udp port 53", 1)
    assert flt.matches(_udp_frame(53))
    assert not flt.matches(_udp_frame(54))
    assert not flt.matches(b"")
