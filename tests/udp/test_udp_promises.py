"""Promises of the datagram socket (docs/udp.md, docs/design.md) that had no test or a weak
one: a timed-out receive takes nothing, even when the datagram lands as the wait ends;
iteration waits with ``default_timeout``; an unresolvable name is ``AddressError``
(``ResolutionError``) and a name is resolved once, to its first address; Unix sockets count no
drops (and UDP ones do); after a GSO ``send_many`` a single ``send`` is never cut."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import socketkit
from socketkit import AddressError, ReadTimeout
from socketkit._udp_batch import HAVE_GSO, UDP_SEGMENT

# -- 18: a receive that times out has taken nothing ----------------------------------------------

ROUNDS = 150
TIMEOUT = 0.01


def test_a_timed_out_receive_takes_nothing_even_at_the_deadline() -> None:
    """Each round a datagram is sent within 2 ms either side of the receive's deadline, so
    some land while the receive still waits, some as it gives up, some just after. Every
    datagram must come out of some receive exactly once: a receive that took one and then
    reported a timeout would lose it."""
    got: list[int] = []
    timeouts = 0
    with (
        socketkit.udp("127.0.0.1:0") as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        port = int(rx.local.rsplit(":", 1)[1])
        for i in range(ROUNDS):
            delay = TIMEOUT + (i % 9 - 4) * 0.0005  # 8 ms .. 12 ms after the receive starts
            timer = threading.Timer(delay, tx.sendto, (b"%d" % i, ("127.0.0.1", port)))
            timer.start()
            try:
                got.append(int(rx.receive(timeout=TIMEOUT).data))
            except ReadTimeout:
                timeouts += 1
            timer.join()
        while len(got) < ROUNDS:
            try:
                got.append(int(rx.receive(timeout=2).data))
            except ReadTimeout:
                break
    assert sorted(got) == list(range(ROUNDS)), f"lost {sorted(set(range(ROUNDS)) - set(got))}"
    assert got == sorted(got)  # and in order
    assert timeouts > 0  # the deadline was really met in some rounds


def test_a_receive_that_timed_out_leaves_a_queued_datagram_for_the_next() -> None:
    with socketkit.udp("127.0.0.1:0") as rx, socketkit.udp("127.0.0.1:0") as tx:
        with pytest.raises(ReadTimeout):
            rx.receive(timeout=0.05)
        tx.send(b"late", to=rx.local)
        assert rx.receive(timeout=5).data == b"late"


# -- 19: iteration waits with default_timeout and raises ReadTimeout ----------------------------


def test_iteration_waits_with_default_timeout_and_raises_read_timeout() -> None:
    with (
        socketkit.udp("127.0.0.1:0", default_timeout=0.3) as rx,
        socketkit.udp("127.0.0.1:0") as tx,
    ):
        # A watchdog: if iteration waited forever, closing the socket ends the loop quietly
        # and the test fails on the missing ReadTimeout instead of hanging.
        watchdog = threading.Timer(10, rx.close)
        watchdog.start()
        try:
            for data in (b"a", b"b"):
                tx.send(data, to=rx.local)
            seen = []
            t0 = time.monotonic()
            with pytest.raises(ReadTimeout):
                for gram in rx:
                    seen.append(gram.data)
                    t0 = time.monotonic()
            waited = time.monotonic() - t0
        finally:
            watchdog.cancel()
        assert seen == [b"a", b"b"]
        assert 0.3 <= waited < 3.0
        rx.default_timeout = 0.05  # settable: the next iteration uses the new value
        t0 = time.monotonic()
        with pytest.raises(ReadTimeout):
            next(iter(rx))
        assert 0.05 <= time.monotonic() - t0 < 0.3


# -- 20: unresolvable names; a name resolved once, to its first address ------------------------


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``multi.test`` resolves to 127.0.0.2 then 127.0.0.1; ``nosuch.invalid`` not at all.
    Yields the names looked up, one entry per getaddrinfo call."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        calls.append(str(host))
        if host == "nosuch.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "multi.test":
            return [
                (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.2", int(port))),
                (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", int(port))),
            ]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield calls


@pytest.mark.parametrize("where", ["local", "remote", "send"])
def test_an_unresolvable_name_is_an_address_error(resolver: list[str], where: str) -> None:
    with pytest.raises(socketkit.ResolutionError) as caught:
        if where == "send":
            with socketkit.udp("127.0.0.1:0") as s:
                s.send(b"x", to="nosuch.invalid:5000")
        else:
            socketkit.udp(**{where: "nosuch.invalid:5000"})
    assert isinstance(caught.value, AddressError)
    assert str(caught.value) == "cannot resolve 'nosuch.invalid': Name or service not known"


def test_a_name_is_resolved_once_to_its_first_address(resolver: list[str]) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
    ):
        first.bind(("127.0.0.2", 0))
        port = first.getsockname()[1]
        second.bind(("127.0.0.1", port))
        for s in (first, second):
            s.settimeout(0.5)
        with socketkit.udp(remote=f"multi.test:{port}") as conn:
            assert conn.remote == f"127.0.0.2:{port}"
            for i in range(3):
                conn.send(b"c%d" % i)
        assert resolver.count("multi.test") == 1
        resolver.clear()
        with socketkit.udp("127.0.0.1:0") as s:
            for i in range(3):
                s.send(b"s%d" % i, to=f"multi.test:{port}")
        assert resolver.count("multi.test") == 1
        assert [first.recv(100) for _ in range(6)] == [b"c0", b"c1", b"c2", b"s0", b"s1", b"s2"]
        with pytest.raises(TimeoutError):
            second.recv(100)  # nothing went to the second address


# -- 21: drops are 0 for Unix sockets, counted for UDP -----------------------------------------


def _flood(tx: socket.socket, to: Any, limit: int = 5000) -> int:
    """Send until the sender's queue would block (or ``limit``); the number sent."""
    tx.setblocking(False)
    sent = 0
    for _ in range(limit):
        try:
            tx.sendto(b"%06d" % sent + bytes(994), to)
        except BlockingIOError:
            break
        sent += 1
    return sent


def test_unix_sockets_count_no_drops(tmp_path: Path) -> None:
    path = str(tmp_path / "rx.sock")
    with (
        socketkit.udp(f"unix:{path}", receive_buffer=4096) as rx,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx,
    ):
        sent = _flood(tx, path)
        assert 0 < sent < 5000  # the sender was made to wait: nothing was dropped
        grams = [rx.receive(timeout=5) for _ in range(sent)]
        assert [int(g.data[:6]) for g in grams] == list(range(sent))
        assert rx.drops == 0
        assert {g.dropped_before for g in grams} == {0}


def test_udp_sockets_count_their_drops() -> None:
    """The control for the Unix case: the same flood into a small UDP queue is dropped by the
    kernel and counted, in ``drops`` and in the next datagram's ``dropped_before``."""
    with (
        socketkit.udp("127.0.0.1:0", receive_buffer=4096) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        port = int(rx.local.rsplit(":", 1)[1])
        sent = _flood(tx, ("127.0.0.1", port), limit=500)
        assert sent == 500  # loopback UDP never makes the sender wait
        queued = []
        while True:
            try:
                queued.append(rx.receive(timeout=0.2))
            except ReadTimeout:
                break
        tx.sendto(b"999999", ("127.0.0.1", port))
        queued.append(rx.receive(timeout=5))
        lost = sent - (len(queued) - 1)
        assert lost > 0
        assert rx.drops == lost
        assert sum(g.dropped_before or 0 for g in queued) == lost


# -- 22: after a GSO send_many, a single send is never cut --------------------------------------


def test_a_single_send_after_a_gso_send_many_is_never_cut() -> None:
    assert HAVE_GSO, "this kernel has UDP GSO (Linux 4.18+)"
    with (
        socketkit.udp("127.0.0.1:0") as rx,
        socketkit.udp("127.0.0.1:0") as tx,
    ):
        tx.send_many([bytes([i]) * 1000 for i in range(20)], to=rx.local)
        grams = rx.receive_many(64, timeout=5)
        while len(grams) < 20:
            grams += rx.receive_many(64, timeout=5)
        assert [g.data for g in grams] == [bytes([i]) * 1000 for i in range(20)]
        # The socket option stays unset: GSO went per message, as a control message.
        assert tx.socket.getsockopt(socket.IPPROTO_UDP, UDP_SEGMENT) == 0
        tx.send(b"z" * 3000, to=rx.local)  # would leave as 3 x 1000 with UDP_SEGMENT set
        one = rx.receive(timeout=5)
        assert (len(one.data), one.truncated) == (3000, False)
        with pytest.raises(ReadTimeout):
            rx.receive(timeout=0.1)
