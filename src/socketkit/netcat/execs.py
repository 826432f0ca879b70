"""``--exec``/``--sh-exec``: a program whose stdin and stdout are the connection.

Plain sockets are handed to the child as its stdin and stdout (the kernel moves the bytes;
socketkit only waits and reaps). Over TLS the child gets pipes and a relay thread carries the
bytes through the TLS layer. Either way the child is reaped when it exits.
"""

from __future__ import annotations

import subprocess
import time

from .._errors import SocketkitError
from .conn import Conn
from .eof import EofMachine, EofPolicy
from .options import NetcatOptions
from .relay import Relay
from .report import Reporter
from .session import closed, end_reason
from .tap import Tap

__all__ = ["child_argv", "run_exec_session"]


def child_argv(opts: NetcatOptions) -> list[str]:
    if opts.exec_argv is not None:
        return list(opts.exec_argv)
    assert opts.sh_exec is not None
    return ["/bin/sh", "-c", opts.sh_exec]


def _spawn(argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, close_fds=True, **kw)  # type: ignore[call-overload, no-any-return]
    except OSError as exc:
        raise SocketkitError(f"cannot run {argv[0]}: {exc.strerror}") from exc


def run_exec_session(conn: Conn, opts: NetcatOptions, reporter: Reporter, tap: Tap | None) -> int:
    """Run the program on ``conn`` until it exits; close ``conn``; return its exit status."""
    argv = child_argv(opts)
    started = time.monotonic()
    sent = received = 0
    error: str | None = None
    try:
        direct = not conn.tls and not (tap is not None and tap.active) and not opts.crlf
        if direct:
            conn.set_blocking(True)
            proc = _spawn(argv, stdin=conn.fd, stdout=conn.fd)
            conn.close()  # the child holds the socket now; the peer sees EOF when it exits
            return proc.wait()
        proc = _spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
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
        closed(reporter, conn, sent, received, time.monotonic() - started, error=error)
