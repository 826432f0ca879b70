"""The one place TFTP touches a socket: a datagram socket from :func:`socketkit.udp` and the
transfer loop that drives a :mod:`socketkit.proto.tftp` machine over it.

The loop is the hot path of a transfer (one datagram in, one or a window out, per block): it
uses the socket underneath the :class:`~socketkit.DatagramSocket` directly, receives with one
blocking ``recvfrom`` whose wait is the kernel's ``SO_RCVTIMEO`` (set again only when the
wait changes by more than a tenth), and sends with ``sendto``.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from .._errors import ConnectionRefused, SocketkitError, translate_os_error
from ..proto import tftp

__all__ = ["Channel", "Progress", "drive", "same_host"]

#: ``progress(bytes_so_far, total_or_None)``; called at most every :data:`PROGRESS_EVERY` s.
Progress = Callable[[int, "int | None"], None]
PROGRESS_EVERY = 0.25
#: Large enough for any DATA (4 + 65464 bytes) and for a request.
RECEIVE_SIZE = 65536
_TIMEVAL = struct.Struct("@ll")
#: linux/in.h and linux/in6.h (not exported by Python's socket module everywhere).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: Receive queue sizes requested for a transfer (see Channel.reserve).
MIN_RECEIVE_BUFFER = 256 * 1024
MAX_RECEIVE_BUFFER = 4 * 1024 * 1024


def same_host(a: Any, b: Any) -> bool:
    return bool(a[0] == b[0])


class Channel:
    """A datagram socket as the transfer loop uses it (see the module docstring).

    Args:
        sock: a bound ``SOCK_DGRAM`` socket (the channel closes it).
        report_refused: ask the kernel for ICMP errors on this unconnected socket
            (``IP_RECVERR``, ip(7)), so a request to a port nobody listens on fails at once
            with :class:`ConnectionRefused` instead of after every retransmission.
    """

    def __init__(self, sock: socket.socket, *, report_refused: bool = False) -> None:
        self.sock = sock
        self.closed = False
        self._wait = -1.0
        sock.settimeout(None)
        if report_refused:
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                except OSError:  # an IPv6-only socket
                    pass

    def reserve(self, windowsize: int, blksize: int) -> None:
        """Room in the kernel's receive queue for two windows of DATA (each datagram costs
        its size plus about 1 KiB of bookkeeping there), from 256 KiB up to 4 MiB; as root
        past ``net.core.rmem_max`` (``SO_RCVBUFFORCE``), else up to it."""
        want = min(MAX_RECEIVE_BUFFER, max(MIN_RECEIVE_BUFFER, 2 * windowsize * (blksize + 1024)))
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= want:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, want)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)

    def recv(self, wait: float) -> tuple[bytes, Any] | None:
        """One datagram within ``wait`` seconds, or None when none came."""
        if not (0.9 * self._wait <= wait <= self._wait):
            self._wait = max(wait, 0.001)
            seconds = int(self._wait)
            usec = max(1, int((self._wait - seconds) * 1_000_000))
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(seconds, usec)
            )
        try:
            got = self.sock.recvfrom(RECEIVE_SIZE)
            if got[1] is None:  # shut down (close() from another thread)
                self.closed = True
                return None
            return got
        except (BlockingIOError, TimeoutError):
            return None
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return None
            raise self.error(exc, "receive") from exc

    def send(self, datagram: bytes, address: Any) -> None:
        try:
            self.sock.sendto(datagram, address)
        except OSError as exc:
            raise self.error(exc, "send") from exc

    def error(self, exc: OSError, action: str) -> SocketkitError:
        if exc.errno == errno.ECONNREFUSED:
            return ConnectionRefused(
                f"{action}: the peer refused (ICMP port unreachable): no TFTP server there?"
            )
        return translate_os_error(exc, action)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        except OSError:
            pass
        self.sock.close()


def drive(
    machine: tftp.ClientRead | tftp.ClientWrite | tftp.ServerRead | tftp.ServerWrite,
    channel: Channel,
    first: list[bytes],
    destination: Any,
    *,
    locked: bool,
    progress: Progress | None = None,
    total: int | None = None,
    stop: Callable[[], bool] | None = None,
    finish: Callable[[], None] | None = None,
) -> Any:
    """Run ``machine`` until it is done; returns the peer's address (its TID).

    ``first`` goes to ``destination``. A client is not ``locked`` yet: the first answer from
    the destination's host, from any port, fixes the peer (RFC 1350 section 4); a datagram
    from another port is answered with ERROR 5 and otherwise ignored.

    ``finish`` runs when the last DATA was received, before its ACK goes out; a
    :class:`~socketkit.proto.tftp.TftpRefusal` it raises is answered with that ERROR instead.

    Raises:
        TransferTimeout, PeerError, MalformedPacket and TftpRefusal (after sending the ERROR),
        socket errors.
    """
    for datagram in first:
        channel.send(datagram, destination)
    peer = destination if locked else None
    recv, send, clock = channel.recv, channel.send, time.monotonic
    last_progress = clock()
    while not machine.done:
        if stop is not None and stop():
            raise tftp.TransferTimeout("the server is shutting down")
        now = clock()
        deadline = machine.deadline
        if deadline is None:
            break
        if now >= deadline:
            for datagram in machine.on_timeout(now):
                send(datagram, peer if peer is not None else destination)
            continue
        got = recv(deadline - now)
        if got is None:
            if channel.closed:
                raise tftp.TransferTimeout("the transfer was stopped (the socket was closed)")
            continue
        data, address = got
        if peer is None:
            if not same_host(address, destination):
                continue
            peer = address
        elif address[1] != peer[1] or address[0] != peer[0]:
            send(
                tftp.encode(tftp.Error(tftp.ErrorCode.UNKNOWN_TID, "unknown transfer ID")), address
            )
            continue
        try:
            out = machine.receive(data, now)
            if finish is not None and machine.done:
                finish()  # before the last ACK: the peer's success means the file is there
        except (tftp.MalformedPacket, tftp.TftpRefusal) as exc:
            send(tftp.encode(tftp.Error(exc.code, str(exc))), peer)
            exc.answered = True  # the peer was told
            machine.failed, machine.done = True, False
            raise
        except OSError as exc:  # the local file: a full disk, an I/O error
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            code = tftp.ErrorCode.DISK_FULL if full else tftp.ErrorCode.NOT_DEFINED
            send(tftp.encode(tftp.Error(code, (exc.strerror or str(exc)).lower())), peer)
            machine.failed, machine.done = True, False
            raise
        for datagram in out:
            send(datagram, peer)
        if progress is not None and now - last_progress >= PROGRESS_EVERY:
            last_progress = now
            progress(machine.stats.size, total)
    if progress is not None:
        progress(machine.stats.size, total)
    return peer


def dally(
    machine: tftp.ClientRead | tftp.ServerWrite, channel: Channel, peer: Any, seconds: float
) -> None:
    """After the last ACK: answer a retransmitted last DATA (our ACK was lost) for a while."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and not channel.closed:
        got = channel.recv(left)
        if got is None:
            continue
        data, address = got
        if address[0] != peer[0] or address[1] != peer[1]:
            continue
        try:
            out = machine.receive(data, time.monotonic())
        except tftp.TftpError:
            return
        for datagram in out:
            channel.send(datagram, peer)
