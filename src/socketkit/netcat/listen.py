"""``socketkit listen``: one client (the default), or many at once (``-k``), over TCP/Unix;
UDP sessions live in :mod:`socketkit.netcat.udp_server`."""

from __future__ import annotations

import logging
import select
import socket
import ssl

from .._errors import SocketkitError
from .._sockets import cleanup_unix_path
from .access import AccessList
from .conn import Conn
from .conn import shown as show
from .endpoints import check_stdio
from .execs import check_program
from .net import open_tcp_listeners, open_udp_listener
from .options import NetcatOptions
from .report import Reporter
from .session import announce, relay_session
from .tap import Tap
from .tls import TlsSocket

__all__ = ["run_listen"]


def run_listen(opts: NetcatOptions, reporter: Reporter) -> int:
    """Run ``listen``; returns the exit status. Errors are raised (one line each)."""
    relaying = opts.broker or opts.chat
    check_stdio(
        stdin=not opts.executes and not relaying and not opts.recv_only,
        stdout=not opts.executes and not relaying and not opts.send_only,
    )
    check_program(opts)
    access = AccessList(opts.allow, opts.deny)
    tap = Tap(hex_dump=opts.hex_dump, output=opts.output)
    try:
        if opts.udp:
            from .udp_server import UdpServer

            sock = open_udp_listener(opts)
            try:
                if opts.multicast_group is not None:
                    _join(sock, opts)
                _announce_listening(reporter, [sock], "unixgram" if opts.unix_path else "udp")
                return UdpServer(sock, opts, reporter, access, tap).run()
            finally:
                cleanup_unix_path(sock)
                sock.close()
        ctx = _server_context(opts, reporter)
        listeners = open_tcp_listeners(opts)
        try:
            _announce_listening(reporter, listeners, "unix" if opts.unix_path else "tcp")
            if opts.keep_open or opts.broker or opts.chat:
                from .hub import serve_many

                return serve_many(
                    listeners, opts=opts, reporter=reporter, access=access, tap=tap, ctx=ctx
                )
            return _serve_one(
                listeners, opts=opts, reporter=reporter, access=access, tap=tap, ctx=ctx
            )
        finally:
            for sock in listeners:
                cleanup_unix_path(sock)
                sock.close()
    finally:
        tap.close()


def _join(sock: socket.socket, opts: NetcatOptions) -> None:
    """``--multicast``: make the listening socket a member of the group (for each
    ``--multicast-source``, or for any source)."""
    from .._errors import AddressError
    from .._multicast import join

    assert opts.multicast_group is not None
    for source in opts.multicast_sources or (None,):
        try:
            join(sock, opts.multicast_group, interface=opts.multicast_interface, source=source)
        except AddressError as exc:
            # The library names its parameter; a command-line user needs the option.
            text = str(exc).replace("(interface=...)", "with --multicast-interface")
            raise AddressError(text) from exc


def _server_context(opts: NetcatOptions, reporter: Reporter) -> ssl.SSLContext | None:
    if opts.tls is None:
        return None
    # We report the ephemeral certificate ourselves (as -v/--json events, or a warning).
    logging.getLogger("socketkit.tls").addHandler(logging.NullHandler())
    logging.getLogger("socketkit.tls").propagate = False
    from .tls import make_server_context

    ctx = make_server_context(opts.tls)
    fp = getattr(ctx, "socketkit_fingerprint", None)
    if fp:
        reporter.warning(
            f"no --tls-cert given: using an ephemeral self-signed certificate, SHA-256 {fp}",
            sha256=fp,
        )
    return ctx


def _announce_listening(reporter: Reporter, socks: list[socket.socket], proto: str) -> None:
    for sock in socks:
        where = show(sock.getsockname())
        reporter.event("listening", f"listening on {where} ({proto})", proto=proto, local=where)


def accept_ready(
    listeners: list[socket.socket], timeout: float | None = None
) -> list[socket.socket]:
    poller = select.poll()
    for sock in listeners:
        poller.register(sock.fileno(), select.POLLIN)
    fds = {fd for fd, _ in poller.poll(-1 if timeout is None else int(timeout * 1000))}
    return [sock for sock in listeners if sock.fileno() in fds]


def admit(sock: socket.socket, addr: object, access: AccessList, reporter: Reporter) -> bool:
    """Apply --allow/--deny right after accept, before reading a byte; close the denied."""
    host = addr[0] if isinstance(addr, tuple) else None
    if access.admits(host):
        return True
    shown = show(addr)
    reporter.event("denied", f"denied connection from {shown} (--allow/--deny)", remote=shown)
    try:
        sock.close()
    except OSError:
        pass
    return False


def _serve_one(
    listeners: list[socket.socket],
    *,
    opts: NetcatOptions,
    reporter: Reporter,
    access: AccessList,
    tap: Tap,
    ctx: ssl.SSLContext | None,
) -> int:
    while True:
        for listener in accept_ready(listeners):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue
            if not admit(sock, addr, access, reporter):
                continue
            for other in listeners:  # one client only: stop listening, like nc -l
                cleanup_unix_path(other)
                other.close()
            tls_sock: socket.socket | TlsSocket = sock
            if ctx is not None:
                from .tls import server_wrap

                try:
                    tls_sock = server_wrap(sock, ctx, opts.connect_timeout, show(addr))
                except SocketkitError:
                    sock.close()
                    raise
            conn = Conn(tls_sock, peer=show(addr))
            announce("accepted", conn, reporter)
            if opts.executes:
                from .execs import run_exec_session

                run_exec_session(conn, opts, reporter, tap)
                return 0
            relay_session(conn, opts, reporter, tap)
            return 0
