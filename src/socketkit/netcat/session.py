"""Run one connected session (connect, or one accepted client) and report it."""

from __future__ import annotations

import time
from typing import Any

from .conn import Conn
from .endpoints import check_delivered
from .eof import EofMachine
from .options import NetcatOptions
from .relay import Relay, RelayResult
from .report import Reporter
from .tap import Tap

__all__ = ["announce", "end_reason", "relay_session"]


def end_reason(exc: BaseException) -> str:
    """Why a session ended early, as the ``closed`` line and event say it."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, SystemExit):
        # exit_cleanly_on_sigterm raises SystemExit(143) from the SIGTERM handler.
        return "terminated by SIGTERM" if exc.code == 143 else f"exit status {exc.code}"
    if isinstance(exc, BrokenPipeError):
        return "stdout closed by its reader"
    return " ".join(str(exc).split()) or type(exc).__name__


def announce(event: str, conn: Conn, reporter: Reporter, **extra: Any) -> None:
    """Report ``connected``/``accepted`` (and, for TLS, what was negotiated)."""
    info = conn.tls_info()
    kind = conn.proto + (" TLS" if info else "")
    text = (
        f"connected to {conn.peer} ({kind}) from {conn.local}"
        if event == "connected"
        else f"accepted {kind} connection from {conn.peer} on {conn.local}"
    )
    reporter.event(
        event,
        text,
        proto=conn.proto,
        local=conn.local,
        remote=conn.peer,
        tls=info,
        **extra,
    )
    if info is not None and reporter.verbose and not reporter.json:
        from .tls import tls_summary

        reporter.event("tls", "TLS: " + tls_summary(info))


def relay_session(
    conn: Conn,
    opts: NetcatOptions,
    reporter: Reporter,
    tap: Tap | None,
    *,
    local_in: int | None = 0,
    local_out: int | None = 1,
) -> RelayResult:
    """Relay ``conn`` with stdin/stdout under ``opts``' EOF policy; close it; report
    ``closed`` with byte counts (also when the relay fails)."""
    machine = EofMachine(opts.policy, send_only=opts.send_only, recv_only=opts.recv_only)
    relay = Relay(
        conn,
        local_in=local_in,
        local_out=local_out,
        machine=machine,
        tap=tap,
        crlf=opts.crlf,
        idle_timeout=opts.idle_timeout,
        force_copy=opts.force_copy,
    )
    started = time.monotonic()
    error: str | None = None
    try:
        result = relay.run()
        if local_out is not None and relay.received:
            check_delivered(local_out)
        return result
    except BaseException as exc:
        error = end_reason(exc)
        raise
    finally:
        conn.close()
        closed(reporter, conn, relay.sent, relay.received, time.monotonic() - started, error=error)


def closed(
    reporter: Reporter,
    conn: Conn,
    sent: int,
    received: int,
    duration: float,
    *,
    error: str | None = None,
) -> None:
    reporter.event(
        "closed",
        f"closed {conn.peer}: sent {sent} bytes, received {received} bytes in {duration:.3f} s"
        + (f" ({error})" if error else ""),
        proto=conn.proto,
        remote=conn.peer,
        bytes_sent=sent,
        bytes_received=received,
        duration=round(duration, 6),
        error=error,
    )
