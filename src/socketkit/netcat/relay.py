"""The relay of one session: local input -> connection -> local output, one poll loop.

The local side is two descriptors (stdin/stdout, or a child's pipes for ``--exec`` over TLS);
the remote side is a :class:`~socketkit.netcat.conn.Conn`. The EOF policy lives in
:class:`~socketkit.netcat.eof.EofMachine`; this module only does the I/O it asks for.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import SocketkitTimeout
from .conn import Conn
from .endpoints import FdKind, fd_kind
from .eof import Action, EofMachine
from .pumps import CopyPump, MmapPump, Pump, SendfilePump, SplicePump, SpliceUnsupported
from .tap import Tap
from .text import CrlfEncoder

__all__ = ["Relay", "RelayResult"]

#: Largest datagram read from stdin for UDP: nc.openbsd's buffer size, below every MTU-sized
#: fragmentation worry on loopback and a sane size on real links.
UDP_SEND_CHUNK = 16384
#: Largest datagram we can receive: above the UDP payload maximum (65,507) and the default
#: Unix datagram limit (the sender's 212,992-byte socket buffer).
UDP_RECV_CHUNK = 256 * 1024
#: Regular files with at least this much left are sent from a memory map (MmapPump); smaller
#: ones (and files /proc-style that claim size 0) go through sendfile.
MMAP_MIN = 1 << 20
#: After a round that moved bytes, poll without sleeping up to this many times (about 0.3 us
#: each, so about 100 us) before a blocking poll. While bytes stream, the other side's next
#: chunk usually lands within that time; a process that does not sleep needs no wake-up, and
#: on a 2-core loopback the wake-ups (an IPI each) cost a fifth of the throughput
#: (docs/design.md). Idle sessions never spin.
SPIN_POLLS = 300
_ERRMASK = select.POLLHUP | select.POLLERR | select.POLLNVAL


@dataclass
class RelayResult:
    sent: int  # bytes delivered to the connection
    received: int  # bytes delivered to the local output
    reason: str  # "eof", "quit-timer"


class Relay:
    """Relay ``conn`` with local descriptors until the EOF policy says the session is over.

    Args:
        conn: the connection (closed by the caller, not here).
        local_in: descriptor to send from (``None``: nothing to send).
        local_out: descriptor to write received bytes to (``None``: received bytes are not
            read at all, ``--send-only``).
        machine: the session's :class:`EofMachine`.
        tap: hex dump / session log; when active every byte takes the copy path.
        crlf: translate bare LF to CRLF on the way out (``-C``).
        idle_timeout: seconds without a byte in either direction before giving up.
        force_copy: never splice/sendfile (benchmarks and tests of the copy path).
        on_peer_eof: called once the peer's EOF has reached ``local_out`` (``--exec`` closes
            the child's stdin pipe there, so the child sees its EOF).
    """

    def __init__(
        self,
        conn: Conn,
        *,
        local_in: int | None,
        local_out: int | None,
        machine: EofMachine,
        tap: Tap | None = None,
        crlf: bool = False,
        idle_timeout: float | None = None,
        force_copy: bool = False,
        on_peer_eof: Callable[[], None] | None = None,
    ) -> None:
        self.conn = conn
        self._on_peer_eof = on_peer_eof
        self.machine = machine
        self.tap = tap
        self.idle_timeout = idle_timeout
        self.quit_deadline: float | None = None
        self._crlf = CrlfEncoder() if crlf else None
        self._force_copy = force_copy
        self.up: Pump | None = None
        self.down: Pump | None = None
        if local_in is not None and not machine.recv_only:
            self.up = self._make_up(local_in)
        if local_out is not None and not machine.send_only:
            self.down = self._make_down(local_out)

    # -- choosing the fastest correct path for each direction ------------------------------
    def _fast(self) -> bool:
        tapped = self.tap is not None and self.tap.active
        return not (self._force_copy or self.conn.tls or self.conn.datagram or tapped)

    def _make_up(self, fd: int, *, allow_fast: bool = True, initial: bytes = b"") -> Pump:
        kind = fd_kind(fd)
        if allow_fast and self._fast() and self._crlf is None:
            if kind is FdKind.FILE:
                if _remaining(fd) >= MMAP_MIN:
                    return MmapPump("stdin", fd, self.conn.fd, None, self.conn)
                return SendfilePump("stdin", fd, self.conn.fd, None, self.conn)
            if kind in (FdKind.PIPE, FdKind.SOCKET):
                return SplicePump("stdin", fd, self.conn.fd, None, self.conn)
        crlf = self._crlf
        tap = self.tap if self.tap is not None and self.tap.active else None
        return CopyPump(
            "stdin",
            fd,
            self.conn.fd,
            read=lambda view: os.readv(fd, [view]),
            write=self.conn.send,
            dst=self.conn,
            src_blocking=kind in (FdKind.PIPE, FdKind.TERMINAL, FdKind.OTHER, FdKind.SOCKET),
            whole_writes=self.conn.datagram,
            transform=crlf.encode if crlf is not None else None,
            observe=tap.sent if tap is not None else None,
            size=UDP_SEND_CHUNK if self.conn.datagram else 256 * 1024,
            initial=initial,
        )

    def _make_down(self, fd: int, *, allow_fast: bool = True, initial: bytes = b"") -> Pump:
        kind = fd_kind(fd)
        if (
            allow_fast
            and self._fast()
            and kind
            in (
                FdKind.PIPE,
                FdKind.FILE,
                FdKind.CHAR,
                FdKind.SOCKET,
            )
        ):
            return SplicePump("stdout", self.conn.fd, fd, self.conn, None)
        tap = self.tap if self.tap is not None and self.tap.active else None
        return CopyPump(
            "stdout",
            self.conn.fd,
            fd,
            read=self.conn.recv_into,
            write=lambda view: os.write(fd, view),
            src=self.conn,
            zero_is_eof=not self.conn.datagram,
            observe=tap.received if tap is not None else None,
            size=UDP_RECV_CHUNK if self.conn.datagram else 256 * 1024,
            initial=initial,
        )

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> RelayResult:
        """Relay until the session ends; return byte counts.

        Raises:
            SocketkitTimeout: ``idle_timeout`` passed without a byte moving.
            SocketkitError: the connection failed (reset, refused, TLS error).
            OSError: a local descriptor failed (one-line message; exit status 9).
        """
        self.conn.set_blocking(False)
        poller = select.poll()
        registered: dict[int, int] = {}
        last_activity = time.monotonic()
        hot = False  # the last round moved bytes: spin on poll(0) before sleeping
        reason = "eof"
        try:
            if self.up is None and not self.machine.recv_only:
                self._apply(self.machine.stdin_eof())
            if self.down is None and not self.machine.send_only:
                self._apply(self.machine.peer_eof())
            while not self.machine.finished:
                pumps = [p for p in (self.up, self.down) if p is not None and not p.eof]
                if not pumps and self.quit_deadline is None:
                    break
                wants: dict[int, int] = {}
                immediate = False
                for pump in pumps:
                    if pump.ready():
                        immediate = True
                    if pump.want is not None:
                        fd, ev = pump.want
                        wants[fd] = wants.get(fd, 0) | ev
                _sync(poller, registered, wants)
                now = time.monotonic()
                timeout = self._timeout_ms(now, last_activity, immediate)
                fired = _poll(poller, timeout, spin=SPIN_POLLS if hot else 0)
                now = time.monotonic()
                hot = False
                for pump in pumps:
                    if self.machine.finished:
                        break
                    if not (pump.ready() or _fired(pump, fired)):
                        continue
                    if self._step(pump):
                        last_activity = now
                        hot = True
                if self.machine.finished:
                    break
                if self.quit_deadline is not None and now >= self.quit_deadline:
                    self._apply(self.machine.quit_timer_expired())
                    reason = "quit-timer"
                    break
                if self.idle_timeout is not None and now - last_activity >= self.idle_timeout:
                    raise SocketkitTimeout(
                        f"idle timeout: no data for {self.idle_timeout:g} s "
                        f"on the connection with {self.conn.peer}"
                    )
        finally:
            for done in (self.up, self.down):
                if done is not None:
                    done.close()
        return RelayResult(self.sent, self.received, reason)

    @property
    def sent(self) -> int:
        return self.up.count if self.up is not None else 0

    @property
    def received(self) -> int:
        return self.down.count if self.down is not None else 0

    def _timeout_ms(self, now: float, last: float, immediate: bool) -> int:
        if immediate:
            return 0
        deadlines = []
        if self.quit_deadline is not None:
            deadlines.append(self.quit_deadline)
        if self.idle_timeout is not None:
            deadlines.append(last + self.idle_timeout)
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - now) * 1000) + 1)

    def _step(self, pump: Pump) -> int:
        try:
            moved = pump.step()
        except SpliceUnsupported as exc:
            pump.close()
            if pump is self.up:
                pump = self._make_up(pump.src_fd, allow_fast=False, initial=exc.leftover)
                self.up = pump
            else:
                pump = self._make_down(pump.dst_fd, allow_fast=False, initial=exc.leftover)
                self.down = pump
            moved = pump.step()
        if pump.eof:
            if pump is self.up:
                self._apply(self.machine.stdin_eof())
            else:
                if self._on_peer_eof is not None:
                    self._on_peer_eof()
                self._apply(self.machine.peer_eof())
        return moved

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if action is Action.SHUTDOWN_WRITE:
                self.conn.shutdown_write()
            elif action is Action.STOP_STDIN:
                self._retire("up")
            elif action is Action.ARM_QUIT_TIMER:
                quit_after = self.machine.policy.quit_after or 0.0
                self.quit_deadline = time.monotonic() + quit_after
        # A finished direction stops being polled (its count stays readable).
        if self.up is not None and self.up.eof:
            self._retire("up")
        if self.down is not None and self.down.eof:
            self._retire("down")

    def _retire(self, which: str) -> None:
        pump = self.up if which == "up" else self.down
        if pump is None:
            return
        pump.close()
        keeper = _Finished(pump)
        if which == "up":
            self.up = keeper
        else:
            self.down = keeper


class _Finished(Pump):
    """A direction that is over: keeps its byte count, wants nothing."""

    def __init__(self, done: Pump) -> None:
        super().__init__(done.name, done.src_fd, done.dst_fd, done.src_conn, done.dst_conn)
        self.count = done.count
        self.eof = True
        self.want = None

    def step(self) -> int:
        return 0


def _poll(poller: select.poll, timeout: int, *, spin: int) -> dict[int, int]:
    """``poller.poll(timeout)``, first trying ``spin`` times without sleeping."""
    if timeout != 0:
        for _ in range(spin):
            fired = poller.poll(0)
            if fired:
                return dict(fired)
    return dict(poller.poll(timeout))


def _fired(pump: Pump, fired: dict[int, int]) -> bool:
    if pump.want is None:
        return False
    fd, ev = pump.want
    return bool(fired.get(fd, 0) & (ev | _ERRMASK))


def _sync(poller: select.poll, registered: dict[int, int], wants: dict[int, int]) -> None:
    for fd in list(registered):
        if fd not in wants:
            poller.unregister(fd)
            del registered[fd]
    for fd, ev in wants.items():
        if registered.get(fd) != ev:
            if fd in registered:
                poller.modify(fd, ev)
            else:
                poller.register(fd, ev)
            registered[fd] = ev


def _remaining(fd: int) -> int:
    """Bytes between the file offset of ``fd`` and the end of the file (0 if unknown)."""
    try:
        return os.fstat(fd).st_size - os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return 0
