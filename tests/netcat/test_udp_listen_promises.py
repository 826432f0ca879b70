"""What docs/listen.md and docs/connect.md promise about UDP, each checked on the wire with
real peers: without ``-k`` the first peer owns the listener; ``-i`` is exit 5; the ``closed``
event's reasons; a flood of sources beyond ``--max-conns`` cannot grow the listener's memory;
what ``connect -u`` does with stdin reads over 16 KiB; a multicast join with no route."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from support.privilege import require_tool

from .nctools import SK, Collector, finish, free_port, json_events, one_line, started, wait_bound


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _syscw(pid: int) -> int:
    """Write system calls ``pid`` has made (a datagram sent with write() is one)."""
    for line in _read(f"/proc/{pid}/io").splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError(f"no syscw in /proc/{pid}/io")


def _rss_kib(pid: int) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def _port_of(proc: subprocess.Popen[bytes]) -> int:
    """The local UDP port of ``proc``'s one socket (from /proc/net/udp, by socket inode)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
        target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in _read("/proc/net/udp").splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            return int(fields[1].rsplit(":", 1)[1], 16)
    raise AssertionError(f"{proc.args!r} has no UDP socket")


# -- 23: without -k the first peer owns the listener -------------------------------------------


def test_without_k_the_first_peer_owns_the_listener_and_later_peers_get_nothing() -> None:
    """nc.openbsd speaks first and owns the session; socat's datagram is ignored (not printed,
    no session); the listener's stdin goes to nc only, socat receives nothing."""
    require_tool("nc.openbsd")
    require_tool("socat")
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "--json", "--udp-session-idle", "30", "127.0.0.1", str(port)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with started(argv, **pipes) as listener:  # type: ignore[arg-type]
        wait_bound(port, "udp")
        out, events = Collector(listener.stdout), Collector(listener.stderr)
        first_argv = ["nc.openbsd", "-u", "127.0.0.1", str(port)]
        later_argv = ["socat", "-", f"UDP4:127.0.0.1:{port}"]
        with (
            started(first_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as first,
            started(later_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as later,
        ):
            assert first.stdin is not None and later.stdin is not None
            first_out, later_out = Collector(first.stdout), Collector(later.stdout)
            first.stdin.write(b"first\n")
            first.stdin.flush()
            assert out.wait_for(6) == b"first\n"
            writes = _syscw(later.pid)
            later.stdin.write(b"later\n")
            later.stdin.flush()
            # socat's write() to its socket has returned: the datagram is in the listener's
            # queue, ahead of the marker nc sends next (one socket, one queue, in order).
            _wait(lambda: _syscw(later.pid) > writes, "socat to send its datagram")
            first.stdin.write(b"marker\n")
            first.stdin.flush()
            assert out.wait_for(13) == b"first\nmarker\n"  # socat's line was not printed
            assert listener.stdin is not None
            listener.stdin.write(b"reply\n")
            listener.stdin.flush()
            assert first_out.wait_for(6) == b"reply\n"
            # A second reply after the first has arrived: had the listener any session with
            # socat, it would have sent it there in the same pass.
            listener.stdin.write(b"again\n")
            listener.stdin.flush()
            assert first_out.wait_for(12) == b"reply\nagain\n"
            assert later_out.wait_for(1, timeout=0.5) == b""
            first_port = _port_of(first)
        # The event was written before the first datagram's bytes; its pipe may lag.
        _wait(lambda: bool(json_events(events, "accepted")), "the accepted event")
        accepted = json_events(events, "accepted")
        assert [e["remote"] for e in accepted] == [f"127.0.0.1:{first_port}"]
        assert json_events(events, "rejected") == []


# -- 24: -i is exit 5; closed reasons "idle" and "program exited" --------------------------------


def test_listen_udp_idle_timeout_is_exit_5_with_one_line() -> None:
    port = free_port("udp")
    t0 = time.monotonic()
    proc = subprocess.run(
        [*SK, "listen", "-u", "-i", "0.5", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    took = time.monotonic() - t0
    assert proc.returncode == 5
    assert one_line(proc.stderr.decode()) == (
        "socketkit listen: idle timeout: no datagrams for 0.5 s"
    )
    assert took >= 0.5


def test_listen_udp_idle_timeout_counts_from_the_last_datagram() -> None:
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-i", "0.6", "127.0.0.1", str(port)]
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with (
        started(argv, **pipes) as listener,  # type: ignore[arg-type]
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        wait_bound(port, "udp")
        out = Collector(listener.stdout)
        for i in range(4):  # 1.2 s of traffic, never 0.6 s of silence
            peer.sendto(b"%d\n" % i, ("127.0.0.1", port))
            assert out.wait_for(2 * (i + 1)) == b"".join(b"%d\n" % k for k in range(i + 1))
            time.sleep(0.3)
        last = time.monotonic()
        assert finish(listener, 10) == 5
        assert time.monotonic() - last >= 0.6 - 0.3
        assert listener.stderr is not None
        assert one_line(listener.stderr.read().decode()) == (
            "socketkit listen: idle timeout: no datagrams for 0.6 s"
        )


def _closed_events(
    argv: list[str], port: int, send: Callable[[socket.socket], None]
) -> list[dict[str, object]]:
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    with started(argv, **pipes) as listener:  # type: ignore[arg-type]
        wait_bound(port, "udp")
        events = Collector(listener.stderr)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.settimeout(10)
            peer.bind(("127.0.0.1", 0))
            send(peer)
            _wait(lambda: bool(json_events(events, "closed")), "a closed event")
            me = f"127.0.0.1:{peer.getsockname()[1]}"
    closed = json_events(events, "closed")
    assert [e["remote"] for e in closed] == [me]
    return closed


def test_udp_closed_event_reason_idle() -> None:
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "--udp-session-idle", "0.4", "127.0.0.1"]

    def send(peer: socket.socket) -> None:
        peer.sendto(b"hello", ("127.0.0.1", port))

    t0 = time.monotonic()
    (closed,) = _closed_events([*argv, str(port)], port, send)
    assert closed["reason"] == "idle" and closed["error"] is None
    assert (closed["bytes_received"], closed["bytes_sent"]) == (5, 0)
    assert 0.4 <= float(closed["duration"]) < time.monotonic() - t0  # type: ignore[arg-type]


def test_udp_closed_event_reason_program_exited() -> None:
    port = free_port("udp")
    program = 'read line; echo "got $line"'  # answers one line, then exits
    argv = [*SK, "listen", "-u", "-k", "--json", "-c", program, "127.0.0.1", str(port)]

    def send(peer: socket.socket) -> None:
        peer.sendto(b"hi\n", ("127.0.0.1", port))
        assert peer.recv(100) == b"got hi\n"

    (closed,) = _closed_events(argv, port, send)
    assert closed["reason"] == "program exited" and closed["error"] is None
    assert (closed["bytes_received"], closed["bytes_sent"]) == (3, 7)


# -- 25: a flood of sources beyond the limit cannot grow the listener's memory -------------------

FLOOD = 6000
LIMIT = 20


def test_a_flood_of_source_ports_does_not_grow_the_listeners_memory() -> None:
    """6,000 source addresses (fresh ports on 127.0.0.1-30) beyond ``-m 20``: every one is
    refused with an event, and the listener's RSS stays where it was after the first few
    hundred (each remembered peer would cost about a kilobyte: 6 MB)."""
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "-m", str(LIMIT), "127.0.0.1", str(port)]
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    with started(argv, **pipes) as listener:  # type: ignore[arg-type]
        wait_bound(port, "udp")
        events = Collector(listener.stderr)

        def answered() -> int:
            data = bytes(events.data)
            return data.count(b'"event":"accepted"') + data.count(b'"event":"rejected"')

        baseline = None
        admitted: set[tuple[str, int]] = set()
        sent = 0
        for i in range(2 * FLOOD):
            if sent == FLOOD:
                break
            if sent == 500:  # table full and every code path warmed up
                _wait(lambda: answered() >= 500, "500 answers")
                baseline = _rss_kib(listener.pid)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((f"127.0.0.{i % 30 + 1}", 0))
                if s.getsockname() in admitted:
                    continue  # the kernel gave an admitted peer's port out again
                if sent < LIMIT:
                    admitted.add(s.getsockname())
                s.sendto(b"x", ("127.0.0.1", port))
            sent += 1
            if sent % 100 == 0:  # keep within the kernel's receive queue: none is lost
                n = sent
                _wait(lambda n=n: answered() >= n, f"{n} answers")
        _wait(lambda: answered() >= FLOOD, "every answer")
        grown = _rss_kib(listener.pid) - (baseline or 0)
        assert baseline is not None
        assert grown < 1024, f"the listener grew by {grown} KiB refusing {FLOOD - 500} sources"
        assert len(json_events(events, "accepted")) == LIMIT
        rejected = json_events(events, "rejected")
        assert len(rejected) == FLOOD - LIMIT
        assert {e["reason"] for e in rejected} == {f"--max-conns {LIMIT} reached"}
        assert listener.poll() is None


# -- 26: connect -u sends stdin in datagrams of at most 16 KiB ---------------------------------


def test_connect_udp_splits_a_long_read_into_16_kib_datagrams_and_loses_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(10)
        port = peer.getsockname()[1]
        argv = [*SK, "connect", "-u", "-q", "0.2", "127.0.0.1", str(port)]
        payload = os.urandom(40_000)
        with started(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as sender:
            assert sender.stdin is not None
            sender.stdin.write(payload)  # one write of 40,000 bytes into the pipe
            sender.stdin.close()
            got = []
            while sum(map(len, got)) < len(payload):
                got.append(peer.recv(65536))
            assert finish(sender, 10) == 0
        assert b"".join(got) == payload  # split, in order, nothing cut
        assert all(len(g) <= 16384 for g in got)
        assert len(got) >= 3


# -- 27: --multicast with no route to the group ------------------------------------------------


@pytest.fixture
def bare_netns() -> Iterator[str]:
    """A network namespace with only ``lo`` up: no route to any multicast group."""
    name = f"skh9{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize("group", ["239.1.2.3", "ff15::1234"])
def test_multicast_join_with_no_route_is_one_line_and_exit_2(bare_netns: str, group: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", bare_netns, *SK, "listen", "-u", "--multicast", group, "5300"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert one_line(proc.stderr.decode()) == (
        f"socketkit listen: join {group}: no route to the group; "
        "name the interface with --multicast-interface"
    )
    assert proc.stdout == b""


def test_without_k_stdin_eof_then_q_seconds_ends_with_0() -> None:
    """docs/listen.md: the one session ends "after -q following stdin's EOF"; until then the
    peer's datagrams still come out."""
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-q", "0.5", "127.0.0.1", str(port)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with (
        started(argv, **pipes) as listener,  # type: ignore[arg-type]
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        wait_bound(port, "udp")
        out = Collector(listener.stdout)
        peer.settimeout(10)
        peer.sendto(b"hi\n", ("127.0.0.1", port))
        assert out.wait_for(3) == b"hi\n"
        assert listener.stdin is not None
        listener.stdin.write(b"bye\n")
        listener.stdin.close()
        assert peer.recv(100) == b"bye\n"
        eof = time.monotonic()
        peer.sendto(b"still\n", ("127.0.0.1", port))
        assert out.wait_for(9) == b"hi\nstill\n"
        assert finish(listener, 10) == 0
        assert 0.5 <= time.monotonic() - eof < 5
        assert listener.stderr is not None
        assert listener.stderr.read() == b""


@pytest.mark.parametrize(
    ("program", "sent", "answers"),
    [
        ("tr a-z A-Z", b"abc\n", [b"ABC\n"]),  # docs/listen.md's example: answers at EOF
        ("cat; echo bye", b"x\n", [b"x\n", b"bye\n"]),  # answers at once, and again at EOF
    ],
)
def test_a_program_answering_at_the_end_of_its_session_is_heard(
    program: str, sent: bytes, answers: list[bytes]
) -> None:
    """When a -u -k -c session goes idle its program's stdin closes; what it writes then
    still goes to the peer (it was dropped, so `-e 'tr a-z A-Z'` never answered anyone)."""
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "--udp-session-idle", "0.5", "-c", program]
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    with started([*argv, "127.0.0.1", str(port)], **pipes) as listener:  # type: ignore[arg-type]
        wait_bound(port, "udp")
        events = Collector(listener.stderr)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.settimeout(10)
            peer.sendto(sent, ("127.0.0.1", port))
            got = [peer.recv(100) for _ in answers]
            _wait(lambda: bool(json_events(events, "closed")), "a closed event")
    assert got == answers
    (closed,) = json_events(events, "closed")
    assert closed["reason"] == "idle"
    assert closed["bytes_sent"] == sum(map(len, answers))
