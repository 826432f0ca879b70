"""``socketkit connect``: dial, optionally TLS, then relay stdin/stdout (or run ``--exec``)."""

from __future__ import annotations

import socket

from .conn import Conn, peer_name
from .endpoints import check_stdio
from .execs import check_program
from .net import dial
from .options import NetcatOptions
from .report import Reporter
from .scan import scan_ports
from .session import announce, relay_session
from .tap import Tap
from .tls import TlsSocket

__all__ = ["run_connect"]


def run_connect(
    opts: NetcatOptions,
    reporter: Reporter,
    *,
    ports: list[int] | None = None,
    concurrency: int = 1,
) -> int:
    """Run a connect session; returns the exit status (0). Errors are raised as
    :class:`~socketkit.SocketkitError` (or a one-line ``OSError`` for local files)."""
    if ports is not None:
        return scan_ports(opts, ports, reporter, concurrency=concurrency)
    check_stdio(
        stdin=not opts.executes and not opts.recv_only,
        stdout=not opts.executes and not opts.send_only,
    )
    check_program(opts)
    ctx = None
    if opts.tls is not None:
        from .tls import make_client_context

        if opts.unix_path is not None and not opts.tls.insecure and not opts.tls.sni:
            # A Unix socket has no host name to verify the certificate against.
            raise ValueError(
                "--tls over -U verifies the server's certificate against a name: give it "
                "with --sni NAME (or skip verification with --tls-insecure)"
            )

        ctx = make_client_context(opts.tls)  # bad files fail before connecting
    tap = Tap(hex_dump=opts.hex_dump, output=opts.output)
    try:
        raw = dial(opts)
        peer = None
        if opts.tls is not None:
            from .tls import client_wrap

            try:
                # Named now: a server that breaks the session off may be gone by the time
                # an error needs its name.
                peer = peer_name(raw)
                sock: socket.socket | TlsSocket = client_wrap(
                    raw, opts.tls, opts.host, opts.connect_timeout, ctx, peer=peer
                )
            except BaseException:
                raw.close()
                raise
        else:
            sock = raw
        conn = Conn(sock, datagram=opts.udp, peer=peer)
        announce("connected", conn, reporter)
        if opts.executes:
            from .execs import run_exec_session

            run_exec_session(conn, opts, reporter, tap)
            return 0
        relay_session(conn, opts, reporter, tap)
        return 0
    finally:
        tap.close()
