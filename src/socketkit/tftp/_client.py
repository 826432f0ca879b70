"""``socketkit.tftp.get`` and ``put``: a TFTP client over :func:`socketkit.udp`."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
from dataclasses import dataclass
from typing import IO, Any

from .._errors import AddressError, ConnectionRefused, ResolutionError
from ..proto import tftp
from ._channel import Channel, Progress, dally, drive
from ._files import AtomicFile

__all__ = ["TransferReport", "get", "parse_server", "put"]

#: After the last ACK of a read, the client answers a retransmitted last DATA for this long
#: (a lost last ACK otherwise leaves the server retransmitting until it gives up). Short: the
#: transfer is complete, the caller has its file. Only after a transfer that saw the path
#: lose or repeat a packet (a retransmission or a duplicate): on a clean path the client
#: leaves at once, as tftp-hpa's does (RFC 1350 section 6 allows it), instead of adding this
#: to every transfer.
CLIENT_DALLY = 0.2


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What a finished :func:`get` or :func:`put` did.

    Attributes:
        operation: ``"get"`` or ``"put"``.
        remote: the file name on the server.
        local: the local file (None when a file object was given).
        server: the server's transfer address (its TID), ``host:port``.
        size: bytes of DATA transferred (in netascii mode: the bytes on the wire).
        seconds: from the request to the last packet.
        blocks, retransmits, duplicates: DATA blocks, packets sent again, duplicates seen.
        blksize, windowsize, tsize: what was in effect; ``negotiated`` says whether the server
            answered the options (False: RFC 1350 defaults, the server ignored them).
        mode: ``"octet"`` or ``"netascii"``.
    """

    operation: str
    remote: str
    local: str | None
    server: str
    size: int
    seconds: float
    blocks: int
    retransmits: int
    duplicates: int
    blksize: int
    windowsize: int
    tsize: int | None
    negotiated: bool
    mode: str

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.size / self.seconds if self.seconds > 0 else 0.0


def parse_server(
    server: str | tuple[str, int], default_port: int = tftp.DEFAULT_PORT
) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal -> (host, port).

    Raises:
        AddressError: an empty host or a port outside 1..65535.
    """
    if isinstance(server, tuple):
        host, port = server
    else:
        text = server.strip()
        port_text = ""
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
                raise AddressError(f"bad server {server!r}: expected [v6addr] or [v6addr]:port")
            host, port_text = text[1:end], text[end + 2 :]
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host = text  # a name, an IPv4 address, or an IPv6 literal without brackets
        if port_text:
            if not port_text.isdigit():
                raise AddressError(f"bad port {port_text!r} in {server!r}")
            port = int(port_text)
        else:
            port = default_port
    if not host:
        raise AddressError(f"bad server {server!r}: no host")
    if not 1 <= port <= 65535:
        raise AddressError(f"bad port {port} in {server!r}: 1..65535")
    return host, port


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ResolutionError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _open(family: socket.AddressFamily) -> Channel:
    from .._sync.udp import udp

    local = "0.0.0.0:0" if family == socket.AF_INET else "[::]:0"
    datagrams = udp(local, family=family)
    return Channel(datagrams.socket, report_refused=True)


def _format(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def get(
    server: str | tuple[str, int],
    remote: str,
    local: str | os.PathLike[str] | IO[bytes] | None = None,
    *,
    blksize: int = tftp.DEFAULT_BLKSIZE,
    windowsize: int = 1,
    timeout: float = tftp.DEFAULT_TIMEOUT,
    retries: int = tftp.DEFAULT_RETRIES,
    mode: str = tftp.Mode.OCTET,
    progress: Progress | None = None,
) -> TransferReport:
    """Download ``remote`` from a TFTP ``server`` (``host[:port]``, port 69 by default).

    Args:
        local: a path (default: the last component of ``remote`` in the current directory)
            or a binary file object. A path is written under a temporary name and renamed
            only when the transfer completed: a failure leaves an existing file untouched.
        blksize: bytes per DATA block to ask for (8..65464, RFC 2348); the server may answer
            less, or ignore it (then 512).
        windowsize: blocks per ACK to ask for (RFC 7440); 1 is RFC 1350's lock-step.
        timeout: seconds before the first retransmission; it doubles on every further one
            (up to 8 times) and returns to ``timeout`` whenever the server answers.
        retries: retransmissions of one packet before giving up.
        mode: ``"octet"`` (bytes as they are) or ``"netascii"`` (CR LF line ends on the
            wire, LF here).
        progress: called with (bytes so far, total or None) a few times a second.

    Returns:
        A :class:`TransferReport`.

    Raises:
        PeerError: the server answered with an ERROR (``.code``, ``.text``);
            PeerAccessDenied for ERROR 2.
        TransferTimeout: the server stopped answering (nothing is left at ``local``).
        MalformedPacket: the server broke the protocol (an ERROR was sent to it).
        ConnectionRefused: nothing listens at the server's port (ICMP port unreachable).
        ResolutionError, AddressError, OSError (the local file).
    """
    mode = tftp.Mode(mode.lower())
    host, port = parse_server(server)
    asked = tftp.Options(blksize=blksize, windowsize=windowsize)
    family, destination = _resolve(host, port)
    target: AtomicFile | None = None
    if local is None or isinstance(local, str | os.PathLike):
        path = os.fspath(local) if local is not None else os.path.basename(remote.rstrip("/"))
        if not path:
            raise OSError(f"cannot name a local file after {remote!r}: give one")
        if os.path.isdir(path):
            raise OSError(f"cannot write {path}: it is a directory")
        try:
            target = AtomicFile(path)
        except OSError as exc:
            raise OSError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from exc
        sink: Any = target.file  # its write() straight: the per-block path
        local_name: str | None = path
    else:
        sink = local
        local_name = None
    decoder = tftp.NetasciiDecoder(sink.write) if mode == tftp.Mode.NETASCII else None
    machine = tftp.ClientRead(
        remote,
        decoder.write if decoder is not None else sink.write,
        options=asked,
        mode=mode,
        timeout=timeout,
        retries=retries,
    )
    try:
        channel = _open(family)
        channel.reserve(windowsize, blksize)
    except BaseException:
        if target is not None:
            target.discard()
        raise
    started = time.monotonic()
    try:
        peer = _cancellable(
            machine,
            channel,
            machine.start(started),
            destination,
            progress=None
            if progress is None
            else (lambda n, _t: progress(n, machine.options.tsize)),
        )
        seconds = time.monotonic() - started
        if decoder is not None:
            decoder.close()
        if target is not None:
            target.commit()
        lossy = machine.stats.retransmits > 0 or machine.stats.duplicates > 0
        if lossy and machine.options.windowsize == 1:
            dally(machine, channel, peer, CLIENT_DALLY)
    finally:
        channel.close()
        if target is not None:
            target.discard()
    return _report(
        "get", remote=remote, local=local_name, peer=peer, machine=machine, seconds=seconds,
        mode=mode,
    )  # fmt: skip


def put(
    server: str | tuple[str, int],
    local: str | os.PathLike[str] | IO[bytes],
    remote: str | None = None,
    *,
    blksize: int = tftp.DEFAULT_BLKSIZE,
    windowsize: int = 1,
    timeout: float = tftp.DEFAULT_TIMEOUT,
    retries: int = tftp.DEFAULT_RETRIES,
    mode: str = tftp.Mode.OCTET,
    progress: Progress | None = None,
) -> TransferReport:
    """Upload ``local`` (a path or a binary file object) to ``server`` as ``remote`` (default:
    the local file's last path component). Options, returns and errors as :func:`get`; in
    octet mode the file's size is sent as ``tsize`` (RFC 2349), so the server can refuse a
    file that does not fit before any data is sent.
    """
    mode = tftp.Mode(mode.lower())
    host, port = parse_server(server)
    family, destination = _resolve(host, port)
    close_file = False
    if isinstance(local, str | os.PathLike):
        path = os.fspath(local)
        try:
            source: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise OSError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from exc
        close_file = True
        local_name: str | None = path
        name = remote or os.path.basename(path)
    else:
        source = local
        local_name = None
        if remote is None:
            raise ValueError("put() of a file object needs remote=")
        name = remote
    try:
        size: int | None = None
        try:
            info = os.fstat(source.fileno())
            if stat.S_ISREG(info.st_mode):
                size = info.st_size - source.tell()
        except (OSError, ValueError, AttributeError):
            size = None
        if mode == tftp.Mode.NETASCII:
            size = None
        read = tftp.NetasciiEncoder(source.read).read if mode == tftp.Mode.NETASCII else source.read
        asked = tftp.Options(blksize=blksize, windowsize=windowsize, tsize=size)
        machine = tftp.ClientWrite(
            name, read, options=asked, mode=mode, timeout=timeout, retries=retries
        )
        channel = _open(family)
        started = time.monotonic()
        try:
            peer = _cancellable(
                machine,
                channel,
                machine.start(started),
                destination,
                progress=None if progress is None else (lambda n, _t: progress(n, size)),
            )
        except ConnectionRefused as exc:
            if not machine.awaiting_last_ack:
                raise
            # The server's transfer port is gone while only the last block's ACK is missing:
            # it ACKed that block and stopped waiting for a repeat (RFC 1350 section 6) before
            # our retransmission came (its ACK was lost), or it gave up on the transfer.
            raise ConnectionRefused(
                "the server ended the transfer before its ACK of the last block reached us "
                "(ICMP port unreachable): it has most likely received the whole file; check "
                "it there"
            ) from exc
        finally:
            channel.close()
        seconds = time.monotonic() - started
    finally:
        if close_file:
            source.close()
    return _report(
        "put", remote=name, local=local_name, peer=peer, machine=machine, seconds=seconds,
        mode=mode,
    )  # fmt: skip


#: What the peer is told when a transfer is interrupted (Ctrl-C): ERROR 0 with this text.
CANCELLED = "transfer cancelled"


def _cancellable(
    machine: tftp.ClientRead | tftp.ClientWrite,
    channel: Channel,
    first: list[bytes],
    destination: Any,
    progress: Progress | None,
) -> Any:
    """:func:`drive` a client; on Ctrl-C tell the server (ERROR 0 "transfer cancelled") so it
    stops sending, or drops its partial upload, at once instead of after its timeouts."""
    try:
        return drive(machine, channel, first, destination, locked=False, progress=progress)
    except KeyboardInterrupt as exc:
        if channel.peer is not None:  # the server answered: it has a transfer to end
            with contextlib.suppress(OSError):
                channel.sock.send(tftp.encode(tftp.Error(tftp.ErrorCode.NOT_DEFINED, CANCELLED)))
        raise tftp.TransferInterrupted(machine.stats.size) from exc


def _report(
    operation: str,
    *,
    remote: str,
    local: str | None,
    peer: Any,
    machine: tftp.ClientRead | tftp.ClientWrite,
    seconds: float,
    mode: str,
) -> TransferReport:
    options = machine.options
    return TransferReport(
        operation=operation,
        remote=remote,
        local=local,
        server=_format(peer),
        size=machine.stats.size,
        seconds=seconds,
        blocks=machine.stats.blocks,
        retransmits=machine.stats.retransmits,
        duplicates=machine.stats.duplicates,
        blksize=options.blksize,
        windowsize=options.windowsize,
        tsize=options.tsize,
        negotiated=machine.negotiated,
        mode=str(mode),
    )
