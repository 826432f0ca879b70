"""``socketkit.aio.connect``: Happy Eyeballs (RFC 8305) on asyncio, then optional TLS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from .._addr import Address, AddressLike, format_sockaddr, parse_address
from .._connect_common import (
    DEFAULT_CONNECT_TIMEOUT,
    HAPPY_EYEBALLS_DELAY,
    connect_failure,
    tls_context_for,
)
from .._errors import ConnectTimeout, TLSError, translate_os_error
from .._sockets import set_stream_options
from ..proto.tls import TLSEngine
from .protocol import StreamProtocol, protocol_class
from .stream import Stream

__all__ = ["connect", "tls_handshake"]


async def connect(
    address: AddressLike,
    *,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    tls: bool | ssl.SSLContext = False,
    server_hostname: str | None = None,
    source: AddressLike | None = None,
    family: int = socket.AF_UNSPEC,
    numeric: bool = False,
    happy_eyeballs_delay: float = HAPPY_EYEBALLS_DELAY,
    default_timeout: float | None = None,
) -> Stream:
    """Connect and return an asyncio :class:`Stream`. Parameters and errors as the sync
    :func:`socketkit.connect`."""
    target = parse_address(address)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if target.path is not None:
                sock = await _connect_unix(target.path)
            else:
                infos = await _resolve(target, family, numeric)
                src = parse_address(source) if source is not None else None
                sock = await _happy_eyeballs(str(target), infos, happy_eyeballs_delay, src)
            set_stream_options(sock)
            try:
                transport, protocol = await loop.create_connection(protocol_class(loop), sock=sock)
            except BaseException:
                sock.close()
                raise
            stream = Stream(transport, protocol, default_timeout=default_timeout)
            ctx = tls_context_for(tls)
            if ctx is not None:
                try:
                    await tls_handshake(
                        protocol, ctx, server_side=False,
                        server_hostname=server_hostname or target.host,
                    )  # fmt: skip
                except BaseException:
                    stream.abort()
                    raise
            return stream
    except TimeoutError as exc:
        cause = exc.__cause__ or exc.__context__
        failures = getattr(cause, "attempts", [])
        raise ConnectTimeout(f"cannot connect to {target}: timed out", failures) from exc


async def _resolve(
    target: Address, family: int, numeric: bool
) -> list[tuple[int, tuple[object, ...]]]:
    from .._addr import resolve

    loop = asyncio.get_running_loop()
    # getaddrinfo blocks: run it in the default executor, as asyncio itself does.
    return await loop.run_in_executor(None, lambda: resolve(target, family=family, numeric=numeric))


async def _connect_unix(path: str) -> socket.socket:
    """Connect to a Unix stream socket. A full listen backlog makes a non-blocking connect
    fail with EAGAIN (unix(7)), which asyncio's ``sock_connect`` would take for "in
    progress"; wait and retry instead, until the caller's timeout cancels us."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    pause = 0.001
    try:
        while True:
            try:
                sock.connect(path)
                return sock
            except BlockingIOError:
                await asyncio.sleep(pause)
                pause = min(2 * pause, 0.05)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError):
            raise translate_os_error(exc, f"cannot connect to {format_sockaddr(path)}") from exc
        raise


async def _attempt(
    family: int, sockaddr: tuple[object, ...], source: Address | None
) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source is not None:
            wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
            sock.bind((source.host or wildcard, source.port))
        await loop.sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _happy_eyeballs(
    shown: str,
    infos: list[tuple[int, tuple[object, ...]]],
    delay: float,
    source: Address | None,
) -> socket.socket:
    """Staggered race: the next attempt starts after ``delay`` or when one fails; the first
    success wins and every other attempt is cancelled and its socket closed."""
    pending = list(infos)
    running: dict[asyncio.Task[socket.socket], str] = {}
    failures: list[tuple[str, BaseException]] = []

    def start_next() -> None:
        family, sockaddr = pending.pop(0)
        task = asyncio.ensure_future(_attempt(family, sockaddr, source))
        running[task] = format_sockaddr(sockaddr)

    try:
        while pending or running:
            if pending and not running:
                start_next()
            done, _ = await asyncio.wait(
                running, timeout=delay if pending else None, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                start_next()
                continue
            for task in done:
                where = running.pop(task)
                exc = task.exception()
                if exc is None:
                    return task.result()
                failures.append((where, exc))
    except asyncio.CancelledError as exc:
        # The overall timeout: keep the failures for the ConnectTimeout message.
        exc.attempts = failures  # type: ignore[attr-defined]
        raise
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(BaseException):
                sock = await task
                sock.close()
    raise connect_failure(shown, failures, timed_out=False)


async def tls_handshake(
    protocol: StreamProtocol,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
) -> None:
    """Run the TLS handshake over an open protocol (also for STARTTLS-style upgrades)."""
    engine = TLSEngine(context, server_side=server_side, server_hostname=server_hostname)
    if len(protocol.buffer):
        engine.receive_data(protocol.buffer.take_all())
    protocol.tls = engine
    transport = protocol.transport
    assert transport is not None
    while True:
        try:
            done = engine.do_handshake()
        except TLSError:
            # Tell the peer why (e.g. "certificate required"): send the alert OpenSSL
            # queued, instead of a bare close it would report as an EOF.
            alert = engine.data_to_send()
            if alert and not transport.is_closing():
                transport.write(alert)
            raise
        out = engine.data_to_send()
        if out:
            transport.write(out)
        if done:
            protocol._pump_tls()
            return
        if protocol.eof:
            raise TLSError("TLS handshake failed: the peer closed the connection")
        await protocol.new_read_waiter()
