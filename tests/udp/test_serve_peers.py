"""The sans-I/O peer table behind serve_udp and listen -u: limits, expiry, bounded memory.

No sockets and no clock: every call is given the time. A state machine drives the table with
random admissions, touches, removals and clock steps, and checks it against a plain model.
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from socketkit.proto.peers import FULL, PER_IP, Peer, PeerTable, source_of

HOSTS = ["10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1", "2001:db8::1", "fe80::1%lo"]
addresses = st.one_of(
    st.tuples(st.sampled_from(HOSTS), st.integers(1, 6)),
    st.sampled_from(["/tmp/a.sock", b"\0abstract", None]),
)


def test_mapped_ipv6_counts_as_ipv4_and_scope_is_ignored() -> None:
    assert source_of(("::ffff:10.0.0.1", 5, 0, 0)) == "10.0.0.1"
    assert source_of(("10.0.0.1", 5)) == "10.0.0.1"
    assert source_of(("fe80::1%eth0", 5, 0, 2)) == "fe80::1"
    assert source_of("/tmp/x") is None
    assert source_of(None) is None
    table: PeerTable[None] = PeerTable(max_peers=10, max_peers_per_ip=1)
    assert isinstance(table.admit(("10.0.0.1", 1), 0.0), Peer)
    assert table.admit(("::ffff:10.0.0.1", 2, 0, 0), 0.0) == PER_IP
    assert table.refused_per_ip == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_peers must be at least 1, not 0"):
        PeerTable(max_peers=0)
    with pytest.raises(TypeError, match="max_peers_per_ip must be an int or None"):
        PeerTable(max_peers=1, max_peers_per_ip=True)
    with pytest.raises(ValueError, match="idle_timeout must be more than 0"):
        PeerTable(max_peers=1, idle_timeout=0)


class TableMachine(RuleBasedStateMachine):
    """The table against a model: a dict of address -> (last, expired)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_peers = 4
        self.per_ip = 2
        self.idle = 5.0
        self.table: PeerTable[int] = PeerTable(
            max_peers=self.max_peers, max_peers_per_ip=self.per_ip, idle_timeout=self.idle
        )
        self.now = 0.0
        self.model: dict[object, list[object]] = {}  # address -> [last, expired]
        self.refused = 0

    def _count(self, source: str | None) -> int:
        return sum(1 for a in self.model if source is not None and source_of(a) == source)

    @rule(address=addresses)
    def admit(self, address: object) -> None:
        result = self.table.admit(address, self.now)  # type: ignore[arg-type]
        if address in self.model:
            assert isinstance(result, Peer)
            entry = self.model[address]
            entry[0] = self.now
            return
        source = source_of(address)
        if len(self.model) >= self.max_peers:
            assert result == FULL
            self.refused += 1
        elif source is not None and self._count(source) >= self.per_ip:
            assert result == PER_IP
            self.refused += 1
        else:
            assert isinstance(result, Peer) and result.address == address
            self.model[address] = [self.now, False]

    @rule(step=st.floats(0, 4, allow_nan=False))
    def tick(self, step: float) -> None:
        self.now += step

    @rule(back=st.floats(0, 3, allow_nan=False))
    def clock_steps_back(self, back: float) -> None:
        # A clock that goes back is read as standing still: nothing expires early or late.
        self.table.admit(("192.0.2.9", 9), self.now - back)  # may be refused; counted
        if ("192.0.2.9", 9) in self.table:
            self.table.remove(self.table.get(("192.0.2.9", 9)))  # type: ignore[arg-type]
        else:
            self.refused += 1

    @rule()
    def expire(self) -> None:
        got = {p.address for p in self.table.expire(self.now)}
        want = {
            a
            for a, (last, expired) in self.model.items()
            if not expired and last + self.idle <= self.now
        }
        assert got == want
        for a in got:
            self.model[a][1] = True
            assert self.table.get(a).expired  # type: ignore[union-attr]
        nxt = self.table.next_expiry()
        pending = [last for last, expired in self.model.values() if not expired]
        assert nxt == (min(pending) + self.idle if pending else None)  # type: ignore[operator]

    @rule(address=addresses)
    def remove(self, address: object) -> None:
        peer = self.table.get(address)  # type: ignore[arg-type]
        assert (peer is not None) == (address in self.model)
        if peer is not None:
            self.table.remove(peer)
            self.table.remove(peer)  # idempotent
            del self.model[address]

    @invariant()
    def matches_model(self) -> None:
        assert len(self.table) == len(self.model) <= self.max_peers
        assert self.table.refused == self.refused
        assert self.table.sources <= len(self.table)
        for address in self.model:
            source = source_of(address)
            assert self.table.count_for(source) == self._count(source) <= self.per_ip


TestTable = TableMachine.TestCase


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 65535)), max_size=300))
def test_a_flood_is_refused_and_only_counted(sources: list[tuple[int, int]]) -> None:
    table: PeerTable[None] = PeerTable(max_peers=8, max_peers_per_ip=3)
    known = 0  # datagrams from peers already in the table
    for octet, port in sources:
        address = (f"198.51.100.{octet}", port)
        known += address in table
        table.admit(address, 0.0)
    assert len(table) <= 8
    assert len(table) + table.refused + known == len(sources)
    assert table.admitted == len(table)


def test_memory_stays_bounded_under_a_million_spoofed_sources() -> None:
    table: PeerTable[None] = PeerTable(max_peers=1000, max_peers_per_ip=10)
    for i in range(1000):
        table.admit((f"10.{i // 256}.{i % 256}.1", 1), 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(200_000):
            # New source address and port every time: each is refused, none is remembered.
            assert table.admit((f"10.200.{i // 65536 % 256}.{i % 256}", i % 65535 + 1), 1.0) == FULL
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"the table grew by {grown} bytes refusing 200,000 sources"
    assert table.refused_full == 200_000 and len(table) == 1000


def test_expiry_touch_and_next_expiry_in_order() -> None:
    table: PeerTable[str] = PeerTable(max_peers=10, idle_timeout=10.0)
    a = table.admit(("10.0.0.1", 1), 0.0)
    b = table.admit(("10.0.0.2", 1), 1.0)
    assert isinstance(a, Peer) and isinstance(b, Peer)
    assert table.next_expiry() == 10.0
    table.touch(a, 5.0)  # a is now the most recent
    assert table.next_expiry() == 11.0
    assert table.expire(10.99) == []
    assert table.expire(11.0) == [b]
    assert table.expire(11.0) == []  # once
    assert b in list(table) and b.expired  # kept until removed, holding its slot
    assert table.expire(15.0) == [a]
    assert table.next_expiry() is None
