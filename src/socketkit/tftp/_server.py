"""``socketkit.tftp.serve``: a TFTP server for one directory.

The listening socket only takes requests. Each accepted request gets its own socket on an
ephemeral port (its TID, RFC 1350 section 4) and its own thread; a request from a peer that
already has a session is a retransmission and is ignored. Sessions are bounded in total and per
source address; refusals are answered with a TFTP ERROR from the listening socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import ConnectionRefused, SocketkitError
from ..proto import tftp
from ._channel import RECEIVE_SIZE, Channel, dally, drive
from ._files import AtomicFile, Refused, open_for_read, resolve_for_write

#: The ERROR 0 text a client of a running transfer gets when the server is closed (SIGTERM).
SHUTTING_DOWN = "the server is shutting down"

__all__ = ["DEFAULT_MAX_SESSIONS", "DEFAULT_MAX_SESSIONS_PER_IP", "TftpServer", "serve"]

#: Concurrent transfers (threads and sockets) of one server.
DEFAULT_MAX_SESSIONS = 64
#: Concurrent transfers from one source address: one host cannot take every session.
DEFAULT_MAX_SESSIONS_PER_IP = 8
#: Largest upload accepted when the client says its size (tsize) or not: unbounded by default
#: (the disk's free space is checked against tsize).
DEFAULT_MAX_FILE_SIZE: int | None = None

#: ``on_event(name, fields)``: "listening", "request", "refused", "done", "failed".
EventHandler = Callable[[str, dict[str, Any]], None]


def _format(address: Any) -> str:
    host, port = address[0], address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_bind(address: str | int | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, int):
        return "", address
    if isinstance(address, tuple):
        return address
    text = address.strip()
    if text.startswith("["):
        end = text.find("]")
        host, port = text[1:end], text[end + 2 :]
    else:
        host, _, port = text.rpartition(":")
    return host, int(port) if port else tftp.DEFAULT_PORT


def _queued_error(channel: Channel) -> tftp.PeerError | None:
    """The ERROR a client sent before it went away, when it is still queued: the kernel
    reports the ICMP port unreachable that followed it first (a Ctrl-C'd client sends ERROR 0
    and closes while our next packet is on its way)."""
    for _ in range(64):
        try:
            data = channel.sock.recv(RECEIVE_SIZE, socket.MSG_DONTWAIT)
        except OSError:
            return None
        if data[:2] == b"\x00\x05":
            try:
                packet = tftp.decode(data)
            except tftp.MalformedPacket:
                return None
            if isinstance(packet, tftp.Error):
                return tftp.peer_error(packet.code, packet.message)
    return None


class TftpServer:
    """A running TFTP server (see :func:`serve`). ``serve_forever()`` answers requests until
    ``close()`` (from another thread, or a signal handler); a context manager."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        address: str | int | tuple[str, int] = ":69",
        *,
        write: bool = False,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_sessions_per_ip: int = DEFAULT_MAX_SESSIONS_PER_IP,
        max_blksize: int = tftp.MAX_BLKSIZE,
        max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
        timeout: float = tftp.DEFAULT_TIMEOUT,
        retries: int = tftp.DEFAULT_RETRIES,
        on_event: EventHandler | None = None,
    ) -> None:
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise OSError(f"cannot serve {os.fspath(directory)}: not a directory")
        if max_sessions < 1 or max_sessions_per_ip < 1:
            raise ValueError("max_sessions and max_sessions_per_ip must be at least 1")
        self.root = root
        self.write = write
        self.max_sessions = max_sessions
        self.max_sessions_per_ip = max_sessions_per_ip
        self.max_blksize = max_blksize
        self.max_file_size = max_file_size
        self.timeout = timeout
        self.retries = retries
        self._on_event = on_event
        from .._sync.udp import udp

        host, port = _parse_bind(address)
        local = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._listener = udp(local)
        self._sock = self._listener.socket
        self._sock.settimeout(None)
        bound = self._sock.getsockname()
        # Each transfer's socket is bound like the listener: the same address, or, for a
        # dual-stack "[::]" listener, dual-stack too (IPv4 peers arrive as ::ffff:a.b.c.d).
        dual = (
            self._sock.family == socket.AF_INET6
            and bound[0] == "::"
            and not (self._sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
        )
        self._session_local = ":0" if dual else _format((bound[0], 0))
        self._session_family = None if dual else self._sock.family
        self.address = _format(bound)
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int], Channel] = {}
        self._per_ip: dict[str, int] = {}
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._event("listening", address=self.address, directory=self.root, write=write)

    # -- events -----------------------------------------------------------------------------

    def _event(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            with contextlib.suppress(Exception):
                self._on_event(name, fields)

    @property
    def sessions(self) -> int:
        """Transfers in progress."""
        with self._lock:
            return len(self._sessions)

    # -- the request loop -------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Answer requests until :meth:`close`; waits for running transfers to end."""
        try:
            while not self._closed:
                try:
                    data, address = self._sock.recvfrom(RECEIVE_SIZE)
                except OSError:
                    if self._closed:
                        break
                    raise
                if self._closed:
                    break
                self._request(data, address)
        finally:
            # Also on Ctrl-C (KeyboardInterrupt here): running transfers are ended now, their
            # temporary files removed, instead of waiting for their timers.
            self.close()
            for thread in list(self._threads):
                thread.join(self.timeout * 2 + 1)

    def _refuse(self, address: Any, code: tftp.ErrorCode, message: str, **fields: Any) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendto(tftp.encode(tftp.Error(code, message)), address)
        self._event("refused", peer=_format(address), code=int(code), message=message, **fields)

    def _request(self, data: bytes, address: Any) -> None:
        key = (address[0], address[1])
        with self._lock:
            if key in self._sessions:
                return  # a retransmitted request of a running session
        try:
            packet = tftp.decode(data)
        except tftp.MalformedPacket as exc:
            self._refuse(address, exc.code, str(exc))
            return
        if not isinstance(packet, tftp.Request):
            if isinstance(packet, tftp.Error):
                return  # never answer an ERROR (RFC 1350 section 7)
            self._refuse(
                address,
                tftp.ErrorCode.ILLEGAL_OPERATION,
                f"a {type(packet).__name__} packet is not a request",
            )
            return
        op = "read" if packet.opcode == tftp.Opcode.RRQ else "write"
        host = address[0]
        with self._lock:
            busy = len(self._sessions) >= self.max_sessions
            busy_ip = self._per_ip.get(host, 0) >= self.max_sessions_per_ip
            if not busy and not busy_ip:
                self._per_ip[host] = self._per_ip.get(host, 0) + 1
                self._sessions[key] = None  # type: ignore[assignment]  # reserved
        if busy or busy_ip:
            count = self.max_sessions if busy else self.max_sessions_per_ip
            limit = f"{count} session{'' if count == 1 else 's'}" + (
                "" if busy else f" from {_format((host, 0)).rsplit(':', 1)[0]}"
            )
            self._refuse(
                address,
                tftp.ErrorCode.NOT_DEFINED,
                f"server busy: {limit} already; try again later",
                file=packet.filename,
            )
            return
        self._event(
            "request",
            peer=_format(address),
            op=op,
            file=packet.filename,
            mode=packet.mode,
            options=dict(packet.options),
        )
        thread = threading.Thread(
            target=self._session,
            args=(packet, address, key),
            name=f"tftp {_format(address)}",
            daemon=True,
        )
        self._threads.add(thread)
        thread.start()

    def _release(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._sessions.pop(key, None)
            count = self._per_ip.get(key[0], 1) - 1
            if count <= 0:
                self._per_ip.pop(key[0], None)
            else:
                self._per_ip[key[0]] = count
        self._threads.discard(threading.current_thread())

    # -- one transfer ------------------------------------------------------------------------

    def _session(self, request: tftp.Request, address: Any, key: tuple[str, int]) -> None:
        started = time.monotonic()
        peer = _format(address)
        channel: Channel | None = None
        released = False
        try:
            from .._sync.udp import udp

            channel = Channel(
                udp(self._session_local, family=self._session_family).socket, peer_role="client"
            )
            with self._lock:
                self._sessions[key] = channel
            if self._closed:
                return
            try:
                machine = self._transfer(request, address, channel)
            except (tftp.TftpRefusal, tftp.MalformedPacket) as exc:
                if exc.answered:  # during the transfer: the peer was told, the transfer failed
                    raise
                channel.send(tftp.encode(tftp.Error(exc.code, str(exc))), address)
                self._event(
                    "refused",
                    peer=peer,
                    code=int(exc.code),
                    message=str(exc),
                    file=request.filename,
                )
                return
            self._event(
                "done",
                peer=peer,
                op="read" if request.opcode == tftp.Opcode.RRQ else "write",
                file=request.filename,
                size=machine.stats.size,
                seconds=round(time.monotonic() - started, 6),
                retransmits=machine.stats.retransmits,
                blksize=machine.options.blksize,
                windowsize=machine.options.windowsize,
            )
            if isinstance(machine, tftp.ServerWrite):
                # Our last ACK may be lost: answer a repeated last DATA for a while. The peer
                # is free to start its next transfer meanwhile (tftp-hpa's client reuses its
                # port): the session no longer counts as running.
                released = True
                self._release(key)
                dally(machine, channel, address, self._timeout(machine.options))
        except (SocketkitError, OSError) as exc:
            if isinstance(exc, ConnectionRefused) and channel is not None:
                exc = _queued_error(channel) or exc
            self._event(
                "failed",
                peer=peer,
                file=request.filename,
                message=str(exc),
                error=type(exc).__name__,
            )
        finally:
            if channel is not None:
                channel.close()
            if not released:
                self._release(key)

    def _transfer(
        self, request: tftp.Request, address: Any, channel: Channel
    ) -> tftp.ServerRead | tftp.ServerWrite:
        netascii = request.mode == tftp.Mode.NETASCII
        if request.opcode == tftp.Opcode.RRQ:
            source, size = open_for_read(self.root, request.filename)
            with source:
                options, oack = self._negotiate(
                    request, channel, address, None if netascii else size
                )
                read = tftp.NetasciiEncoder(source.read).read if netascii else source.read
                reader = tftp.ServerRead(
                    read,
                    options=options,
                    oack=oack,
                    timeout=self._timeout(options),
                    retries=self.retries,
                )
                drive(
                    reader,
                    channel,
                    reader.start(time.monotonic()),
                    address,
                    locked=True,
                    stop=lambda: self._closed,
                )
                return reader
        if not self.write:
            raise Refused(
                "writes are refused: this server was started without --write",
                tftp.ErrorCode.ACCESS_VIOLATION,
            )
        options, oack = self._negotiate(request, channel, address, None)
        if (
            self.max_file_size is not None
            and options.tsize is not None
            and options.tsize > self.max_file_size
        ):
            raise Refused(
                f"{options.tsize} bytes is above this server's limit of {self.max_file_size}",
                tftp.ErrorCode.DISK_FULL,
            )
        path = resolve_for_write(self.root, request.filename, options.tsize)
        channel.reserve(options.windowsize, options.blksize)
        with AtomicFile(path, root=self.root) as target:
            decoder = tftp.NetasciiDecoder(target.file.write) if netascii else None
            writer = tftp.ServerWrite(
                decoder.write if decoder else target.file.write,
                options=options,
                oack=oack,
                timeout=self._timeout(options),
                retries=self.retries,
            )
            if netascii:
                writer._checks_tsize = False

            def finish() -> None:
                if decoder is not None:
                    decoder.close()
                if self.max_file_size is not None and writer.stats.size > self.max_file_size:
                    raise Refused(
                        f"{writer.stats.size} bytes is above this server's limit of "
                        f"{self.max_file_size}",
                        tftp.ErrorCode.DISK_FULL,
                    )
                target.commit()

            drive(
                writer,
                channel,
                writer.start(time.monotonic()),
                address,
                locked=True,
                stop=lambda: self._closed,
                finish=finish,
            )
        return writer

    def _timeout(self, options: tftp.Options) -> float:
        return float(options.timeout) if options.timeout is not None else self.timeout

    def _negotiate(
        self, request: tftp.Request, channel: Channel, address: Any, size: int | None
    ) -> tuple[tftp.Options, tuple[tuple[str, str], ...]]:
        return tftp.negotiate(
            request, file_size=size, max_blksize=self.max_blksize, max_tsize=self.max_file_size
        )

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop taking requests and end running transfers, telling their clients with ERROR 0
        :data:`SHUTTING_DOWN` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            channels = [c for c in self._sessions.values() if c is not None]
        # Each client is told (ERROR 0) instead of finding out through its retries.
        farewell = tftp.encode(tftp.Error(tftp.ErrorCode.NOT_DEFINED, SHUTTING_DOWN))
        for channel in channels:
            if channel.peer is not None:
                with contextlib.suppress(OSError):
                    channel.sock.send(farewell)
            with contextlib.suppress(OSError):
                channel.sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> TftpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    directory: str | os.PathLike[str],
    address: str | int | tuple[str, int] = ":69",
    *,
    write: bool = False,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_sessions_per_ip: int = DEFAULT_MAX_SESSIONS_PER_IP,
    max_blksize: int = tftp.MAX_BLKSIZE,
    max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
    timeout: float = tftp.DEFAULT_TIMEOUT,
    retries: int = tftp.DEFAULT_RETRIES,
    on_event: EventHandler | None = None,
) -> TftpServer:
    """Serve the files of ``directory`` over TFTP at ``address`` (``":69"``: every address).

    The socket is bound when this returns (``.address`` says where); call ``serve_forever()``
    (blocks; ``close()`` from another thread ends it) or use it as a context manager.

    Safety: names are relative to ``directory``; ``..``, absolute names and symlinks that
    lead out of it are refused (ERROR 2); writes are refused unless ``write=True``, go to a
    temporary name and are renamed only when complete (and, when the client sent tsize, of
    that size); a transfer whose peer vanishes times out and leaves no partial file.

    Args:
        max_sessions, max_sessions_per_ip: concurrent transfers in total and per source
            address; more are refused with ERROR 0 "server busy".
        max_blksize: the largest blksize granted (a larger request gets this, RFC 2348).
        max_file_size: the largest upload (None: only the disk's free space).
        timeout, retries: retransmission timer (the client may change the timeout with the
            RFC 2349 option) and retries before a transfer is abandoned.
        on_event: ``on_event(name, fields)`` for "listening", "request", "refused", "done",
            "failed" (called from the transfer threads).

    Raises:
        OSError: ``directory`` is not a directory; SocketkitError / PermissionDenied: the
        address cannot be bound (port 69 needs privilege).
    """
    return TftpServer(
        directory, address, write=write, max_sessions=max_sessions,
        max_sessions_per_ip=max_sessions_per_ip, max_blksize=max_blksize,
        max_file_size=max_file_size, timeout=timeout, retries=retries, on_event=on_event,
    )  # fmt: skip
