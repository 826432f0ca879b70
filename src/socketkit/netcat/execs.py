"""``--exec``/``--sh-exec``: a program whose stdin and stdout are the connection.

Plain sockets are handed to the child as its stdin and stdout (the kernel moves the bytes;
socketkit only waits and reaps). Over TLS the child gets pipes and a relay thread carries the
bytes through the TLS layer. Either way the child is reaped when it exits.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from .._errors import SocketkitError
from .conn import Conn
from .eof import EofMachine, EofPolicy
from .options import NetcatOptions
from .relay import Relay
from .report import Reporter
from .session import closed, end_reason
from .tap import Tap

__all__ = ["check_program", "child_argv", "run_exec_session"]


def child_argv(opts: NetcatOptions) -> list[str]:
    if opts.exec_argv is not None:
        return list(opts.exec_argv)
    assert opts.sh_exec is not None
    return ["/bin/sh", "-c", opts.sh_exec]


#: struct tcp_info (include/uapi/linux/tcp.h): tcpi_state (u8) first; tcpi_bytes_acked and
#: tcpi_bytes_received, two u64, at these offsets (Linux >= 4.1 and 4.2).
_BYTES_ACKED = 120
_BYTES_RECEIVED = 128
#: TCP states in which the peer's FIN has been received (it counts in tcpi_bytes_received).
_FIN_RECEIVED = {6, 8, 9, 11}  # TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING


def tcp_byte_counts(sock: socket.socket) -> tuple[int, int] | None:
    """A snapshot of the kernel's counters for ``sock``: bytes written to it by the processes
    holding it (acknowledged, plus still queued: SIOCOUTQ) and bytes read from it (received,
    minus still unread: SIOCINQ, minus the peer's FIN). The difference of two snapshots is
    what a child moved (the counters include the SYN on some kernels: it cancels out).
    ``None`` where the kernel does not say (not TCP, not Linux)."""
    import fcntl
    import struct
    import termios

    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_INFO", 11), 256)
        if len(raw) < _BYTES_RECEIVED + 8:
            return None
        acked, received = struct.unpack_from("=QQ", raw, _BYTES_ACKED)
        queued = bytearray(4)
        unread = bytearray(4)
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued)  # SIOCOUTQ
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, unread)  # SIOCINQ
    except OSError:
        return None
    order = sys.byteorder
    fin = 1 if raw[0] in _FIN_RECEIVED else 0
    written = acked + int.from_bytes(queued, order)
    return written, received - int.from_bytes(unread, order) - fin


def check_program(opts: NetcatOptions) -> None:
    """Before listening or connecting: the ``--exec`` program exists and may be run (``-c``
    needs /bin/sh), so a typo is one line up front, not a failure per client (and, for a UDP
    server, a fork per datagram).

    Raises:
        SocketkitError: ``cannot run PROG: No such file or directory`` (exit 1).
    """
    if not opts.executes:
        return
    program = child_argv(opts)[0]
    if "/" in program:
        if not os.path.exists(program):
            raise SocketkitError(f"cannot run {program}: No such file or directory")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise SocketkitError(f"cannot run {program}: Permission denied")
    elif shutil.which(program) is None:
        raise SocketkitError(f"cannot run {program}: not found in PATH")


def _spawn(argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, close_fds=True, **kw)  # type: ignore[call-overload, no-any-return]
    except OSError as exc:
        raise SocketkitError(f"cannot run {argv[0]}: {exc.strerror}") from exc


def run_exec_session(
    conn: Conn,
    opts: NetcatOptions,
    reporter: Reporter,
    tap: Tap | None,
    *,
    on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None,
    stopping: Callable[[], str | None] | None = None,
) -> int:
    """Run the program on ``conn`` until it exits; close ``conn``; return its exit status.

    ``on_spawn`` is told the child (a server ends it when it stops); ``stopping`` says why
    the server is ending (the ``closed`` event's reason), or ``None``."""
    argv = child_argv(opts)
    started = time.monotonic()
    sent = received = 0
    error: str | None = None
    try:
        direct = not conn.tls and not (tap is not None and tap.active) and not opts.crlf
        # Handed to the child, a socket's bytes are counted by the kernel only for TCP
        # (TCP_INFO); a Unix socket goes through the relay when the count is shown.
        if direct and conn.proto != "tcp" and (reporter.verbose or reporter.json):
            direct = False
        if direct:
            conn.set_blocking(True)
            before = tcp_byte_counts(conn.sock)
            proc = _spawn(argv, stdin=conn.fd, stdout=conn.fd)
            if on_spawn is not None:
                on_spawn(proc)
            # We keep our descriptor until the child exits, only to read the byte counts; then
            # the peer sees the FIN, as if the child had been the only holder.
            try:
                return proc.wait()
            finally:
                after = tcp_byte_counts(conn.sock)
                if before is not None and after is not None:
                    sent, received = after[0] - before[0], max(0, after[1] - before[1])
        proc = _spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if on_spawn is not None:
            on_spawn(proc)
        assert proc.stdin is not None and proc.stdout is not None
        # The child's output EOF ends our sending (FIN); the peer's EOF closes the child's
        # stdin; the session ends when both are done.
        machine = EofMachine(EofPolicy("shutdown", "stay"))
        relay = Relay(
            conn,
            local_in=proc.stdout.fileno(),
            local_out=proc.stdin.fileno(),
            machine=machine,
            tap=tap,
            crlf=opts.crlf,
            idle_timeout=opts.idle_timeout,
            on_peer_eof=proc.stdin.close,
        )
        try:
            result = relay.run()
            sent, received = result.sent, result.received
        except BaseException as exc:
            error = end_reason(exc)
            proc.kill()
            raise
        finally:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            conn.close()
            status = proc.wait()
        return status
    finally:
        conn.close()
        if error is None and stopping is not None:
            error = stopping()
        closed(reporter, conn, sent, received, time.monotonic() - started, error=error)
