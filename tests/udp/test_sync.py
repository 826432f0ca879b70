"""socketkit.udp / DatagramSocket (sync): addresses, send/receive, timeouts, close, iteration,
IPv4, IPv6 and Unix datagrams. Peers are plain sockets where the point is what the wire carries."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import socketkit
from socketkit import Datagram, DatagramSocket


@pytest.fixture
def plain4() -> Iterator[socket.socket]:
    """A plain IPv4 UDP socket on loopback (the test's own peer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def test_exports() -> None:
    assert socketkit.DatagramSocket is DatagramSocket
    assert issubclass(socketkit.DatagramTooLarge, socketkit.SocketkitError)
    assert "udp" in dir(socketkit) and "Datagram" in dir(socketkit)


def test_ipv4_both_directions_and_addresses(plain4: socket.socket) -> None:
    port = plain4.getsockname()[1]
    with socketkit.udp("127.0.0.1:0") as sock:
        local_port = sock.socket.getsockname()[1]
        assert sock.local == f"127.0.0.1:{local_port}"
        assert sock.remote is None and sock.family == socket.AF_INET
        assert sock.send(b"ping", f"127.0.0.1:{port}") == 4
        data, address = plain4.recvfrom(100)
        assert (data, address) == (b"ping", ("127.0.0.1", local_port))
        plain4.sendto(b"pong", address)
        got = sock.receive(timeout=10)
        assert got == Datagram(b"pong", ("127.0.0.1", port), False, 0)
        assert got.peer == f"127.0.0.1:{port}"
        # the kernel address is accepted back as "to"
        sock.send(b"again", got.address)
        assert plain4.recv(100) == b"again"


def test_ipv6() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
        peer.bind(("::1", 0))
        peer.settimeout(10)
        port = peer.getsockname()[1]
        with socketkit.udp("[::1]:0") as sock:
            assert sock.family == socket.AF_INET6
            assert sock.local == f"[::1]:{sock.socket.getsockname()[1]}"
            sock.send(b"six", f"[::1]:{port}")
            data, address = peer.recvfrom(10)
            assert data == b"six"
            peer.sendto(b"back", address)
            got = sock.receive(timeout=10)
            assert got.data == b"back" and got.peer == f"[::1]:{port}"


def test_unbound_is_dual_stack_and_reaches_ipv4(plain4: socket.socket) -> None:
    port = plain4.getsockname()[1]
    with socketkit.udp() as sock:
        assert sock.family == socket.AF_INET6 and sock.local.startswith("[::]:")
        sock.send(b"mapped", f"127.0.0.1:{port}")
        sock.send(b"tuple", ("127.0.0.1", port))
        assert plain4.recv(100) == b"mapped"
        data, address = plain4.recvfrom(100)
        assert data == b"tuple"
        plain4.sendto(b"reply", address)
        got = sock.receive(timeout=10)
        assert got.data == b"reply"
        assert got.address[:2] == ("::ffff:127.0.0.1", port)  # an IPv4 sender, mapped
        assert got.peer == f"[::ffff:127.0.0.1]:{port}"
        sock.send(b"to the mapped address", got.address)
        assert plain4.recv(100) == b"to the mapped address"


def test_connected_remote(plain4: socket.socket) -> None:
    port = plain4.getsockname()[1]
    with socketkit.udp(remote=f"127.0.0.1:{port}") as sock:
        assert sock.remote == f"127.0.0.1:{port}"
        assert sock.family == socket.AF_INET
        sock.send(b"connected")
        data, address = plain4.recvfrom(100)
        assert data == b"connected"
        # a connected socket gets only its remote's datagrams
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(b"stranger", address)
        plain4.sendto(b"remote", address)
        assert sock.receive(timeout=10).data == b"remote"
        with pytest.raises(socketkit.ReadTimeout):
            sock.receive(timeout=0.2)


def test_boundaries_kept(plain4: socket.socket) -> None:
    sizes = [0, 1, 7, 100, 1400, 9000, 65507]
    port = plain4.getsockname()[1]
    with socketkit.udp("127.0.0.1:0", receive_buffer=1 << 20) as sock:
        for n, size in enumerate(sizes):
            plain4.sendto(bytes([n]) * size, sock.socket.getsockname())
        got = [sock.receive(timeout=10) for _ in sizes]
        assert [len(d.data) for d in got] == sizes
        assert all(d.data == bytes([n]) * len(d.data) for n, d in enumerate(got))
        assert not any(d.truncated for d in got)
        for size in sizes:
            sock.send(b"x" * size, ("127.0.0.1", port))
        assert [len(plain4.recv(70000)) for _ in sizes] == sizes


def test_send_without_destination_is_an_address_error() -> None:
    with socketkit.udp("127.0.0.1:0") as sock:
        with pytest.raises(socketkit.AddressError, match="no destination"):
            sock.send(b"x")
        with pytest.raises(socketkit.AddressError, match="no port"):
            sock.send(b"x", "127.0.0.1:0")
        with pytest.raises(socketkit.AddressError, match="no IPv4 address"):
            sock.send(b"x", "[::1]:9")
        with pytest.raises(socketkit.AddressError, match="from a UDP socket"):
            sock.send(b"x", "unix:/tmp/nothing")


def test_bad_creation_arguments(tmp_path: Path) -> None:
    with pytest.raises(socketkit.AddressError, match="cannot mix a Unix and an IP address"):
        socketkit.udp(f"unix:{tmp_path}/a", remote="127.0.0.1:9")
    with pytest.raises(socketkit.AddressError, match="has no port"):
        socketkit.udp(remote="127.0.0.1:0")
    with pytest.raises(ValueError, match="max_size"):
        socketkit.udp(max_size=0)
    with pytest.raises(socketkit.AddressError, match="needs family AF_UNIX"):
        socketkit.udp(f"unix:{tmp_path}/b", family=socket.AF_INET)


def test_address_in_use_says_so() -> None:
    in_use = r"cannot bind to 127\.0\.0\.1:\d+: address already in use"
    with (
        socketkit.udp("127.0.0.1:0") as first,
        pytest.raises(socketkit.SocketkitError, match=in_use),
    ):
        socketkit.udp(first.local)


def test_reuse_port_shares_the_port() -> None:
    first = socketkit.udp("127.0.0.1:0", reuse_port=True)
    with first, socketkit.udp(first.local, reuse_port=True) as second:
        assert second.local == first.local


def test_buffers_and_broadcast_are_set() -> None:
    with socketkit.udp("127.0.0.1:0", receive_buffer=100_000, send_buffer=50_000,
                       broadcast=True) as sock:  # fmt: skip
        raw = sock.socket
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 200_000  # doubled: socket(7)
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 100_000
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1


# -- timeouts ----------------------------------------------------------------------------------


def test_receive_timeout_takes_nothing(plain4: socket.socket) -> None:
    with socketkit.udp("127.0.0.1:0") as sock:
        start = time.monotonic()
        with pytest.raises(socketkit.ReadTimeout, match="receive timed out"):
            sock.receive(timeout=0.2)
        assert time.monotonic() - start >= 0.2
        plain4.sendto(b"late", sock.socket.getsockname())
        assert sock.receive(timeout=10).data == b"late"
        # a zero timeout polls: what is queued is taken
        plain4.sendto(b"queued", sock.socket.getsockname())
        deadline = time.monotonic() + 10
        while True:
            try:
                assert sock.receive(timeout=0).data == b"queued"
                break
            except socketkit.ReadTimeout:
                assert time.monotonic() < deadline
                time.sleep(0.01)


def test_default_timeout_and_timeout_none_override(plain4: socket.socket) -> None:
    with socketkit.udp("127.0.0.1:0", default_timeout=0.1) as sock:
        with pytest.raises(TimeoutError):  # ReadTimeout is also the builtin TimeoutError
            sock.receive()

        def later() -> None:
            time.sleep(0.3)
            plain4.sendto(b"after default", sock.socket.getsockname())

        thread = threading.Thread(target=later)
        thread.start()
        try:
            assert sock.receive(timeout=None).data == b"after default"
        finally:
            thread.join()


def test_socket_stays_blocking_with_no_timeout_of_its_own() -> None:
    with socketkit.udp("127.0.0.1:0", default_timeout=1.0) as sock:
        assert sock.socket.gettimeout() is None


# -- close -------------------------------------------------------------------------------------


def test_close_is_idempotent_and_calls_after_close_fail() -> None:
    sock = socketkit.udp("127.0.0.1:0")
    sock.close()
    sock.close()
    assert sock.closed
    with pytest.raises(socketkit.ClosedResourceError):
        sock.receive(timeout=1)
    with pytest.raises(socketkit.ClosedResourceError):
        sock.send(b"x", "127.0.0.1:9")
    with pytest.raises(socketkit.ClosedResourceError):
        sock.receive_into(bytearray(10))
    assert "closed" in repr(sock)


@pytest.mark.parametrize("kind", ["inet", "unix"])
def test_close_from_another_thread_wakes_a_blocked_receive(kind: str, tmp_path: Path) -> None:
    local = "127.0.0.1:0" if kind == "inet" else f"unix:{tmp_path}/wake.sock"
    sock = socketkit.udp(local)
    outcome: list[BaseException | Datagram] = []

    def receiver() -> None:
        try:
            outcome.append(sock.receive())  # no timeout: blocked in recvmsg
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    time.sleep(0.2)
    sock.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], socketkit.ClosedResourceError)


def test_iteration_ends_when_closed(plain4: socket.socket) -> None:
    sock = socketkit.udp("127.0.0.1:0")
    seen: list[bytes] = []

    def consume() -> None:
        for datagram in sock:
            seen.append(datagram.data)

    thread = threading.Thread(target=consume)
    thread.start()
    for n in range(3):
        plain4.sendto(b"d%d" % n, sock.socket.getsockname())
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sock.close()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [b"d0", b"d1", b"d2"]


# -- receive_into --------------------------------------------------------------------------------


def test_receive_into(plain4: socket.socket) -> None:
    with socketkit.udp("127.0.0.1:0") as sock:
        buffer = bytearray(8)
        plain4.sendto(b"short", sock.socket.getsockname())
        count, address, truncated = sock.receive_into(buffer, timeout=10)
        assert (count, bytes(buffer[:count]), truncated) == (5, b"short", False)
        assert address == plain4.getsockname()
        plain4.sendto(b"0123456789", sock.socket.getsockname())
        count, _, truncated = sock.receive_into(memoryview(buffer), timeout=10)
        assert (count, bytes(buffer), truncated) == (8, b"01234567", True)
        with pytest.raises(socketkit.ReadTimeout):
            sock.receive_into(buffer, timeout=0.05)


# -- Unix datagrams --------------------------------------------------------------------------------


def test_unix_path_and_unbound_client_gets_replies(tmp_path: Path) -> None:
    path = tmp_path / "server.sock"
    with socketkit.udp(f"unix:{path}") as server:
        assert server.local == f"unix:{path}" and server.family == socket.AF_UNIX
        with socketkit.udp(remote=f"unix:{path}") as client:
            # no local address given: bound to a kernel-chosen abstract name (autobind)
            assert client.local.startswith("unix:@") and client.remote == f"unix:{path}"
            client.send(b"hello")
            got = server.receive(timeout=10)
            assert got.data == b"hello" and got.peer == client.local
            assert got.dropped_before == 0
            server.send(b"reply", got.address)
            assert client.receive(timeout=10) == Datagram(b"reply", str(path), False, 0)
        server.send(b"by name", f"unix:{path}")  # to ourselves, by the address syntax
        assert server.receive(timeout=10).data == b"by name"
    assert not path.exists()  # the socket file we created is removed on close


def test_unix_abstract_name() -> None:
    name = f"socketkit-test-{os.getpid()}-{time.monotonic_ns()}"
    with socketkit.udp(f"unix:@{name}") as server:
        assert server.local == f"unix:@{name}"
        with socketkit.udp() as plain_client:
            assert plain_client.family != socket.AF_UNIX
        with socketkit.udp(remote=f"unix:@{name}") as client:
            client.send(b"abstract")
            got = server.receive(timeout=10)
            assert got.data == b"abstract"
            server.send(b"back", got.address)
            assert client.receive(timeout=10).data == b"back"


def test_unix_stale_socket_file_is_replaced_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    leftover.bind(str(path))
    leftover.close()  # the file stays: a stale socket
    assert path.exists()
    with socketkit.udp(f"unix:{path}") as sock:
        assert sock.local == f"unix:{path}"
        with pytest.raises(socketkit.SocketkitError, match="another server is listening there"):
            socketkit.udp(f"unix:{path}")
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(socketkit.AddressError, match="not a socket"):
        socketkit.udp(f"unix:{regular}")
    assert regular.read_text() == "x"


def test_unix_unbound_sender_is_shown_as_unix() -> None:
    name = f"socketkit-test-unbound-{os.getpid()}"
    with socketkit.udp(f"unix:@{name}") as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anonymous:
            anonymous.sendto(b"anon", f"\0{name}")
        got = server.receive(timeout=10)
        assert got.data == b"anon" and got.address is None and got.peer == "unix:"


def test_wrapping_a_socket_of_your_own(plain4: socket.socket) -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(5)
    with DatagramSocket(raw) as sock:
        assert raw.gettimeout() is None
        plain4.sendto(b"own", raw.getsockname())
        assert sock.receive(timeout=10).data == b"own"
    assert raw.fileno() == -1
    with socket.socket() as tcp, pytest.raises(ValueError, match="not a datagram socket"):
        DatagramSocket(tcp)


# -- many datagrams per call (over socketkit/_udp_batch.py) -------------------------------------


def test_send_many_and_receive_many_keep_boundaries(plain4: socket.socket) -> None:
    sizes = [1, 2, 3, 1400, 1400, 1400, 5, 0, 9000]
    with socketkit.udp("127.0.0.1:0", receive_buffer=1 << 20) as rx:
        with socketkit.udp(remote=rx.local) as tx:
            assert tx.send_many([bytes([n]) * size for n, size in enumerate(sizes)]) == 9
            got: list[Datagram] = []
            while len(got) < len(sizes):
                got += rx.receive_many(timeout=10)
            assert [len(d.data) for d in got] == sizes
            assert [d.data[:1] for d in got if d.data] == [
                bytes([n]) for n, size in enumerate(sizes) if size
            ]
            assert {d.peer for d in got} == {tx.local}
            assert all(d.dropped_before == 0 and not d.truncated for d in got)
        # per-item addresses in the address syntax, and to= for the rest
        target = f"127.0.0.1:{plain4.getsockname()[1]}"
        assert rx.send_many([(b"own", target), b"default"], to=target) == 2
        assert [plain4.recv(100), plain4.recv(100)] == [b"own", b"default"]
        with pytest.raises(socketkit.AddressError, match="no destination"):
            rx.send_many([b"x"])
        with pytest.raises(socketkit.ReadTimeout, match="receive_many timed out"):
            rx.receive_many(timeout=0.05)


def test_receive_many_max_and_truncation(plain4: socket.socket) -> None:
    with socketkit.udp("127.0.0.1:0", max_size=4) as rx:
        for n in range(5):
            plain4.sendto(b"%d-long" % n, rx.socket.getsockname())
        first = rx.receive_many(2, timeout=10)
        assert [d.data for d in first] == [b"0-lo", b"1-lo"]
        assert all(d.truncated for d in first)
        rest: list[Datagram] = []
        while len(rest) < 3:
            rest += rx.receive_many(timeout=10)
        assert [d.data for d in rest] == [b"2-lo", b"3-lo", b"4-lo"]
        with pytest.raises(ValueError, match="max must be at least 1"):
            rx.receive_many(0)


def test_send_many_too_large_says_which_and_the_limit(plain4: socket.socket) -> None:
    with socketkit.udp(remote=f"127.0.0.1:{plain4.getsockname()[1]}") as tx:
        with pytest.raises(socketkit.DatagramTooLarge) as info:
            tx.send_many([b"ok", b"x" * 65508, b"never"])
        assert (info.value.size, info.value.limit) == (65508, 65507)
        assert plain4.recv(100) == b"ok"  # the items before it went


def test_receive_many_woken_by_close() -> None:
    sock = socketkit.udp("127.0.0.1:0")
    outcome: list[object] = []

    def receiver() -> None:
        try:
            outcome.append(sock.receive_many())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    time.sleep(0.2)
    sock.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], socketkit.ClosedResourceError)


# -- multicast methods (over socketkit/_multicast.py; docs/multicast.md tests the rest) ------------


def test_join_leave_and_sending_options_on_loopback() -> None:
    group = "239.255.42.99"
    with socketkit.udp(":0", family=socket.AF_INET) as member:
        port = member.socket.getsockname()[1]
        member.join(group, interface="lo")
        with socketkit.udp("127.0.0.1:0") as sender:
            sender.set_multicast(ttl=1, loopback=True, interface="lo")
            raw = sender.socket
            assert raw.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
            assert raw.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1
            sender.send(b"to the group", f"{group}:{port}")
            got = member.receive(timeout=10)
            assert got.data == b"to the group" and got.peer == sender.local
            member.leave(group, interface="lo")
            sender.send(b"after leave", f"{group}:{port}")
            with pytest.raises(socketkit.ReadTimeout):
                member.receive(timeout=0.3)
        with pytest.raises(socketkit.AddressError, match="not a multicast address"):
            member.join("10.0.0.1")
    with pytest.raises(socketkit.ClosedResourceError):
        member.join(group)


def test_destination_cache_is_bounded(plain4: socket.socket) -> None:
    """Addresses given as ``to`` are resolved once per socket and kept, at most 256 of them.
    (300 loopback addresses, all at our own peer's port.)"""
    port = plain4.getsockname()[1]
    names = [f"127.0.{n // 250}.{n % 250 + 1}:{port}" for n in range(300)]
    with socketkit.udp("127.0.0.1:0") as sock:
        for name in names:
            sock.send(b"", name)
        cache = sock._destinations._cache
        assert len(cache) == 256
        assert names[-1] in cache and names[0] not in cache  # the oldest were dropped
        assert cache[names[-1]] == ("127.0.1.50", port)


def test_default_timeout_set_later_applies(plain4: socket.socket) -> None:
    """Setting default_timeout after opening takes the socket off its no-timeout fast path
    (a receive would otherwise block forever); setting it back to None restores it."""
    with socketkit.udp("127.0.0.1:0") as sock:
        sock.default_timeout = 0.1
        with pytest.raises(socketkit.ReadTimeout):
            sock.receive()
        with pytest.raises(socketkit.ReadTimeout):
            sock.receive_many()
        sock.default_timeout = None
        plain4.sendto(b"fast path", sock.socket.getsockname())
        assert sock.receive().data == b"fast path"


def test_send_timeout_while_a_unix_receiver_is_full(tmp_path: Path) -> None:
    """WriteTimeout when the receiver's queue stays full; that datagram was not sent."""
    path = tmp_path / "full.sock"
    with socketkit.udp(f"unix:{path}") as server, socketkit.udp(remote=f"unix:{path}") as client:
        sent = 0
        with pytest.raises(socketkit.WriteTimeout, match="send buffer stayed full"):
            for _ in range(10_000):
                client.send(b"%d" % sent, timeout=0.2)
                sent += 1
        assert sent > 0
        assert [server.receive(timeout=10).data for _ in range(sent)] == [
            b"%d" % n for n in range(sent)
        ]
        with pytest.raises(socketkit.ReadTimeout):
            server.receive(timeout=0.1)
