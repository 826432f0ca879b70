"""``listen -u``: UDP "sessions", one per peer address, demultiplexed in user space.

UDP has no connections, so a netcat listener must invent them (nmap #1223,
#3320): every datagram is keyed by its source address. Without ``-k`` the first admitted peer
owns the listener (later peers are ignored, as with nc/ncat). With ``-k`` any number of peers
are served at once: stdin goes to every live peer, and with ``-e``/``-c`` each peer gets its
own program whose output goes back to that peer only. A peer silent for
``--udp-session-idle`` seconds is forgotten (its program sees EOF).

Who is a peer, the limits (``--max-conns``, ``--max-conns-per-source``) and idle expiry are
the library's :class:`~socketkit.proto.peers.PeerTable`, the table behind
``socketkit.serve_udp``; this module adds what a netcat needs around it in one poll loop
(stdin to every peer, a program per peer, access rules, events). It does not run on
``serve_udp`` itself: that one gives each peer a thread, and here every peer shares stdin,
stdout and one loop.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time

from .._errors import SocketkitError, SocketkitTimeout
from .._udp import Datagram
from .._udp_batch import receive_many
from ..proto.peers import FULL, Peer, PeerTable
from .access import AccessList
from .conn import shown as show
from .endpoints import write_all
from .options import NetcatOptions
from .report import Reporter
from .session import end_reason
from .tap import Tap

__all__ = ["UdpServer"]

#: Largest UDP payload (IPv4: 65535 - 20 - 8).
MAX_DATAGRAM = 65507
#: Over IPv6 (65535 - 8: the IPv6 header is not part of the payload length).
MAX_DATAGRAM_V6 = 65527
#: Unix datagrams are limited only by the sender's socket buffer (212,992 bytes by default).
MAX_UNIX_DATAGRAM = 256 * 1024
#: Datagrams taken from the socket per wake-up (one ``receive_many`` call).
RECEIVE_BURST = 64
#: How long an ended session's program may go on answering after its stdin closes (its
#: output still goes to the peer), before it is killed.
FINAL_OUTPUT_WAIT = 2.0
#: Peers remembered as denied, so each is reported once (bounded: a spoofed flood cannot
#: grow it without limit).
MAX_DENIED_MEMORY = 4096


class _Session:
    __slots__ = (
        "addr",
        "child",
        "peer",
        "received",
        "sent",
        "shown",
        "started",
        "warned",
    )

    def __init__(self, peer: Peer[_Session], now: float) -> None:
        self.peer = peer
        self.addr = peer.address
        self.shown = show(self.addr)
        self.started = now
        self.received = 0
        self.sent = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.warned = False  # told the user this peer cannot be answered


class UdpServer:
    def __init__(
        self,
        sock: socket.socket,
        opts: NetcatOptions,
        reporter: Reporter,
        access: AccessList,
        tap: Tap,
    ) -> None:
        self.sock = sock
        self.opts = opts
        self.reporter = reporter
        self.access = access
        self.tap = tap if tap.active else None
        # Keyed by the peer's address: a (host, port, ...) tuple for UDP; a path, an abstract
        # name (bytes) or None (a sender with no address) for Unix datagram sockets. The
        # limits hold with -k only: without it the first peer owns the listener.
        self.table: PeerTable[_Session] = PeerTable(
            max_peers=opts.max_conns if opts.keep_open else None,
            max_peers_per_ip=opts.max_per_source if opts.keep_open else None,
            idle_timeout=opts.udp_session_idle,
        )
        self.by_child_fd: dict[int, _Session] = {}
        self.denied: set[object] = set()
        self.locked = False  # without -k: a peer has taken the listener
        self.stdin_open = not opts.recv_only
        self.quit_deadline: float | None = None
        unix = sock.family == socket.AF_UNIX
        if unix:
            self._max = MAX_UNIX_DATAGRAM
        elif sock.family == socket.AF_INET6:
            self._max = MAX_DATAGRAM_V6
        else:
            self._max = MAX_DATAGRAM
        self._proto = "unixgram" if unix else "udp"

    # -- sessions -------------------------------------------------------------------------
    @property
    def sessions(self) -> list[_Session]:
        return [peer.value for peer in self.table if peer.value is not None]

    def _session_for(self, addr: object, now: float) -> _Session | None:
        assert isinstance(addr, (tuple, str, bytes)) or addr is None
        peer = self.table.get(addr)
        if peer is not None:
            self.table.touch(peer, now)
            return peer.value
        if addr in self.denied:
            return None
        shown = show(addr)
        host = str(addr[0]) if isinstance(addr, tuple) else None  # Unix peers: no host
        if not self.access.admits(host):
            if len(self.denied) < MAX_DENIED_MEMORY:
                self.denied.add(addr)
            self.reporter.event("denied", f"denied datagrams from {shown}", remote=shown)
            return None
        if not self.opts.keep_open and self.locked:
            return None  # nc/ncat: the first peer owns a listener without -k
        got = self.table.admit(addr, now)
        if not isinstance(got, Peer):
            if got == FULL:
                refused = f"--max-conns {self.table.max_peers} reached"
            else:
                refused = (
                    f"--max-conns-per-source {self.table.max_peers_per_ip} reached for "
                    f"{self.table.source_key(addr)}"
                )
            self.reporter.event(
                "rejected", f"rejected {shown}: {refused}", remote=shown, reason=refused
            )
            return None
        session = got.value = _Session(got, now)
        self.locked = True
        self.reporter.event(
            "accepted",
            f"UDP session with {shown}",
            proto=self._proto,
            local=show(self.sock.getsockname()),
            remote=shown,
            tls=None,
        )
        if self.opts.executes:
            from .execs import child_argv

            argv = child_argv(self.opts)
            try:
                child = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
                )
            except OSError as exc:
                # This peer's session only (EMFILE, a missing program): the server goes on.
                message = f"cannot run {argv[0]}: {exc.strerror}"
                if not self.opts.keep_open:  # the one session is the whole command
                    raise SocketkitError(message) from exc
                self.reporter.warning(f"{shown}: {message}", remote=shown)
                self._end(session, "program could not start", error=message)
                return None
            assert child.stdout is not None
            session.child = child
            self.by_child_fd[child.stdout.fileno()] = session
        return session

    def _end(self, session: _Session, reason: str, *, error: str | None = None) -> None:
        self.table.remove(session.peer)
        child = session.child
        if child is not None:
            assert child.stdin is not None and child.stdout is not None
            self.by_child_fd.pop(child.stdout.fileno(), None)
            try:
                child.stdin.close()
            except OSError:
                pass
            deadline = time.monotonic() + FINAL_OUTPUT_WAIT
            self._final_output(session, child.stdout.fileno(), deadline)
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child.stdout.close()
        self.reporter.event(
            "closed",
            f"UDP session with {session.shown} ended ({reason}): sent {session.sent} bytes, "
            f"received {session.received} bytes",
            proto=self._proto,
            remote=session.shown,
            bytes_sent=session.sent,
            bytes_received=session.received,
            duration=round(time.monotonic() - session.started, 6),
            error=error,
            reason=reason,
        )

    def _final_output(self, session: _Session, fd: int, deadline: float) -> None:
        """What the program writes once its stdin is closed (``tr``, ``sort``, any filter
        that answers at EOF) still goes to the peer, until its EOF or ``deadline``."""
        poller = select.poll()  # (not select(): descriptors of a busy -k listener pass 1023)
        poller.register(fd, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(max(1, int(left * 1000))):
                return
            try:
                data = os.read(fd, min(self._max, 65536))
            except OSError:
                return
            if not data:
                return
            if self.tap is not None:
                self.tap.sent(memoryview(data))
            self._send(session, data)

    # -- I/O ------------------------------------------------------------------------------
    def _send(self, session: _Session, data: bytes | memoryview) -> None:
        if session.addr is None:  # an unbound Unix datagram socket: nothing to send to
            if not session.warned:
                session.warned = True
                self.reporter.warning(
                    f"{session.shown} has no address (an unbound Unix datagram socket): "
                    "what is sent to it is dropped"
                )
            return
        addr = session.addr
        assert isinstance(addr, (tuple, str, bytes))
        try:
            self.sock.sendto(data, addr)
            session.sent += len(data)
        except OSError as exc:
            self.reporter.warning(f"send to {session.shown}: {exc.strerror}")

    def _on_datagram(self, now: float) -> None:
        """The socket is readable: take a burst of datagrams (up to ``RECEIVE_BURST``, one
        ``recvmmsg`` where the kernel has it) through the library's batch layer."""
        for _ in range(2):
            try:
                grams = receive_many(self.sock, RECEIVE_BURST, self._max)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier reply: not ours to act on
            for gram in grams:
                self._on_one(gram, now)
            return

    def _on_one(self, gram: Datagram, now: float) -> None:
        session = self._session_for(gram.address, now)
        if session is None:
            return
        if gram.truncated:  # MSG_TRUNC: longer than the buffer, and cut: never pass it on
            self.reporter.warning(
                f"a datagram from {session.shown} was longer than {self._max} bytes: it is dropped"
            )
            return
        n = len(gram.data)
        session.received += n
        chunk = memoryview(gram.data)
        if session.child is not None:
            assert session.child.stdin is not None
            try:
                session.child.stdin.write(chunk)
                session.child.stdin.flush()
            except OSError:
                self._end(session, "program closed its input")
            return
        if self.opts.send_only:
            return
        if self.tap is not None:
            self.tap.received(chunk)
        write_all(1, chunk, "stdout", broken_pipe=True)

    def _on_child_output(self, fd: int) -> None:
        session = self.by_child_fd.get(fd)
        if session is None:
            return
        data = os.read(fd, min(self._max, 65536))
        if not data:
            self._end(session, "program exited")
            return
        if self.tap is not None:
            self.tap.sent(memoryview(data))
        self._send(session, data)

    def _on_stdin(self) -> bool:
        """Read one chunk of stdin and send it to every session; False at EOF."""
        data = os.read(0, 16384)
        if not data:
            return False
        if self.tap is not None:
            self.tap.sent(memoryview(data))
        for session in self.sessions:
            self._send(session, data)
        return True

    def run(self) -> int:
        opts = self.opts
        self.sock.setblocking(False)
        poller = select.poll()
        last_activity = time.monotonic()
        stopped_by: str | None = None
        try:
            while True:
                now = time.monotonic()
                for peer in self.table.expire(now):
                    assert peer.value is not None
                    self._end(peer.value, "idle")
                    if not opts.keep_open:
                        return 0
                fds = {self.sock.fileno(): select.POLLIN}
                read_stdin = self.stdin_open and len(self.table) > 0 and not opts.executes
                if read_stdin:
                    fds[0] = select.POLLIN
                for fd in self.by_child_fd:
                    fds[fd] = select.POLLIN
                poller = select.poll()
                for fd, ev in fds.items():
                    poller.register(fd, ev)
                expiry = self.table.next_expiry()
                deadlines = [] if expiry is None else [expiry]
                if opts.idle_timeout is not None:
                    deadlines.append(last_activity + opts.idle_timeout)
                if self.quit_deadline is not None:
                    deadlines.append(self.quit_deadline)
                timeout = -1 if not deadlines else max(0, int((min(deadlines) - now) * 1000) + 1)
                fired = poller.poll(timeout)
                now = time.monotonic()
                for fd, _ev in fired:
                    last_activity = now
                    if fd == self.sock.fileno():
                        self._on_datagram(now)
                    elif fd == 0:
                        if not self._on_stdin():
                            self.stdin_open = False
                            if opts.policy.on_stdin_eof == "close":
                                return 0
                            if opts.policy.quit_after is not None:
                                self.quit_deadline = now + opts.policy.quit_after
                    else:
                        self._on_child_output(fd)
                if not opts.keep_open and self.locked and not len(self.table):
                    return 0  # the one session ended (its program exited)
                if self.quit_deadline is not None and now >= self.quit_deadline:
                    return 0
                if opts.idle_timeout is not None and now - last_activity >= opts.idle_timeout:
                    raise SocketkitTimeout(
                        f"idle timeout: no datagrams for {opts.idle_timeout:g} s"
                    )
        except BaseException as exc:
            stopped_by = end_reason(exc)
            raise
        finally:
            for session in self.sessions:
                self._end(session, "listener closed", error=stopped_by)
