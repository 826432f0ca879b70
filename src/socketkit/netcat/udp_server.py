"""``listen -u``: UDP "sessions", one per peer address, demultiplexed in user space.

UDP has no connections, so a netcat listener must invent them (nmap #1223,
#3320): every datagram is keyed by its source address. Without ``-k`` the first admitted peer
owns the listener (later peers are ignored, as with nc/ncat). With ``-k`` any number of peers
are served at once: stdin goes to every live peer, and with ``-e``/``-c`` each peer gets its
own program whose output goes back to that peer only. A peer silent for
``--udp-session-idle`` seconds is forgotten (its program sees EOF).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time

from .._errors import SocketkitError, SocketkitTimeout
from .access import AccessList
from .conn import shown as show
from .endpoints import write_all
from .limits import Slots, source_of
from .options import NetcatOptions
from .report import Reporter
from .session import end_reason
from .tap import Tap

__all__ = ["UdpServer"]

#: Largest UDP payload (IPv4: 65535 - 20 - 8).
MAX_DATAGRAM = 65507
#: Unix datagrams are limited only by the sender's socket buffer (212,992 bytes by default).
MAX_UNIX_DATAGRAM = 256 * 1024
#: Peers remembered as denied, so each is reported once (bounded: a spoofed flood cannot
#: grow it without limit).
MAX_DENIED_MEMORY = 4096


class _Session:
    __slots__ = (
        "addr",
        "child",
        "last",
        "received",
        "sent",
        "shown",
        "source",
        "started",
        "warned",
    )

    def __init__(self, addr: object, now: float) -> None:
        self.addr = addr
        self.source = source_of(addr)
        self.shown = show(addr)
        self.last = now
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
        # name (bytes) or None (a sender with no address) for Unix datagram sockets.
        self.sessions: dict[object, _Session] = {}
        self.by_child_fd: dict[int, _Session] = {}
        self.denied: set[object] = set()
        self.slots = Slots(opts.max_conns, opts.max_per_source)
        self.locked = False  # without -k: a peer has taken the listener
        self.stdin_open = not opts.recv_only
        self.quit_deadline: float | None = None
        unix = sock.family == socket.AF_UNIX
        self._max = MAX_UNIX_DATAGRAM if unix else MAX_DATAGRAM
        self._proto = "unixgram" if unix else "udp"
        self._buf = bytearray(self._max + 1)
        self._view = memoryview(self._buf)

    # -- sessions -------------------------------------------------------------------------
    def _session_for(self, addr: object, now: float) -> _Session | None:
        session = self.sessions.get(addr)
        if session is not None:
            return session
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
        session = _Session(addr, now)
        refused = self.slots.take(session.source) if self.opts.keep_open else None
        if refused is not None:
            self.reporter.event(
                "rejected", f"rejected {shown}: {refused}", remote=shown, reason=refused
            )
            return None
        self.sessions[addr] = session
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
        if self.sessions.pop(session.addr, None) is not None and self.opts.keep_open:
            self.slots.give(session.source)
        child = session.child
        if child is not None:
            assert child.stdin is not None and child.stdout is not None
            self.by_child_fd.pop(child.stdout.fileno(), None)
            try:
                child.stdin.close()
            except OSError:
                pass
            try:
                child.wait(timeout=2)
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
        for _ in range(64):  # drain a burst, bounded
            try:
                n, addr = self.sock.recvfrom_into(
                    self._view, self._max + 1, socket.MSG_DONTWAIT | socket.MSG_TRUNC
                )
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier reply: not ours to act on
            session = self._session_for(addr, now)
            if session is None:
                continue
            if n > self._max:  # MSG_TRUNC: n is the datagram's real size
                self.reporter.warning(
                    f"a datagram of {n} bytes from {session.shown} was longer than "
                    f"{self._max}: it is dropped"
                )
                continue
            session.last = now
            session.received += n
            chunk = self._view[:n]
            if session.child is not None:
                assert session.child.stdin is not None
                try:
                    session.child.stdin.write(chunk)
                    session.child.stdin.flush()
                except OSError:
                    self._end(session, "program closed its input")
                continue
            if self.opts.send_only:
                continue
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
        for session in list(self.sessions.values()):
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
                for session in list(self.sessions.values()):
                    if now - session.last >= opts.udp_session_idle:
                        self._end(session, "idle")
                        if not opts.keep_open:
                            return 0
                fds = {self.sock.fileno(): select.POLLIN}
                read_stdin = self.stdin_open and bool(self.sessions) and not opts.executes
                if read_stdin:
                    fds[0] = select.POLLIN
                for fd in self.by_child_fd:
                    fds[fd] = select.POLLIN
                poller = select.poll()
                for fd, ev in fds.items():
                    poller.register(fd, ev)
                deadlines = [s.last + opts.udp_session_idle for s in self.sessions.values()]
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
                if not opts.keep_open and self.locked and not self.sessions:
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
            for session in list(self.sessions.values()):
                self._end(session, "listener closed", error=stopped_by)
