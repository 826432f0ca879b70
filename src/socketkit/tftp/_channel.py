"""The one place TFTP touches a socket: a datagram socket from :func:`socketkit.udp` and the
transfer loop that drives a :mod:`socketkit.proto.tftp` machine over it.

The loop is the hot path of a transfer (one datagram in, one or a window out, per block): it
uses the socket underneath the :class:`~socketkit.DatagramSocket` directly, receives with one
blocking ``recvfrom`` whose wait is the kernel's ``SO_RCVTIMEO`` (set again only when the
wait changes by more than a tenth), and sends with ``send`` once the socket is connected to
the peer's transfer ID.
"""

from __future__ import annotations

import errno
import io
import math
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Final

from .._accel import speedups
from .._errors import ConnectionRefused, SocketkitError, translate_os_error
from .._udp_batch import enable_gro, receive_many, send_many
from ..proto import tftp

__all__ = ["Channel", "Progress", "drive", "same_host"]

#: ``progress(bytes_so_far, total_or_None)``; called at most every :data:`PROGRESS_EVERY` s.
Progress = Callable[[int, "int | None"], None]
PROGRESS_EVERY = 0.25
#: Large enough for any DATA (4 + 65464 bytes) and for a request.
RECEIVE_SIZE = 65536
_TIMEVAL = struct.Struct("@ll")
_HEAD = struct.Struct("!HH")
#: linux/in.h and linux/in6.h (not exported by Python's socket module everywhere).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: The largest receive queue requested for a transfer (see Channel.reserve).
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
        peer_role: ``"server"`` (a client's channel) or ``"client"`` (a server's transfer):
            who the peer is, for the message of an ICMP port unreachable.
    """

    def __init__(
        self, sock: socket.socket, *, report_refused: bool = False, peer_role: str = "server"
    ) -> None:
        self.sock = sock
        self.peer_role = peer_role
        self.peer: Any = None
        self.buffer = bytearray(RECEIVE_SIZE)  # the lock-step loop's receive buffer
        self.closed = False
        self.gro = False
        self._wait = -1.0
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._poll_out = select.poll()
        self._poll_out.register(sock.fileno(), select.POLLOUT)
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
        its size plus about 1 KiB of bookkeeping there), up to 4 MiB; as root past
        ``net.core.rmem_max`` (``SO_RCVBUFFORCE``), else up to it. Only ever grown: a
        lock-step transfer keeps the kernel's default (as tftp-hpa does)."""
        want = min(MAX_RECEIVE_BUFFER, 2 * windowsize * (blksize + 1024))
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= want:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, want)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)

    def set_wait(self, wait: float) -> None:
        """``SO_RCVTIMEO``: how long one blocking receive waits."""
        self._wait = max(wait, 0.001)
        seconds = int(self._wait)
        usec = max(1, int((self._wait - seconds) * 1_000_000))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(seconds, usec))

    def recv(self, wait: float) -> tuple[bytes, Any] | None:
        """One datagram within ``wait`` seconds, or None when none came."""
        if not (0.9 * self._wait <= wait <= self._wait):
            self.set_wait(wait)
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

    def enable_batches(self) -> None:
        """A window receiver: GRO on, so a window sent with GSO arrives as one buffer (read
        through :meth:`recv_many` from now on)."""
        self.gro = enable_gro(self.sock)

    def recv_many(self, wait: float) -> list[tuple[bytes, Any]]:
        """Every datagram queued, after waiting up to ``wait`` seconds for the first."""
        try:
            datagrams = receive_many(self.sock, 64, RECEIVE_SIZE)
        except BlockingIOError:
            if not self._poll.poll(max(1, math.ceil(wait * 1000))):
                return []
            try:
                datagrams = receive_many(self.sock, 64, RECEIVE_SIZE)
            except BlockingIOError:
                return []
            except OSError as exc:
                raise self.error(exc, "receive") from exc
        except OSError as exc:
            raise self.error(exc, "receive") from exc
        if self.closed:
            return []
        return [(d.data, d.address) for d in datagrams if d.address is not None]

    def send_all(self, datagrams: list[bytes], address: Any) -> None:
        """Send ``datagrams`` in order: one ``sendmmsg`` (with GSO) for a window."""
        if len(datagrams) < 2:
            for datagram in datagrams:
                self.send(datagram, address)
            return
        sent = 0
        while sent < len(datagrams):
            try:
                sent += send_many(self.sock, datagrams[sent:], to=address)
            except BlockingIOError:
                self._poll_out.poll(1000)
            except OSError as exc:
                raise self.error(exc, "send") from exc

    def connect(self, peer: Any) -> None:
        """Fix the peer's transfer ID in the kernel: datagrams from anywhere else are dropped
        there (as tftp-hpa's sockets do), sends skip the per-datagram route lookup, and an
        ICMP port unreachable from the peer is reported (ConnectionRefused)."""
        try:
            self.sock.connect(peer)
        except OSError as exc:
            raise self.error(exc, "connect") from exc
        self.peer = peer

    def send(self, datagram: bytes, address: Any) -> None:
        try:
            if address == self.peer:
                self.sock.send(datagram)
            else:
                self.sock.sendto(datagram, address)
        except OSError as exc:
            raise self.error(exc, "send") from exc

    def error(self, exc: OSError, action: str) -> SocketkitError:
        if exc.errno == errno.ECONNREFUSED:
            if self.peer_role == "client":  # a server's transfer: its client is gone
                return ConnectionRefused(f"{action}: the client went away (ICMP port unreachable)")
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
    the destination's host, from any port, fixes the peer (RFC 1350 section 4), and the
    socket is connected to it: datagrams from other ports are dropped by the kernel.

    With a window (windowsize > 1) the datagrams of a window leave in one ``sendmmsg`` (GSO
    where the kernel has it) and a receiver reads everything queued with ``recvmmsg`` (GRO
    on), so a window costs a few system calls instead of one per block.

    ``finish`` runs when the last DATA was received, before its ACK goes out; a
    :class:`~socketkit.proto.tftp.TftpRefusal` it raises is answered with that ERROR instead.

    Raises:
        TransferTimeout, PeerError, MalformedPacket and TftpRefusal (after sending the ERROR),
        socket errors.
    """
    if locked:
        channel.connect(destination)
    for datagram in first:
        channel.send(datagram, destination)
    peer = destination if locked else None
    recv, send, clock = channel.recv, channel.send, time.monotonic
    receive, fast = machine.receive, machine.fast
    last_progress = clock()
    batched = False
    while not machine.done:
        if stop is not None and stop():
            raise tftp.TransferTimeout("the server is shutting down")
        now = clock()
        deadline = machine.deadline
        if deadline is None:
            break
        if now >= deadline:
            channel.send_all(machine.on_timeout(now), peer if peer is not None else destination)
            continue
        if not batched and peer is not None and machine.options.windowsize > 1:
            batched = True
            if isinstance(machine, tftp.ClientRead | tftp.ServerWrite):
                channel.enable_batches()
        if batched and channel.gro:
            arrived = channel.recv_many(deadline - now)
            now = clock()
        elif (
            peer is not None
            and machine.options.windowsize == 1
            and ((left := _lockstep(machine, channel, peer, progress, total)) is not None)
        ):
            if left is _EXPIRED or not left[0]:
                continue  # the timer ran out (handled above), or the last block went out
            arrived = [left]
            now = clock()
        else:
            got = recv(deadline - now)
            if got is not None and got[1] == peer:
                # the lock-step common case (the next DATA, the ACK of the block in flight)
                reply = fast(got[0], now)
                if reply is not None:
                    if reply:
                        send(reply, peer)
                    if progress is not None and now - last_progress >= PROGRESS_EVERY:
                        last_progress = now
                        progress(machine.stats.size, total)
                    continue
            arrived = [got] if got is not None else []
        if not arrived:
            if channel.closed:
                raise tftp.TransferTimeout("the transfer was stopped (the socket was closed)")
            continue
        out: list[bytes] = []
        for data, address in arrived:
            if peer is None:
                if not same_host(address, destination):
                    continue
                peer = address
                channel.connect(peer)
            elif address[1] != peer[1] or address[0] != peer[0]:
                error = tftp.Error(tftp.ErrorCode.UNKNOWN_TID, "unknown transfer ID")
                send(tftp.encode(error), address)
                continue
            reply = fast(data, now)
            if reply is not None:  # the next full block (or the ACK of the block in flight)
                if reply:
                    out.append(reply)
                continue
            try:
                replies = receive(data, now)
                if machine.done and finish is not None:
                    finish()  # before the last ACK: the peer's success means the file is there
            except (tftp.MalformedPacket, tftp.TftpRefusal) as exc:
                channel.send_all(out, peer)
                send(tftp.encode(tftp.Error(exc.code, str(exc))), peer)
                exc.answered = True  # the peer was told
                machine.failed, machine.done = True, False
                raise
            except OSError as exc:  # the local file: a full disk, an I/O error
                _tell_file_error(machine, channel, peer, exc)
                raise
            if replies:
                out += replies
            if machine.done:
                break
        if out:
            if len(out) == 1:
                send(out[0], peer)
            else:
                channel.send_all(out, peer)
        if progress is not None and now - last_progress >= PROGRESS_EVERY:
            last_progress = now
            progress(machine.stats.size, total)
    if progress is not None:
        progress(machine.stats.size, total)
    return peer


_EXPIRED: Final = object()
#: The tight lock-step loops report progress every this many blocks.
_PROGRESS_BLOCKS = 512
#: The lock-step loop in C (``tftp_lockstep`` in _speedups.c), or None: the Python loop in
#: :func:`_lockstep` runs (SOCKETKIT_PURE=1, no extension; the tests run both).
c_lockstep: Any = getattr(speedups, "tftp_lockstep", None)


def _lockstep(
    machine: tftp.ClientRead | tftp.ClientWrite | tftp.ServerRead | tftp.ServerWrite,
    channel: Channel,
    peer: Any,
    progress: Progress | None,
    total: int | None,
) -> Any:
    """Plain lock-step (windowsize 1) in a tight loop: one ``recvfrom`` (the kernel's
    ``SO_RCVTIMEO`` is the retransmission timer) and one ``send`` per block, nothing else
    per block but the file's read or write. Leaves on anything but the next DATA or the ACK
    of the block in flight, handing the state back to ``machine``.

    Returns:
        None when lock-step is not under way; ``_EXPIRED`` when the timer ran out; else the
        ``(datagram, address)`` that left the common case, for the general path (an empty
        datagram: the sender's last block went out, nothing to process).
    """
    begin = machine.lockstep_begin()
    if begin is None:
        return None
    run = _lockstep_py if c_lockstep is None else _lockstep_c
    try:
        return run(machine, channel, peer, progress, total, begin=begin)
    except _FileFailed as failed:  # the peer is told, as on the general path
        _tell_file_error(machine, channel, peer, failed.error)
        raise failed.error from None


class _FileFailed(Exception):
    """The local file's read or write failed inside a lock-step loop (``error``)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def _tell_file_error(
    machine: tftp.ClientRead | tftp.ClientWrite | tftp.ServerRead | tftp.ServerWrite,
    channel: Channel,
    peer: Any,
    exc: OSError,
) -> None:
    """The local file failed (a full disk, an I/O error): the peer gets an ERROR (3 for a
    full disk), and the machine is failed."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    code = tftp.ErrorCode.DISK_FULL if full else tftp.ErrorCode.NOT_DEFINED
    try:
        channel.send(tftp.encode(tftp.Error(code, (exc.strerror or str(exc)).lower())), peer)
    except SocketkitError:
        pass  # the file's error is the one to report
    machine.failed, machine.done = True, False


def _lockstep_py(
    machine: tftp.ClientRead | tftp.ClientWrite | tftp.ServerRead | tftp.ServerWrite,
    channel: Channel,
    peer: Any,
    progress: Progress | None,
    total: int | None,
    *,
    begin: int,
) -> Any:
    """:func:`_lockstep`'s loop in Python (the definition of what ``tftp_lockstep`` in
    _speedups.c does)."""
    sock, clock, pack = channel.sock, time.monotonic, _HEAD.pack
    # Connected to the peer (Channel.connect): the kernel drops other senders, so recv_into
    # needs no address, and a reused buffer saves an allocation per datagram.
    recv_into, send = sock.recv_into, sock.send
    buf = channel.buffer
    view = memoryview(buf)
    channel.set_wait(machine.base_timeout)
    blksize = machine.options.blksize
    size = 0
    count = 0
    left: Any = _EXPIRED
    if isinstance(machine, tftp.ClientRead | tftp.ServerWrite):
        block, write, full = begin, machine.sink, blksize + 4
        # A buffered file copies what it is given: it may have a view of our buffer. Any other
        # sink (netascii, a caller's object that may keep what it gets) gets bytes.
        views = isinstance(getattr(write, "__self__", None), io.BufferedWriter)
        acked_at = clock()
        try:
            while True:
                n = recv_into(buf)
                if (
                    n != full
                    or buf[1] != 3
                    or buf[0] != 0
                    or ((buf[2] << 8) | buf[3]) != block & 0xFFFF
                ):
                    left = (bytes(view[:n]), peer)
                    break
                # The ACK first: the peer's next block is on its way while the write runs.
                send(pack(4, block & 0xFFFF))
                acked_at = clock()
                try:
                    write(view[4:n] if views else bytes(view[4:n]))  # type: ignore[arg-type]
                except OSError as exc:
                    raise _FileFailed(exc) from exc
                size += blksize
                block += 1
                count += 1
                if progress is not None and count % _PROGRESS_BLOCKS == 0:
                    progress(machine.stats.size + size, total)
        except (BlockingIOError, TimeoutError):
            pass
        except OSError as exc:
            raise channel.error(exc, "receive") from exc
        finally:  # also on Ctrl-C: the machine knows what was received
            machine.lockstep_end(block - 1, size, acked_at)
    else:
        block, read = begin, machine.source
        packet = machine.window_packet
        sent_at = clock()
        try:
            while True:
                n = recv_into(buf)
                if (
                    n != 4
                    or buf[1] != 4
                    or buf[0] != 0
                    or ((buf[2] << 8) | buf[3]) != block & 0xFFFF
                ):
                    left = (bytes(view[:n]), peer)
                    break
                block += 1
                try:
                    chunk = read(blksize)
                except OSError as exc:
                    raise _FileFailed(exc) from exc
                packet = pack(3, block & 0xFFFF) + chunk
                send(packet)
                sent_at = clock()
                size += len(chunk)
                if len(chunk) < blksize:  # the last block: its ACK takes the general path
                    left = (b"", peer)
                    break
                count += 1
                if progress is not None and count % _PROGRESS_BLOCKS == 0:
                    progress(machine.stats.size + size, total)
        except (BlockingIOError, TimeoutError):
            pass
        except OSError as exc:
            raise channel.error(exc, "send") from exc
        finally:  # also on Ctrl-C: the machine knows what was sent
            machine.lockstep_end(block, size, packet, sent_at)
    if left is not _EXPIRED and not left[0] and channel.sock.fileno() < 0:
        channel.closed = True
        return _EXPIRED
    return left


def _lockstep_c(
    machine: tftp.ClientRead | tftp.ClientWrite | tftp.ServerRead | tftp.ServerWrite,
    channel: Channel,
    peer: Any,
    progress: Progress | None,
    total: int | None,
    *,
    begin: int,
) -> Any:
    """:func:`_lockstep` with its per-block loop in C (``tftp_lockstep``): the same steps,
    and the same hand-over to ``machine``."""
    channel.set_wait(machine.base_timeout)
    blksize = machine.options.blksize
    buf = channel.buffer
    limit = _PROGRESS_BLOCKS if progress is not None else 1 << 40
    receiving = isinstance(machine, tftp.ClientRead | tftp.ServerWrite)
    io_call: Any
    if receiving:
        io_call = machine.sink  # type: ignore[union-attr]
        views = isinstance(getattr(io_call, "__self__", None), io.BufferedWriter)
        action = "receive"
    else:
        io_call, views, action = machine.source, False, "send"  # type: ignore[union-attr]
    # [block, size, stamp, chunk, socket_failed], kept up to date by the C loop on every way
    # out; socket_failed says whether an OSError came from the socket (not the file).
    state: list[Any] = [begin, 0, time.monotonic(), None, False]
    try:
        while True:
            n = c_lockstep(channel.sock.fileno(), not receiving, buf, blksize, io_call, views,
                           limit, state)  # fmt: skip
            if n != -2:
                break
            if progress is not None:
                progress(machine.stats.size + state[1], total)
    except OSError as exc:
        if not state[4]:
            raise _FileFailed(exc) from exc
        raise channel.error(exc, action) from exc
    finally:  # also on Ctrl-C: the machine knows what was moved
        block, size, stamp, chunk, _ = state
        if isinstance(machine, tftp.ClientRead | tftp.ServerWrite):
            machine.lockstep_end(block - 1, size, stamp)
        else:
            packet = (
                machine.window_packet if chunk is None else _HEAD.pack(3, block & 0xFFFF) + chunk
            )
            machine.lockstep_end(block, size, packet, stamp)
    if n == -1:
        return _EXPIRED
    # -3: the last block went out (its ACK takes the general path); 0: shut down
    if n in {-3, 0} and channel.sock.fileno() < 0:
        channel.closed = True
        return _EXPIRED
    return (bytes(buf[: max(n, 0)]), peer)


def dally(
    machine: tftp.ClientRead | tftp.ServerWrite, channel: Channel, peer: Any, seconds: float
) -> None:
    """After the last ACK: answer a retransmitted last DATA (our ACK was lost) for a while.

    The transfer is already complete: a peer that has gone meanwhile (its transfer port
    answers ICMP port unreachable, e.g. to our ACK of a duplicated last DATA) ends the wait,
    never the transfer."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and not channel.closed:
        try:
            if channel.gro:
                arrived = channel.recv_many(left)
            else:
                got = channel.recv(left)
                arrived = [got] if got is not None else []
        except (SocketkitError, OSError):
            return
        for data, address in arrived:
            if address[0] != peer[0] or address[1] != peer[1]:
                continue
            try:
                out = machine.receive(data, time.monotonic())
            except tftp.TftpError:
                return
            try:
                for datagram in out:
                    channel.send(datagram, peer)
            except (SocketkitError, OSError):
                return
