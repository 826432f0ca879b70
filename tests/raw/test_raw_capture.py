"""Live capture through the library: kernel filters, exact counts on lo, SLL2 on any, async."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from socketkit import capture
from socketkit.raw.capture import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2
from support.privilege import require_root, require_tool
from support.procs import running

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send_udp(port: int, payloads: list[bytes], noise_port: int | None = None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))
            if noise_port is not None:
                s.sendto(b"noise", ("127.0.0.1", noise_port))


def _udp_payload(frame: bytes, linktype: int) -> bytes:
    start = 14 if linktype == LINKTYPE_ETHERNET else 20
    ihl = (frame[start] & 0x0F) * 4
    return frame[start + ihl + 8 :]


def test_loopback_udp_each_packet_exactly_once() -> None:
    port, noise = _free_udp_port(), _free_udp_port()
    payloads = [b"msg-%04d" % i for i in range(300)]
    with capture("lo", filter=f"udp dst port {port}", timeout=2.0) as cap:
        assert cap.linktype == LINKTYPE_ETHERNET
        _send_udp(port, payloads, noise_port=noise)
        packets = list(cap)
    assert [_udp_payload(p.data, p.linktype) for p in packets] == payloads
    assert cap.stats().captured == 300
    assert cap.stats().dropped == 0
    assert all(p.ifindex == socket.if_nametoindex("lo") for p in packets)
    assert all(p.orig_len == len(p.data) == 14 + 20 + 8 + 8 for p in packets)
    stamps = [p.ts_ns for p in packets]
    assert stamps == sorted(stamps)
    assert abs(stamps[0] - time.time_ns()) < 10 * 10**9


def test_count_stops_exactly_and_snaplen_truncates_in_the_kernel() -> None:
    port = _free_udp_port()
    with capture("lo", filter=f"udp port {port}", count=5, snaplen=60, timeout=10) as cap:
        _send_udp(port, [bytes(500)] * 8)
        packets = list(cap)
    assert len(packets) == 5
    assert all(len(p.data) == 60 and p.orig_len == 14 + 20 + 8 + 500 for p in packets)


def test_any_interface_gives_sll2_and_no_loopback_duplicates() -> None:
    port = _free_udp_port()
    payloads = [b"any-%03d" % i for i in range(50)]
    with capture("any", filter=f"udp port {port}", timeout=1.5) as cap:
        assert cap.linktype == LINKTYPE_LINUX_SLL2
        _send_udp(port, payloads)
        packets = list(cap)
    assert [_udp_payload(p.data, p.linktype) for p in packets] == payloads
    proto, _res, ifindex, hatype, pkttype, _halen = struct.unpack_from(">HHIHBB", packets[0].data)
    assert (proto, ifindex, hatype, pkttype) == (0x0800, socket.if_nametoindex("lo"), 772, 0)
    assert packets[0].orig_len == 20 + 20 + 8 + 7


def test_tcp_port_filter_yields_exactly_what_tcpdump_sees(tmp_path: Path) -> None:
    """Differential against tcpdump on lo: same packet count, only port X, no duplicates."""
    tcpdump = require_tool("tcpdump")
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    ref = tmp_path / "ref.pcap"
    with running(
        [
            tcpdump,
            "-i",
            "lo",
            "-w",
            str(ref),
            "-U",
            "--immediate-mode",
            "-s",
            "256",
            "-B",
            "16384",
            f"tcp port {port}",
        ],
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stderr is not None
        assert b"listening" in proc.stderr.readline()
        with capture("lo", filter=f"tcp port {port}", timeout=3.0) as cap:

            def serve() -> None:
                conn, _ = srv.accept()
                with conn:
                    while data := conn.recv(65536):
                        conn.sendall(data.upper())

            t = threading.Thread(target=serve)
            t.start()
            with socket.create_connection(("127.0.0.1", port)) as c:
                for i in range(20):
                    c.sendall(b"line %d\n" % i)
                    c.recv(100)
            t.join(10)
            _send_udp(_free_udp_port(), [b"not tcp"] * 5)
            packets = list(cap)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    srv.close()
    ref_count = int(
        subprocess.run(
            [tcpdump, "-r", str(ref), "-nn", "-q"], capture_output=True, text=True, timeout=30
        ).stdout.count("\n")
    )
    assert ref_count >= 40  # the exchange itself, at least one segment per message each way
    assert len(packets) == ref_count
    raw = [p.data for p in packets]
    assert len(set(raw)) == len(raw)  # no loopback duplicates (TCP timestamps make each unique)
    for p in packets:
        sport, dport = struct.unpack_from("!HH", p.data, 14 + 20)
        assert port in (sport, dport)


def test_async_iteration() -> None:
    port = _free_udp_port()

    async def main() -> list[bytes]:
        async with capture("lo", filter=f"udp port {port}", count=10, timeout=10) as cap:
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, _send_udp, port, [b"a%d" % i for i in range(10)])
            return [_udp_payload(p.data, p.linktype) async for p in cap]

    assert asyncio.run(main()) == [b"a%d" % i for i in range(10)]


def test_timeout_with_no_traffic_ends_the_iteration() -> None:
    start = time.monotonic()
    with capture("lo", filter="udp port 9", timeout=0.3) as cap:
        assert list(cap) == []
    assert time.monotonic() - start < 3


def test_unknown_interface_is_one_clear_error() -> None:
    from socketkit import SocketkitError

    with pytest.raises(SocketkitError, match="no such interface"):
        capture("nosuchif0")


@pytest.mark.parametrize("snaplen", [-5, 262145])
def test_out_of_range_snaplen_is_refused(snaplen: int) -> None:
    with pytest.raises(ValueError, match="snaplen must be 0 to 262144"):
        capture("lo", snaplen=snaplen)


def test_any_with_a_link_layer_filter_falls_back_to_user_space_filtering() -> None:
    """SLL2 header bytes other than protocol/ifindex/pkttype do not exist for the kernel: the
    same program then runs in user space, and the result is the same."""
    from socketkit.raw import bpf

    port = _free_udp_port()
    expression = f"udp port {port} and link[11] = 6"  # SLL2 link-layer address length
    assert bpf.for_cooked_socket(bpf.compile_filter(expression, 276)) is None
    with capture("any", filter=expression, timeout=1.5) as cap:
        _send_udp(port, [b"ll-%d" % i for i in range(20)], noise_port=_free_udp_port())
        packets = list(cap)
    assert [_udp_payload(p.data, p.linktype) for p in packets] == [b"ll-%d" % i for i in range(20)]


def test_ring_overflow_is_counted_as_kernel_drops() -> None:
    """Nothing vanishes: what the full ring could not take is in the drop figure."""
    port = _free_udp_port()
    sent = 40_000
    with capture("lo", filter=f"udp port {port}", timeout=30, buffer_size=2 << 20) as cap:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(sent):  # nobody reads meanwhile: a 2 MiB ring holds ~14 k of these
                s.sendto(b"%08d" % i, ("127.0.0.1", port))
        time.sleep(0.3)  # the block in progress is handed over (50 ms block timeout)
        cap.stop()
        captured = sum(1 for _ in cap)
        stats = cap.stats()
    assert stats.captured == captured
    assert stats.dropped > 0
    assert captured + stats.dropped == sent
