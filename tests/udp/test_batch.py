"""Batched datagrams (``socketkit._udp_batch``): every path keeps datagram boundaries.

The paths are forced one by one through the module's switches, so each runs here whatever the
kernel would pick: sendmmsg/recvmmsg (``HAVE_MMSG``), one system call per datagram (the
fallback), GSO runs on send (``HAVE_GSO``) and GRO-coalesced buffers on receive
(``enable_gro``). What is checked is what a peer sees: the datagrams, their sizes, order,
addresses and the truncation flag.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socketkit import _udp_batch as batch
from socketkit._udp import DropCounter, enable_drop_counter

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_NO_CHECK = 11  # asm-generic/socket.h
SO_RCVBUFFORCE = 33
SRC = Path(__file__).resolve().parents[2] / "src"
PURE = bool(os.environ.get("SOCKETKIT_PURE"))
#: c: sendmmsg/recvmmsg in _speedups.c; ctypes: the same calls from Python (the fallback where
#: the extension is not built); plain: one system call per datagram (no sendmmsg/recvmmsg).
PATHS = ["ctypes", "plain"] if PURE else ["c", "ctypes", "plain"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force one implementation of the batches."""
    name: str = request.param
    if name != "plain":
        assert batch.HAVE_MMSG  # Linux: libc has sendmmsg/recvmmsg; a skip would hide a loss
    if name == "c":
        assert batch._c is not None  # built in CI (gcc is installed); see test_c_path_in_use
    else:
        monkeypatch.setattr(batch, "_c", None)
    monkeypatch.setattr(batch, "HAVE_MMSG", name != "plain")
    return name


def test_c_path_in_use() -> None:
    """The C batches are used unless SOCKETKIT_PURE=1 says otherwise (then the Python ones)."""
    from socketkit import _accel

    assert (batch._c is not None) is (not PURE) is _accel.ENABLED


def test_pure_run_has_no_c_batches() -> None:
    """SOCKETKIT_PURE=1: the module runs on ctypes alone, and a batch still goes both ways."""
    code = (
        "import socket; from socketkit import _udp_batch as b\n"
        "assert b._c is None and b.HAVE_MMSG\n"
        "r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))\n"
        "t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "assert b.send_many(t, [b'a', b'bb'], r.getsockname()) == 2\n"
        "import select; select.select([r], [], [], 5)\n"
        "print([d.data for d in b.receive_many(r, 8, 10)])\n"
    )
    env = os.environ | {"SOCKETKIT_PURE": "1", "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "[b'a', b'bb']\n", "")


@pytest.fixture(params=["gso", "no-gso"])
def gso(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    on: bool = request.param == "gso"
    if on:
        assert batch.HAVE_GSO  # the CI kernel has UDP_SEGMENT (4.18+)
    monkeypatch.setattr(batch, "HAVE_GSO", on)
    return on


def _udp_pair(family: socket.AddressFamily) -> tuple[socket.socket, socket.socket]:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    rx = socket.socket(family, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    tx = socket.socket(family, socket.SOCK_DGRAM)
    tx.bind((host, 0))
    return tx, rx


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    tx, rx = _udp_pair(request.param)
    with tx, rx:
        yield tx, rx


def send_all(tx: socket.socket, items: list[Any], to: Any = None) -> int:
    """send_many until every item went; how many calls it took."""
    calls = 0
    deadline = time.monotonic() + 10
    while items:
        assert time.monotonic() < deadline
        calls += 1
        n = batch.send_many(tx, items, to)
        assert 1 <= n <= len(items)
        items = items[n:]
    return calls


def receive(rx: socket.socket, count: int, max_size: int = 65535, **kw: Any) -> list[Any]:
    """receive_many until ``count`` datagrams came (waiting with select between calls)."""
    import select

    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {count} datagrams"
        select.select([rx], [], [], left)
        try:
            got += batch.receive_many(rx, 64, max_size, **kw)
        except BlockingIOError:
            continue
    return got


MIXED = [
    b"a" * 100,
    b"b" * 100,
    b"c" * 100,
    b"d" * 40,  # a shorter last datagram closes a GSO run
    b"e" * 100,
    b"",  # an empty datagram is one of its own
    b"f" * 1400,
    b"g" * 1400,
    b"h" * 1401,  # longer: a new run
    bytearray(b"i" * 7),
    memoryview(b"j" * 9),
    memoryview(bytearray(b"k" * 8)).cast("I"),  # 8 bytes, 2 items of 4
    *[bytes([n]) * 1000 for n in range(70)],  # more than one run of MAX_SEGMENTS
]


def test_mixed_sizes_keep_their_boundaries(
    pair: tuple[socket.socket, socket.socket], path: str, gso: bool
) -> None:
    tx, rx = pair
    send_all(tx, list(MIXED), rx.getsockname())
    got = receive(rx, len(MIXED))
    assert [d.data for d in got] == [bytes(m) for m in MIXED]
    assert all(d.address == tx.getsockname() and not d.truncated for d in got)


def test_boundaries_kept_through_gro(
    pair: tuple[socket.socket, socket.socket], path: str, gso: bool
) -> None:
    tx, rx = pair
    assert batch.enable_gro(rx)
    send_all(tx, list(MIXED), rx.getsockname())
    got = receive(rx, len(MIXED))
    assert [d.data for d in got] == [bytes(m) for m in MIXED]
    assert all(d.address == tx.getsockname() and not d.truncated for d in got)


def _raw_message(rx: socket.socket) -> tuple[int, int]:
    """One kernel message from a GRO socket: (bytes, GRO segment size or 0)."""
    data, anc, _flags, _addr = rx.recvmsg(65536, socket.CMSG_SPACE(4))
    segment = 0
    for level, kind, value in anc:
        if (level, kind) == (SOL_UDP, UDP_GRO):
            segment = struct.unpack("=i", value[:4])[0]
    return len(data), segment


def test_equal_datagrams_go_as_one_gso_message(
    pair: tuple[socket.socket, socket.socket], path: str, gso: bool
) -> None:
    """On loopback a GSO message reaches a GRO socket whole: the receiver sees one buffer of
    ten segments exactly when send_many used GSO, ten datagrams when it did not."""
    tx, rx = pair
    assert batch.enable_gro(rx)
    send_all(tx, [b"x" * 100] * 9 + [b"y" * 60], rx.getsockname())
    rx.settimeout(5)
    if gso:
        assert _raw_message(rx) == (960, 100)
    else:
        assert [_raw_message(rx) for _ in range(10)] == [(100, 0)] * 9 + [(60, 0)]


def test_gro_buffer_split_back_with_truncation(
    pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    """A coalesced buffer made by the kernel itself (a GSO send straight from the socket
    module) comes back as its datagrams; segments longer than max_size are cut and
    reported."""
    tx, rx = pair
    assert batch.enable_gro(rx)
    payload = b"".join(bytes([65 + n]) * 500 for n in range(8)) + b"z" * 120
    tx.sendmsg([payload], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 500))], 0, rx.getsockname())
    got = receive(rx, 9, max_size=300)
    assert [(d.data, d.truncated) for d in got] == [
        *[(bytes([65 + n]) * 300, True) for n in range(8)],
        (b"z" * 120, False),
    ]


def test_truncation_reported_per_datagram(
    pair: tuple[socket.socket, socket.socket], path: str, gso: bool
) -> None:
    tx, rx = pair
    items = [b"s" * 10, b"L" * 2000, b"s" * 64, b"M" * 65, b"t" * 1]
    send_all(tx, items, rx.getsockname())
    got = receive(rx, len(items), max_size=64)
    assert [(d.data, d.truncated) for d in got] == [
        (b"s" * 10, False),
        (b"L" * 64, True),
        (b"s" * 64, False),
        (b"M" * 64, True),
        (b"t", False),
    ]


def test_each_item_goes_to_its_own_destination(path: str, gso: bool) -> None:
    tx, rx1 = _udp_pair(socket.AF_INET)
    rx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx2.bind(("127.0.0.1", 0))
    with tx, rx1, rx2:
        a, b = rx1.getsockname(), rx2.getsockname()
        items: list[Any] = [
            (b"1" * 50, a),
            (b"2" * 50, b),
            (b"3" * 50, b),
            b"4" * 50,  # to the default destination
            (b"5" * 50, a),
            (b"6" * 50, ("127.0.0.1", b[1])),  # an equal address, another tuple
        ]
        send_all(tx, items, a)
        assert [d.data for d in receive(rx1, 3)] == [b"1" * 50, b"4" * 50, b"5" * 50]
        assert [d.data for d in receive(rx2, 3)] == [b"2" * 50, b"3" * 50, b"6" * 50]


def test_connected_socket_without_destination(
    pair: tuple[socket.socket, socket.socket], path: str, gso: bool
) -> None:
    tx, rx = pair
    tx.connect(rx.getsockname())
    send_all(tx, [b"q" * 300] * 5)
    assert [d.data for d in receive(rx, 5)] == [b"q" * 300] * 5


def test_host_name_destination_falls_back_to_sendto(path: str) -> None:
    tx, rx = _udp_pair(socket.AF_INET)
    with tx, rx:
        send_all(tx, [b"n1", b"n2"], ("localhost", rx.getsockname()[1]))
        assert [d.data for d in receive(rx, 2)] == [b"n1", b"n2"]


def test_partial_send_then_would_block(path: str) -> None:
    """A full queue stops the batch part-way: send_many says how many went, then
    BlockingIOError; once the receiver reads, the rest follow in order. (Unix datagrams: a
    loopback UDP sender is never held back, its datagrams leave its send queue at once.)"""
    with tempfile.TemporaryDirectory() as tmp:
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind(os.path.join(tmp, "rx"))
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            items = [n.to_bytes(2, "big") * 700 for n in range(200)]
            n = batch.send_many(tx, items, rx.getsockname())
            assert 1 <= n < len(items)
            with pytest.raises(BlockingIOError):
                batch.send_many(tx, items[n:], rx.getsockname())
            got = receive(rx, n)
            assert [d.data for d in got] == items[:n]
            sent = n
            deadline = time.monotonic() + 10
            while len(got) < len(items):  # the rest, as the queue drains
                assert time.monotonic() < deadline
                if sent < len(items):
                    with contextlib.suppress(BlockingIOError):
                        sent += batch.send_many(tx, items[sent:], rx.getsockname())
                got += receive(rx, 1)
            assert [d.data for d in got] == items


def test_emsgsize_first_raises_later_ends_the_batch(
    pair: tuple[socket.socket, socket.socket], path: str, gso: bool
) -> None:
    tx, rx = pair
    huge = b"h" * 70000
    with pytest.raises(OSError) as info:
        batch.send_many(tx, [huge, b"ok"], rx.getsockname())
    assert info.value.errno == errno.EMSGSIZE
    assert batch.send_many(tx, [b"a", b"b", huge, b"c"], rx.getsockname()) == 2
    with pytest.raises(OSError) as info:
        batch.send_many(tx, [huge, b"c"], rx.getsockname())
    assert info.value.errno == errno.EMSGSIZE
    assert [d.data for d in receive(rx, 2)] == [b"a", b"b"]


def test_empty_queue_is_blocking_io_error_even_on_a_blocking_socket(
    pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    _tx, rx = pair
    rx.setblocking(True)
    with pytest.raises(BlockingIOError):
        batch.receive_many(rx, 64, 2048)


@pytest.fixture
def unix_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Unix datagram sockets: a send is queued at the receiver before it returns, so a test can
    count on what is queued (loopback UDP goes through the softirq backlog, which a loaded
    host may run later)."""
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with tx, rx:
        yield tx, rx


def test_receive_many_reads_at_most_max_count(
    unix_pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    tx, rx = unix_pair
    items = [bytes([n]) * 20 for n in range(8)]  # under net.unix.max_dgram_qlen (10)
    send_all(tx, items)
    first = batch.receive_many(rx, 3, 100)
    assert [d.data for d in first] == items[:3]
    assert [d.data for d in batch.receive_many(rx, 64, 100)] == items[3:]
    with pytest.raises(BlockingIOError):
        batch.receive_many(rx, 64, 100)


def test_unix_datagrams(path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with rx, tx, abstract:
            rx.bind(os.path.join(tmp, "rx"))
            tx.bind(os.path.join(tmp, "tx"))
            name = b"\0socketkit-batch-%d" % os.getpid()
            abstract.bind(name)
            items: list[Any] = [
                b"u" * 10,
                b"u" * 10,
                b"v" * 100000,  # longer than any UDP datagram
                (b"w" * 5, name),
            ]
            send_all(tx, items, rx.getsockname())
            got = receive(rx, 3, max_size=200000)
            assert [d.data for d in got] == [b"u" * 10, b"u" * 10, b"v" * 100000]
            assert {d.address for d in got} == {tx.getsockname()}
            other = receive(abstract, 1)
            assert (other[0].data, other[0].address) == (b"w" * 5, tx.getsockname())
            # An unbound sender has no address.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anon:
                send_all(anon, [b"anon"], rx.getsockname())
            got = receive(rx, 1)
            assert (got[0].data, got[0].address) == (b"anon", None)


def test_dropped_before_counts_kernel_drops(path: str) -> None:
    tx, rx = _udp_pair(socket.AF_INET)
    with tx, rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        drops = DropCounter(enable_drop_counter(rx))
        assert drops.enabled
        total = 300
        send_all(tx, [b"d" * 1000] * total, rx.getsockname())
        got = receive(rx, 1, drops=drops)
        while True:  # drained: nothing more after a pause (a loaded host delivers late)
            time.sleep(0.1)
            before = len(got)
            with contextlib.suppress(BlockingIOError):
                while True:
                    got += batch.receive_many(rx, 64, 2048, drops=drops)
            if len(got) == before:
                break
        # Datagrams queued before the queue filled carry no drops; the next one carries
        # every drop since (the kernel stamps the counter when it queues a datagram).
        assert 0 < len(got) < total
        assert {d.dropped_before for d in got} == {0}
        send_all(tx, [b"e", b"f"], rx.getsockname())
        assert [(d.data, d.dropped_before) for d in receive(rx, 2, drops=drops)] == [
            (b"e", total - len(got)),
            (b"f", 0),
        ]


def test_without_a_drop_counter_dropped_before_is_unknown(
    pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    tx, rx = pair
    send_all(tx, [b"x"], rx.getsockname())
    assert [d.dropped_before for d in receive(rx, 1)] == [None]


def test_gso_refused_by_the_kernel_falls_back_to_plain(path: str) -> None:
    """A socket whose sends the kernel will not segment (SO_NO_CHECK: udp_send_skb answers
    a GSO message with EINVAL) still gets every datagram out, one by one."""
    tx, rx = _udp_pair(socket.AF_INET)
    with tx, rx:
        tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        with pytest.raises(OSError) as info:  # the kernel's answer to a GSO message here
            tx.sendmsg([b"r" * 200], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 100))], 0,
                       rx.getsockname())  # fmt: skip
        assert info.value.errno == errno.EINVAL
        items = [b"r" * 100] * 5 + [b"s" * 100] * 3
        send_all(tx, items, rx.getsockname())
        assert [d.data for d in receive(rx, 8)] == items


class _CountingLibc:
    """libc with its sendmmsg/recvmmsg calls counted."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.calls: dict[str, list[int]] = {"sendmmsg": [], "recvmmsg": []}

    def sendmmsg(self, fd: int, msgs: int, count: int, flags: int) -> int:
        n: int = self.lib.sendmmsg(fd, msgs, count, flags)
        self.calls["sendmmsg"].append(n)
        return n

    def recvmmsg(self, fd: int, msgs: int, count: int, flags: int, timeout: Any) -> int:
        n: int = self.lib.recvmmsg(fd, msgs, count, flags, timeout)
        self.calls["recvmmsg"].append(n)
        return n


def test_mmsg_path_is_one_system_call_per_batch(
    unix_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    tx, rx = unix_pair
    counting = _CountingLibc(batch.load())
    monkeypatch.setattr(batch, "_libc", counting)
    monkeypatch.setattr(batch, "_c", None)  # the ctypes calls (the C ones call libc directly)
    items = [bytes([n]) * (10 + n) for n in range(8)]
    assert batch.send_many(tx, items) == 8
    got = batch.receive_many(rx, 64, 100)
    assert [d.data for d in got] == items
    assert counting.calls == {"sendmmsg": [8], "recvmmsg": [8]}


def test_port_unreachable_on_a_connected_socket_is_raised(
    pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    """ICMP port unreachable for a connected socket: the next receive_many raises
    ECONNREFUSED (the socket's pending error), and the socket works on afterwards."""
    tx, rx = pair
    with socket.socket(tx.family, socket.SOCK_DGRAM) as gone:
        gone.bind((tx.getsockname()[0], 0))
        closed = gone.getsockname()
    tx.connect(closed)
    assert batch.send_many(tx, [b"anyone?"]) == 1
    deadline = time.monotonic() + 5
    while True:
        assert time.monotonic() < deadline
        try:
            batch.receive_many(tx, 8, 100)
        except ConnectionRefusedError:
            break
        except BlockingIOError:
            time.sleep(0.01)
    tx.connect(rx.getsockname())
    rx.connect(tx.getsockname())
    send_all(rx, [b"back"])
    assert [d.data for d in receive(tx, 1)] == [b"back"]


def test_without_gro_in_the_kernel_enable_gro_refuses(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """HAVE_GRO false (an older kernel): enable_gro says no and leaves the socket as it was,
    so reads stay one datagram each."""
    tx, rx = pair
    monkeypatch.setattr(batch, "HAVE_GRO", False)
    assert batch.enable_gro(rx) is False
    assert rx.getsockopt(SOL_UDP, UDP_GRO) == 0
    tx.sendmsg([b"g" * 300], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 100))], 0, rx.getsockname())
    assert [d.data for d in receive(rx, 3)] == [b"g" * 100] * 3


def test_a_gro_run_comes_back_whole_even_past_max_count(
    pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    """One coalesced read is returned in full (nothing is held back), so the list can be
    longer than max_count."""
    tx, rx = pair
    assert batch.enable_gro(rx)
    tx.sendmsg([b"r" * 1000], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 100))], 0, rx.getsockname())
    rx.settimeout(5)
    select_ready(rx)
    got = batch.receive_many(rx, 1, 2048)
    assert [d.data for d in got] == [b"r" * 100] * 10


def select_ready(sock: socket.socket) -> None:
    import select

    assert select.select([sock], [], [], 5)[0]


def test_enable_gso_cuts_every_send(pair: tuple[socket.socket, socket.socket]) -> None:
    """enable_gso (the bench's sender) sets UDP_SEGMENT on the socket: one plain send of
    N * size bytes leaves as N datagrams."""
    tx, rx = pair
    assert batch.enable_gso(tx, 200)
    assert batch.enable_gso(tx, 40000) is False  # two segments would not fit in one message
    tx.sendto(b"s" * 1000, rx.getsockname())
    assert [d.data for d in receive(rx, 5)] == [b"s" * 200] * 5


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(
        st.sampled_from([0, 1, 7, 100, 100, 100, 1400, 1401, 9000]), min_size=1, max_size=150
    ),
    kinds=st.lists(st.sampled_from(["bytes", "bytearray", "memoryview"]), min_size=1),
)
def test_any_mix_arrives_as_sent(sizes: list[int], kinds: list[str], path: str, gso: bool) -> None:
    """Whatever the sizes and buffer types, every path delivers exactly the items, in order
    (runs, short last datagrams and empty ones in any arrangement)."""
    tx, rx = _udp_pair(socket.AF_INET)
    with tx, rx:
        items: list[Any] = []
        for n, size in enumerate(sizes):
            payload = bytes([n % 251]) * size
            kind = kinds[n % len(kinds)]
            items.append(
                payload
                if kind == "bytes"
                else bytearray(payload)
                if kind == "bytearray"
                else memoryview(payload)
            )
        send_all(tx, list(items), rx.getsockname())
        got = receive(rx, len(items))
        assert [d.data for d in got] == [bytes(i) for i in items]


def test_an_empty_batch_is_a_usage_error(pair: tuple[socket.socket, socket.socket]) -> None:
    tx, _rx = pair
    with pytest.raises(ValueError):
        batch.send_many(tx, [])


def test_bad_addresses_fail_as_sendto_fails(path: str) -> None:
    """An address the batch paths cannot encode goes to sendto, which raises its usual error
    (a port or an IPv6 flow label out of range) before anything is sent."""
    tx, rx = _udp_pair(socket.AF_INET6)
    with tx, rx:
        host, port = rx.getsockname()[:2]
        with pytest.raises(OverflowError):
            batch.send_many(tx, [b"x"], (host, 70000))
        with pytest.raises(OverflowError):
            batch.send_many(tx, [b"x"], (host, port, 0x100000, 0))
        send_all(tx, [b"ok"], (host, port, 0xFFFFF, 0))
        assert [d.data for d in receive(rx, 1)] == [b"ok"]


def test_receive_slots_are_bounded_for_a_huge_max_size(
    unix_pair: tuple[socket.socket, socket.socket], path: str
) -> None:
    """max_size is the room per message: with 3 MiB per message, one call reads only as many
    messages as fit in 8 MiB (2), so a large max_size cannot make a call allocate 64 x it."""
    tx, rx = unix_pair
    items = [bytes([n]) * 10 for n in range(5)]
    send_all(tx, items)
    first = batch.receive_many(rx, 64, 3 << 20)
    assert [d.data for d in first] == (items[:2] if path != "plain" else items)
    rest = [] if path == "plain" else batch.receive_many(rx, 64, 3 << 20)
    assert [d.data for d in first + rest] == items[: len(first) + len(rest)]
