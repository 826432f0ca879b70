"""A sans-I/O table of datagram peers: who is talking to a UDP server, within what limits.

UDP has no connections, so a server that wants one conversation per remote address has to
keep its own table (``socketkit.serve_udp``, ``socketkit listen -u``). This module is that
table and nothing else: no sockets, no clock (every call that needs the time is given it),
no threads. Its promises:

* Lookup, admission and a touch on every datagram cost O(1) (dicts, an ordered dict kept in
  order of last activity), so the idle scan only ever looks at peers that really expired.
* At most ``max_peers`` peers at once, and at most ``max_peers_per_ip`` from one IP address
  (IPv4-mapped IPv6 ``::ffff:a.b.c.d`` counts as ``a.b.c.d``; a scope id ``%eth0`` is
  ignored; Unix peers have no IP and only count toward ``max_peers``).
* A new peer over a limit is refused and *counted* (:attr:`PeerTable.refused_full`,
  :attr:`PeerTable.refused_per_ip`), never remembered: a flood of spoofed sources costs one
  integer, not one entry each. Memory is bounded by ``max_peers`` whatever arrives.
* A peer silent for ``idle_timeout`` seconds is returned once by :meth:`PeerTable.expire`;
  the owner decides when to :meth:`PeerTable.remove` it (``serve_udp`` keeps it until its
  handler has returned, so its slot and its thread are never counted twice).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Final, Generic, TypeVar

__all__ = ["FULL", "PER_IP", "Peer", "PeerTable", "source_of"]

T = TypeVar("T")

#: Why :meth:`PeerTable.admit` refused a new peer: the table holds ``max_peers`` already ...
FULL: Final = "max_peers"
#: ... or its IP address holds ``max_peers_per_ip``.
PER_IP: Final = "max_peers_per_ip"


def source_of(address: object) -> str | None:
    """The IP address a peer is counted under: IPv4-mapped IPv6 as IPv4 (a dual-stack
    socket's view of an IPv4 client), a scope id dropped; ``None`` for Unix peers."""
    if not isinstance(address, tuple) or not address:
        return None
    host = str(address[0])
    if "%" in host:
        host = host.split("%", 1)[0]
    if host.startswith("::ffff:") and host.count(".") == 3:
        host = host[7:]
    return host


class Peer(Generic[T]):
    """One remote address the table admitted. ``value`` is the owner's (a conversation)."""

    __slots__ = ("address", "expired", "last", "source", "started", "value")

    def __init__(self, address: Hashable, source: str | None, now: float) -> None:
        self.address = address
        self.source = source
        self.started = now
        self.last = now
        #: Set once :meth:`PeerTable.expire` has returned this peer.
        self.expired = False
        self.value: T | None = None

    def __repr__(self) -> str:
        return f"<Peer {self.address!r} last={self.last:g}{' expired' if self.expired else ''}>"


class PeerTable(Generic[T]):
    """Peers by address, with limits and idle expiry. Not thread-safe: one owner calls it.

    Args:
        max_peers: peers at once (``None``: no limit, which a server facing the Internet
            should not use: every spoofed source would cost an entry).
        max_peers_per_ip: peers from one IP address at once (``None``: no limit).
        idle_timeout: seconds of silence after which a peer expires (``None``: never).
    """

    def __init__(
        self,
        *,
        max_peers: int | None,
        max_peers_per_ip: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        for name, limit in (("max_peers", max_peers), ("max_peers_per_ip", max_peers_per_ip)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
                raise TypeError(f"{name} must be an int or None, not {limit!r}")
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1, not {limit}")
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be more than 0 seconds, not {idle_timeout!r}")
        self.max_peers = max_peers
        self.max_peers_per_ip = max_peers_per_ip
        self.idle_timeout = idle_timeout
        self._peers: dict[Hashable, Peer[T]] = {}
        # Peers not yet expired, least recently active first.
        self._by_activity: OrderedDict[Hashable, Peer[T]] = OrderedDict()
        self._per_ip: dict[str, int] = {}
        # The latest time seen: a clock that steps back is read as standing still, so the
        # activity order (and with it the expiry scan) stays right.
        self._now = float("-inf")
        #: New peers refused because the table was full / their IP had its share.
        self.refused_full = 0
        self.refused_per_ip = 0
        #: Peers ever admitted.
        self.admitted = 0

    # -- looking up -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, address: object) -> bool:
        return address in self._peers

    def __iter__(self) -> Iterator[Peer[T]]:
        return iter(list(self._peers.values()))

    def get(self, address: Hashable) -> Peer[T] | None:
        """The peer at ``address``, or ``None``."""
        return self._peers.get(address)

    @staticmethod
    def source_key(address: object) -> str | None:
        """The IP address ``address`` is counted under (:func:`source_of`)."""
        return source_of(address)

    def count_for(self, source: str | None) -> int:
        """Peers held by one IP address (as :func:`source_of` spells it)."""
        return 0 if source is None else self._per_ip.get(source, 0)

    @property
    def sources(self) -> int:
        """Distinct IP addresses with a peer in the table (never more than its length)."""
        return len(self._per_ip)

    @property
    def refused(self) -> int:
        return self.refused_full + self.refused_per_ip

    def _clock(self, now: float) -> float:
        if now < self._now:
            return self._now
        self._now = now
        return now

    # -- changing ---------------------------------------------------------------------------

    def admit(self, address: Hashable, now: float) -> Peer[T] | str:
        """The peer at ``address``: the one in the table (touched), or a new one if the limits
        allow; else :data:`FULL` or :data:`PER_IP` (and the refusal is counted, nothing kept)."""
        peer = self._peers.get(address)
        if peer is not None:
            self.touch(peer, now)
            return peer
        now = self._clock(now)
        if self.max_peers is not None and len(self._peers) >= self.max_peers:
            self.refused_full += 1
            return FULL
        source = source_of(address)
        limit = self.max_peers_per_ip
        if source is not None and limit is not None and self._per_ip.get(source, 0) >= limit:
            self.refused_per_ip += 1
            return PER_IP
        peer = Peer(address, source, now)
        self._peers[address] = peer
        self._by_activity[address] = peer
        if source is not None:
            self._per_ip[source] = self._per_ip.get(source, 0) + 1
        self.admitted += 1
        return peer

    def touch(self, peer: Peer[T], now: float) -> None:
        """``peer`` was heard from (or spoken to) at ``now``: its idle time starts again.
        An expired peer stays expired."""
        peer.last = self._clock(now)
        if not peer.expired and peer.address in self._by_activity:
            self._by_activity.move_to_end(peer.address)

    def remove(self, peer: Peer[T]) -> None:
        """Forget ``peer`` and give back its slot. Idempotent."""
        if self._peers.get(peer.address) is not peer:
            return
        del self._peers[peer.address]
        self._by_activity.pop(peer.address, None)
        source = peer.source
        if source is not None:
            left = self._per_ip[source] - 1
            if left:
                self._per_ip[source] = left
            else:
                del self._per_ip[source]

    def expire(self, now: float) -> list[Peer[T]]:
        """Peers silent for ``idle_timeout`` seconds at ``now``, each returned once and marked
        :attr:`Peer.expired`; they stay in the table (holding their slot) until removed."""
        timeout = self.idle_timeout
        now = self._clock(now)
        if timeout is None:
            return []
        out: list[Peer[T]] = []
        order = self._by_activity
        while order:
            address, peer = next(iter(order.items()))
            if peer.last + timeout > now:
                break
            del order[address]
            peer.expired = True
            out.append(peer)
        return out

    def next_expiry(self) -> float | None:
        """When the next peer expires (the clock's time), or ``None`` if none will."""
        if self.idle_timeout is None or not self._by_activity:
            return None
        peer = next(iter(self._by_activity.values()))
        return peer.last + self.idle_timeout
