"""``listen -k``: many clients at once, in one poll loop.

* plain ``-k``: stdin goes to every client; every client's bytes go to stdout.
* ``--broker``: every client's bytes go to every *other* client (stdin/stdout unused).
* ``--chat``: ``--broker`` line by line, each line prefixed with the sender's nickname.
* ``-e``/``-c``: a program per client (threads; see :mod:`.execs`).

Robustness (nmap #2827): a client that resets or vanishes mid-message only
ends its own session; each client's queue is bounded and a client that falls further behind is
disconnected with a warning (memory stays bounded); stdin is not read while any client's queue
is above the high-water mark, so no stdin byte is ever dropped.
"""

from __future__ import annotations

import errno
import os
import queue
import selectors
import socket
import ssl
import subprocess
import threading
import time

from .._errors import SocketkitError
from .access import AccessList
from .conn import Conn
from .conn import shown as show
from .endpoints import write_all
from .limits import Slots, source_of
from .options import NetcatOptions
from .report import Reporter
from .session import announce, closed, end_reason
from .tap import Tap
from .tls import TlsSocket

__all__ = ["serve_many"]

#: Stop reading stdin while any client has this much queued (backpressure, nothing dropped).
HIGH_WATER = 1 << 20
#: A broker client further behind than this is disconnected: one stalled reader must not make
#: the hub's memory grow without bound.
MAX_BACKLOG = 8 << 20
#: Longest chat line kept while waiting for its newline; longer lines are sent in pieces.
MAX_CHAT_LINE = 64 * 1024
READ_CHUNK = 256 * 1024


def serve_many(
    listeners: list[socket.socket],
    *,
    opts: NetcatOptions,
    reporter: Reporter,
    access: AccessList,
    tap: Tap,
    ctx: ssl.SSLContext | None,
) -> int:
    """Serve clients until interrupted (or, with ``--on-stdin-eof close``, stdin's EOF)."""
    if opts.executes:
        return _ExecServer(
            listeners, opts=opts, reporter=reporter, access=access, tap=tap, ctx=ctx
        ).run()
    return Hub(listeners, opts=opts, reporter=reporter, access=access, tap=tap, ctx=ctx).run()


#: accept() errors that mean "out of resources for now": keep serving, retry a little later.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: How long the accept loop rests after such an error (it would spin on a readable listener).
EXHAUSTED_PAUSE = 0.05


class Acceptor:
    """Accept pending connections, apply ``--allow``/``--deny``, then the session limits
    (``--max-conns``, ``--max-conns-per-source``). A refused or failed accept never ends the
    server: out of descriptors (EMFILE), it warns (at most once a second) and rests a moment."""

    def __init__(self, access: AccessList, reporter: Reporter, slots: Slots) -> None:
        self.access = access
        self.reporter = reporter
        self.slots = slots
        self._warned = 0.0

    def accept_all(self, listener: socket.socket) -> list[tuple[socket.socket, object, str | None]]:
        """Every pending connection that was admitted and got a slot (its source with it)."""
        from .listen import admit

        accepted: list[tuple[socket.socket, object, str | None]] = []
        while True:
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as exc:  # EMFILE, ECONNABORTED: report, keep serving
                now = time.monotonic()
                if now - self._warned >= 1.0:
                    self._warned = now
                    self.reporter.warning(f"accept failed: {exc.strerror}; still listening")
                if exc.errno in _EXHAUSTED:
                    time.sleep(EXHAUSTED_PAUSE)
                return accepted
            if not admit(sock, addr, self.access, self.reporter):
                continue
            source = source_of(addr)
            refused = self.slots.take(source)
            if refused is not None:
                shown = show(addr)
                self.reporter.event(
                    "rejected", f"rejected {shown}: {refused}", remote=shown, reason=refused
                )
                sock.close()
                continue
            accepted.append((sock, addr, source))


class _Client:
    __slots__ = (
        "conn",
        "last",
        "line",
        "name",
        "out",
        "read_done",
        "received",
        "sent",
        "source",
        "started",
    )

    def __init__(self, conn: Conn, name: str, source: str | None) -> None:
        self.conn = conn
        self.source = source
        self.name = name
        self.out = bytearray()
        self.line = bytearray()
        self.read_done = False
        self.sent = 0
        self.received = 0
        self.started = time.monotonic()
        self.last = self.started  # last byte in either direction (for -i)


class Hub:
    def __init__(
        self,
        listeners: list[socket.socket],
        *,
        opts: NetcatOptions,
        reporter: Reporter,
        access: AccessList,
        tap: Tap,
        ctx: ssl.SSLContext | None,
    ) -> None:
        self.opts = opts
        self.reporter = reporter
        self.access = access
        self.tap = tap if tap.active else None
        self.ctx = ctx
        self.relaying = opts.broker or opts.chat
        self.sel = selectors.PollSelector()
        self.listeners = listeners
        for sock in listeners:
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, "listen")
        self.clients: dict[int, _Client] = {}
        self.stdin_open = not self.relaying and not opts.recv_only
        self.stdin_paused = False
        if self.stdin_open:
            self.sel.register(0, selectors.EVENT_READ, "stdin")
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._handshaken: queue.SimpleQueue[tuple[TlsSocket | None, str, str | None]] = (
            queue.SimpleQueue()
        )
        self.slots = Slots(opts.max_conns, opts.max_per_source)
        self._acceptor = Acceptor(access, reporter, self.slots)
        self._serial = 0
        self._buf = bytearray(READ_CHUNK)
        self._view = memoryview(self._buf)
        self._stop = False

    # -- bookkeeping ----------------------------------------------------------------------
    def _add(self, conn: Conn, source: str | None) -> None:
        conn.set_blocking(False)
        self._serial += 1
        client = _Client(conn, f"user{self._serial}", source)
        self.clients[conn.fd] = client
        self.sel.register(conn.fd, selectors.EVENT_READ, client)
        announce("accepted", conn, self.reporter, clients=len(self.clients))
        if self.opts.chat:
            self._broadcast(
                f"<announce> {conn.peer} is connected as <{client.name}>.\n".encode(), client
            )
            self._queue(client, f"<announce> you are <{client.name}>.\n".encode())
        if (
            not self.stdin_open
            and not self.relaying
            and self.opts.policy.on_stdin_eof == "shutdown"
        ):
            try:
                client.conn.shutdown_write()
            except (SocketkitError, OSError) as exc:  # this session only, never the server
                self._drop(client, str(exc))

    def _drop(self, client: _Client, error: str | None = None) -> None:
        fd = client.conn.fd
        if self.clients.get(fd) is not client:
            return  # already dropped (its descriptor number may belong to a newer client)
        del self.clients[fd]
        self.slots.give(client.source)
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        client.conn.close()
        closed(
            self.reporter,
            client.conn,
            client.sent,
            client.received,
            time.monotonic() - client.started,
            error=error,
        )
        if self.opts.chat:
            self._broadcast(f"<announce> <{client.name}> has left.\n".encode(), None)
        self._update_stdin()

    def _queue(self, client: _Client, data: bytes) -> None:
        if self.clients.get(client.conn.fd) is not client:
            return
        if len(client.out) + len(data) > MAX_BACKLOG:
            self.reporter.warning(
                f"{client.conn.peer} fell more than {MAX_BACKLOG >> 20} MiB behind: disconnected"
            )
            self._drop(client, "too far behind")
            return
        was_empty = not client.out
        client.out += data
        if was_empty:
            self._flush(client)

    def _broadcast(self, data: bytes, sender: _Client | None) -> None:
        for client in list(self.clients.values()):
            if client is not sender:
                self._queue(client, data)

    def _set_events(self, client: _Client) -> None:
        events = 0 if client.read_done else selectors.EVENT_READ
        if client.out or client.conn.wants_write():
            events |= selectors.EVENT_WRITE
        if events == 0:
            events = selectors.EVENT_READ  # poll must watch something; reads are ignored
        try:
            self.sel.modify(client.conn.fd, events, client)
        except (KeyError, ValueError):
            pass

    def _update_stdin(self) -> None:
        if not self.stdin_open:
            return
        behind = any(len(c.out) > HIGH_WATER for c in self.clients.values())
        if behind and not self.stdin_paused:
            self.sel.unregister(0)
            self.stdin_paused = True
        elif not behind and self.stdin_paused:
            self.sel.register(0, selectors.EVENT_READ, "stdin")
            self.stdin_paused = False

    # -- I/O --------------------------------------------------------------------------------
    def _flush(self, client: _Client) -> None:
        while client.out:
            try:
                n = client.conn.send(memoryview(client.out)[: 4 << 20])
            except BlockingIOError:
                break
            except (SocketkitError, OSError) as exc:
                self._drop(client, str(exc))
                return
            client.sent += n
            client.last = time.monotonic()
            del client.out[:n]
        if not client.out and client.conn.wants_write():
            try:  # TLS records the kernel took only in part: EVENT_WRITE finishes them
                flushed = client.conn.flush()
            except (SocketkitError, OSError) as exc:
                self._drop(client, str(exc))
                return
            if not flushed:
                self._set_events(client)
                return
        if not client.out and not self.stdin_open and not self.relaying:
            if self.opts.policy.on_stdin_eof == "shutdown":
                try:
                    client.conn.shutdown_write()
                except SocketkitError:
                    pass
            if client.read_done:
                self._drop(client)
                return
        self._set_events(client)
        self._update_stdin()

    def _read_client(self, client: _Client) -> None:
        budget = 16 << 20
        while budget > 0 and self.clients.get(client.conn.fd) is client:
            try:
                n = client.conn.recv_into(self._view)
            except BlockingIOError:
                return
            except (SocketkitError, OSError) as exc:
                self._drop(client, str(exc))
                return
            if n == 0:
                self._client_eof(client)
                return
            budget -= n
            client.received += n
            client.last = time.monotonic()
            chunk = self._view[:n]
            if self.opts.chat:
                self._chat(client, bytes(chunk))
            elif self.opts.broker:
                self._broadcast(bytes(chunk), client)
            else:
                if self.tap is not None:
                    self.tap.received(chunk)
                write_all(1, chunk, "stdout", broken_pipe=True)

    def _chat(self, client: _Client, data: bytes) -> None:
        client.line += data
        while True:
            end = client.line.find(b"\n")
            if end < 0:
                if len(client.line) > MAX_CHAT_LINE:
                    end = MAX_CHAT_LINE - 1
                else:
                    return
            line = bytes(client.line[: end + 1])
            del client.line[: end + 1]
            if not line.endswith(b"\n"):
                line += b"\n"
            self._broadcast(f"<{client.name}> ".encode() + line, client)

    def _client_eof(self, client: _Client) -> None:
        if self.opts.chat and client.line:
            self._broadcast(f"<{client.name}> ".encode() + bytes(client.line) + b"\n", client)
            client.line.clear()
        if self.relaying or not self.stdin_open or self.opts.policy.on_peer_eof == "exit":
            self._drop(client)
            return
        client.read_done = True  # keep sending stdin to it until stdin's EOF
        self._set_events(client)

    def _read_stdin(self) -> None:
        try:
            data = os.read(0, READ_CHUNK)
        except OSError as exc:
            raise OSError(f"cannot read stdin: {exc.strerror}") from exc
        if data:
            if self.tap is not None:
                self.tap.sent(memoryview(data))
            self._broadcast(data, None)
            return
        self.stdin_open = False
        if not self.stdin_paused:
            self.sel.unregister(0)
        policy = self.opts.policy.on_stdin_eof
        if policy == "close":
            self._stop = True
            return
        for client in list(self.clients.values()):
            self._flush(client)

    def _accept(self, listener: socket.socket) -> None:
        for sock, addr, source in self._acceptor.accept_all(listener):
            if self.ctx is None:
                self._add(Conn(sock, peer=show(addr)), source)
                continue
            thread = threading.Thread(
                target=self._handshake, args=(sock, show(addr), source), daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # can't start new thread: this client only
                sock.close()
                self.slots.give(source)
                self.reporter.warning(f"{show(addr)}: {exc}; disconnected", remote=show(addr))

    def _handshake(self, sock: socket.socket, shown: str, source: str | None) -> None:
        from .tls import server_wrap

        assert self.ctx is not None
        try:
            wrapped = server_wrap(sock, self.ctx, self.opts.connect_timeout, shown)
        except Exception as exc:
            sock.close()
            self.reporter.warning(f"{shown}: {exc}", remote=shown)
            self._handshaken.put((None, shown, source))
        else:
            self._handshaken.put((wrapped, shown, source))
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _take_handshakes(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                wrapped, shown, source = self._handshaken.get_nowait()
            except queue.Empty:
                return
            if wrapped is None:
                self.slots.give(source)
            else:
                self._add(Conn(wrapped, peer=shown), source)

    def _timeout(self) -> float | None:
        idle = self.opts.idle_timeout
        if idle is None or not self.clients:
            return None
        oldest = min(c.last for c in self.clients.values())
        return max(0.0, oldest + idle - time.monotonic()) + 0.001

    def _expire_idle(self) -> None:
        """``-i``: a client silent in both directions for that long is disconnected."""
        idle = self.opts.idle_timeout
        if idle is None:
            return
        now = time.monotonic()
        for client in list(self.clients.values()):
            if now - client.last >= idle:
                self._drop(client, f"idle timeout: no data for {idle:g} s")

    def run(self) -> int:
        reason: str | None = None
        try:
            while not self._stop:
                pending = [c for c in self.clients.values() if c.conn.pending()]
                for client in pending:
                    self._read_client(client)
                self._expire_idle()
                for key, events in self.sel.select(0 if pending else self._timeout()):
                    data = key.data
                    if data == "listen":
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    elif data == "stdin":
                        self._read_stdin()
                    elif data == "wake":
                        self._take_handshakes()
                    elif isinstance(data, _Client):
                        if self.clients.get(data.conn.fd) is not data:
                            continue  # dropped earlier in this batch
                        if events & selectors.EVENT_WRITE:
                            self._flush(data)
                        if events & selectors.EVENT_READ and not data.read_done:
                            self._read_client(data)
            return 0
        except BaseException as exc:
            reason = end_reason(exc)
            raise
        finally:
            for client in list(self.clients.values()):
                self._drop(client, reason)
            self.sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


class _ExecServer:
    """``-k -e CMD``: accept in this thread; each client gets a thread that runs (and reaps)
    its program. A session that fails (its program cannot start, a thread cannot start, the
    process is out of descriptors) ends alone; the accept loop goes on."""

    def __init__(
        self,
        listeners: list[socket.socket],
        *,
        opts: NetcatOptions,
        reporter: Reporter,
        access: AccessList,
        tap: Tap,
        ctx: ssl.SSLContext | None,
    ) -> None:
        self.listeners = listeners
        self.opts = opts
        self.reporter = reporter
        self.access = access
        self.tap = tap
        self.ctx = ctx
        self.slots = Slots(opts.max_conns, opts.max_per_source)
        self._acceptor = Acceptor(access, reporter, self.slots)
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping: str | None = None

    def _count(self) -> int:
        return self.slots.count

    def run(self) -> int:
        from .listen import accept_ready

        for sock in self.listeners:
            sock.setblocking(False)
        try:
            while True:
                for listener in accept_ready(self.listeners):
                    for sock, addr, source in self._acceptor.accept_all(listener):
                        self._start(sock, show(addr), source)
        except BaseException as exc:
            self._stop_sessions(end_reason(exc))
            raise

    def _stop_sessions(self, reason: str) -> None:
        """The server is going away (Ctrl-C, SIGTERM): end every program (SIGTERM), and give
        the sessions a moment to reap them and report ``closed`` with ``reason``."""
        with self._lock:
            self._stopping = reason  # a program started from now on is ended at once
            procs = list(self._procs)
            threads = list(self._threads)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 2.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _start(self, sock: socket.socket, shown: str, source: str | None) -> None:
        thread = threading.Thread(target=self._serve, args=(sock, shown, source), daemon=True)
        try:
            sock.setblocking(True)
            with self._lock:
                self._threads.add(thread)
            thread.start()
        except (RuntimeError, OSError) as exc:  # can't start new thread
            with self._lock:
                self._threads.discard(thread)
            sock.close()
            self.slots.give(source)
            self.reporter.warning(f"{shown}: {exc}; disconnected", remote=shown)

    def _serve(self, sock: socket.socket, shown: str, source: str | None) -> None:
        from .execs import run_exec_session

        try:
            tls_sock: socket.socket | TlsSocket = sock
            if self.ctx is not None:
                from .tls import server_wrap

                tls_sock = server_wrap(sock, self.ctx, self.opts.connect_timeout, shown)
            conn = Conn(tls_sock, peer=shown)
            announce("accepted", conn, self.reporter)
            run_exec_session(
                conn,
                self.opts,
                self.reporter,
                self.tap,
                on_spawn=self._spawned,
                stopping=lambda: self._stopping,
            )
        except Exception as exc:  # this session only; never the server
            sock.close()
            self.reporter.warning(f"{shown}: {exc}", remote=shown)
        finally:
            self.slots.give(source)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _spawned(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            if self._stopping is not None:
                proc.terminate()
                return
            self._procs.add(proc)
            self._procs = {p for p in self._procs if p.returncode is None}
