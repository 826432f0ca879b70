"""Batched datagrams: many per system call, with GSO and GRO where the kernel has them.

One implementation of the batched paths for the library (``DatagramSocket.send_many`` /
``receive_many``) and for ``socketkit bench``:

* ``sendmmsg(2)``/``recvmmsg(2)`` (Linux 3.0): up to :data:`BATCH` datagrams per system call.
  Python 3.11 has neither call. ``send_many``/``receive_many`` use the C extension
  (``udp_send_many``/``udp_receive_many`` in ``_speedups.c``: no interpreter per datagram)
  and otherwise the same calls through ctypes, whose Python code here is the definition of
  what they do; ``MmsgBatch`` gives the bench fixed slots through ctypes.
* GSO (``UDP_SEGMENT``, Linux 4.18): one message carries a run of datagrams of one size (the
  last may be shorter) to one destination; the kernel cuts it into ordinary datagrams, so a
  receiver sees exactly what one ``send`` per datagram would have produced (udp(7)).
* GRO (``UDP_GRO``, Linux 5.0): the kernel hands the receiver a run of datagrams from one
  sender in one buffer, with the segment size in a ``UDP_GRO`` control message; ``receive_many``
  splits it back into the datagrams.

All three are detected at run time; without them the same functions fall back to one datagram
per system call (``HAVE_MMSG``, ``HAVE_GSO``, ``HAVE_GRO`` and ``_c`` say which paths are in
use, and the tests force each fallback through them; ``SOCKETKIT_PURE=1`` leaves out C).
None of these functions waits: a socket with nothing to send or read gives
``BlockingIOError``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import struct
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ._accel import speedups
from ._udp import Datagram, DropCounter

__all__ = [
    "BATCH",
    "GSO_REFUSED",
    "HAVE_GRO",
    "HAVE_GSO",
    "HAVE_MMSG",
    "MmsgBatch",
    "disable_gso",
    "enable_gro",
    "enable_gso",
    "gro_segment",
    "gso_segments",
    "receive_many",
    "send_many",
]

Bytes = bytes | bytearray | memoryview

#: Datagrams (messages) per sendmmsg/recvmmsg call: the kernel takes up to UIO_MAXIOV (1024);
#: 64 already makes the system call's own cost small next to the kernel's per-datagram work.
BATCH = 64
#: ``IPPROTO_UDP`` as a socket option level; ``UDP_SEGMENT``/``UDP_GRO`` from linux/udp.h.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
#: UDP_MAX_SEGMENTS in include/linux/udp.h: datagrams one GSO message may carry.
MAX_SEGMENTS = 64
#: Largest IPv4 UDP payload; a GSO message must fit in one (65535 - 20 - 8).
MAX_GSO_BYTES = 65507
#: A GRO buffer holds at most 64 KiB of payload (``udp_gro_receive``): the receive slot size
#: whenever GRO is on, so a coalesced run is never cut.
GRO_BUFFER = 65536
#: recvmmsg slots while GRO is on: each may carry up to 64 datagrams. Few per call keep the
#: slots and the new objects in cache: on loopback (1400 B) 4 runs per call took about
#: 0.5-1 us per datagram where 64 runs (4 MiB of slots, ~2900 datagrams) took 3 us.
GRO_SLOTS = 4
#: At most this many bytes of receive slots per thread (UDP_RECEIVE_SCRATCH in _speedups.c):
#: fewer messages per call when max_size is large.
RECEIVE_SCRATCH = 8 << 20
#: recvmmsg flag: take what is queued, never wait (MSG_DONTWAIT is used instead).
MSG_WAITFORONE = 0x10000
_NAME_SIZE = 128  # sizeof(struct sockaddr_storage)
_U16 = struct.Struct("=H")
_INT = struct.Struct("=i")
_U32 = struct.Struct("=I")
#: Control space per received message: a UDP_GRO int and an SO_RXQ_OVFL u32.
_CONTROL_SIZE = socket.CMSG_SPACE(4) * 2
_SEND_CONTROL = socket.CMSG_SPACE(2)


def _probe(option: int, value: int) -> bool:
    """The kernel takes ``setsockopt(SOL_UDP, option, value)`` (setting is what counts:
    ``getsockopt`` of UDP_GRO came to Linux later than the option itself, 5.0)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(SOL_UDP, option, value)
    except OSError:
        return False
    return True


#: The kernel has UDP_SEGMENT (GSO). Set to False to force one message per datagram.
HAVE_GSO: bool = _probe(UDP_SEGMENT, 0)
#: The kernel has UDP_GRO. When False, ``enable_gro`` refuses and nothing is coalesced.
HAVE_GRO: bool = _probe(UDP_GRO, 1)


# ---------------------------------------------------------------------------------------------
# ctypes: struct iovec, struct msghdr, struct mmsghdr (sys/socket.h)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint32)]


_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
_libc: Any = None


def load() -> Any:
    """libc with sendmmsg/recvmmsg, or None (not Linux, no ctypes, no symbols)."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
            lib.sendmmsg.restype = ctypes.c_int
            lib.recvmmsg.argtypes = [
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_void_p,
            ]
            lib.recvmmsg.restype = ctypes.c_int
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


#: sendmmsg/recvmmsg are reachable. Set to False to force one system call per datagram.
HAVE_MMSG: bool = load() is not None


def _errno_error() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))  # OSError(EAGAIN, ...) is a BlockingIOError


class MmsgBatch:
    """``slots`` message headers over one page-aligned buffer of ``slots * slot_size`` bytes:
    the bench's fixed-slot sendmmsg/recvmmsg (every slot one datagram, no addresses)."""

    def __init__(self, sock: socket.socket, slot_size: int, slots: int = BATCH) -> None:
        lib = load() if HAVE_MMSG else None
        if lib is None:
            raise OSError("sendmmsg/recvmmsg are not available")
        self.lib = lib
        self.fd = sock.fileno()
        self.slot_size = slot_size
        self.slots = slots
        self._map = mmap.mmap(-1, slot_size * slots)
        self.buffer = memoryview(self._map)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self._iov = (_IoVec * slots)()
        self._msgs = (_MMsgHdr * slots)()
        iov_base = ctypes.addressof(self._iov)
        for i in range(slots):
            self._iov[i].base = base + i * slot_size
            self._iov[i].len = slot_size
            self._msgs[i].hdr.iov = iov_base + i * ctypes.sizeof(_IoVec)
            self._msgs[i].hdr.iovlen = 1
        self._msgs_addr = ctypes.addressof(self._msgs)
        # msg_len of every header, as a strided view (struct mmsghdr is 64 bytes on LP64).
        self._lens = memoryview(self._msgs).cast("B").cast("I")
        self._len_start = _MMsgHdr.len.offset // 4
        self._len_step = _MMSG_SIZE // 4

    def set_length(self, length: int) -> None:
        """Send ``length`` bytes from every slot."""
        for i in range(self.slots):
            self._iov[i].len = length

    def send(self, count: int) -> int:
        """sendmmsg the first ``count`` slots; how many datagrams went (OSError on failure)."""
        n = int(self.lib.sendmmsg(self.fd, self._msgs_addr, count, 0))
        if n < 0:
            raise _errno_error()
        return n

    def receive(self) -> int:
        """recvmmsg into the slots: blocks for one datagram, then takes what is queued."""
        n = int(self.lib.recvmmsg(self.fd, self._msgs_addr, self.slots, MSG_WAITFORONE, None))
        if n < 0:
            raise _errno_error()
        return n

    def lengths(self, count: int) -> memoryview:
        """The received lengths of the first ``count`` slots."""
        start, step = self._len_start, self._len_step
        return self._lens[start : start + count * step : step]


# ---------------------------------------------------------------------------------------------
# GSO / GRO socket options


def gso_segments(length: int) -> int:
    """How many ``length``-byte datagrams one GSO send may carry."""
    return max(1, min(MAX_SEGMENTS, MAX_GSO_BYTES // max(1, length)))


def enable_gso(sock: socket.socket, segment_size: int) -> bool:
    """Set ``UDP_SEGMENT`` on ``sock``: from now on every ``send`` of more than
    ``segment_size`` bytes leaves as datagrams of ``segment_size`` bytes (the last may be
    shorter). False when the kernel or the socket lacks it, or when two segments would not fit
    in one message. ``send_many`` does not need it (it asks per message)."""
    if not HAVE_GSO or gso_segments(segment_size) < 2:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, segment_size)
    except OSError:
        return False
    return True


def disable_gso(sock: socket.socket) -> None:
    """Clear ``UDP_SEGMENT`` on ``sock`` (after the path refused a GSO send: one datagram per
    ``send`` again)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)


def enable_gro(sock: socket.socket) -> bool:
    """Set ``UDP_GRO`` on ``sock``; False when the kernel or the socket lacks it.

    With GRO on, one read may return a run of datagrams in one buffer: read such a socket only
    through :func:`receive_many` (which splits them again), never with a bare ``recv``."""
    if not HAVE_GRO:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    _state(sock).gro = True
    return True


def gro_segment(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The segment size of a GRO-coalesced read (its ``UDP_GRO`` control message), 0 when the
    read is one datagram."""
    for level, kind, value in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= _INT.size:
            return int(_INT.unpack_from(value)[0])
    return 0


# ---------------------------------------------------------------------------------------------
# Per-socket state


class _State:
    __slots__ = ("family", "gro", "gso_limit", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.family = int(sock.family)
        inet = self.family in (socket.AF_INET, socket.AF_INET6)
        udp = inet and sock.type == socket.SOCK_DGRAM and sock.proto in (0, SOL_UDP)
        #: GSO runs are made of segments shorter than this; 0: no GSO on this socket.
        self.gso_limit = MAX_GSO_BYTES + 1 if udp else 0
        self.gro = False
        if inet and HAVE_GRO:
            with contextlib.suppress(OSError):
                self.gro = bool(sock.getsockopt(SOL_UDP, UDP_GRO))
        #: An error a plain-path receive took from the socket after earlier datagrams of the
        #: same call were already read: raised by the next call (recvmmsg does the same).
        self.pending: OSError | None = None


_states: weakref.WeakKeyDictionary[socket.socket, _State] = weakref.WeakKeyDictionary()


def _state(sock: socket.socket) -> _State:
    st = _states.get(sock)
    if st is None:
        st = _states[sock] = _State(sock)
    return st


# ---------------------------------------------------------------------------------------------
# Sending


def _normalize(data: Bytes) -> Bytes:
    if type(data) is memoryview and (data.format != "B" or data.ndim != 1):
        return data.cast("B")
    return data


def _plan(
    items: Sequence[Bytes | tuple[Bytes, Any]], to: Any, gso_limit: int
) -> list[tuple[list[Bytes], int, Any, int]]:
    """Group ``items`` into messages: ``(buffers, segment size or 0, address, total bytes)``.

    Consecutive datagrams to one destination with one size below ``gso_limit`` (the last of a
    run may be shorter) share one GSO message, up to MAX_SEGMENTS and MAX_GSO_BYTES; an empty
    datagram is always a message of its own (a 0-byte segment would vanish). ``gso_limit``
    0: one message per datagram. (``udp_send_many`` in _speedups.c groups the same way.)"""
    messages: list[tuple[list[Bytes], int, Any, int]] = []
    run: list[Bytes] = []
    run_to: Any = None
    size = total = 0
    closed = True
    for item in items:
        if type(item) is tuple:
            data, dest = item
        else:
            data, dest = item, to  # type: ignore[assignment]
        data = _normalize(data)
        length = len(data)
        if (
            not closed
            and 0 < length <= size < gso_limit
            and total + length <= MAX_GSO_BYTES
            and len(run) < MAX_SEGMENTS
            and (dest is run_to or dest == run_to)
        ):
            run.append(data)
            total += length
            closed = length < size
            continue
        if run:
            messages.append((run, size if len(run) > 1 else 0, run_to, total))
        run, run_to, size, total = [data], dest, length, length
        closed = length == 0
    if run:
        messages.append((run, size if len(run) > 1 else 0, run_to, total))
    return messages


#: What the kernel answers a GSO message it cannot take with (``udp_send_skb``,
#: ``udp_v6_send_skb``): a segment over the path MTU (EMSGSIZE; EINVAL before Linux 6.x),
#: more than UDP_MAX_SEGMENTS or SO_NO_CHECK (EINVAL), a device without checksum offload or
#: an IPsec route (EIO), no GSO at all (ENOPROTOOPT, EOPNOTSUPP).
GSO_REFUSED = (errno.EMSGSIZE, errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP)


def _gso_refused(
    st: _State, exc: OSError, items: Sequence[Bytes | tuple[Bytes, Any]], to: Any, limit: int
) -> bool:
    """After ``exc`` on the first message of a batch planned with ``limit``: was that message a
    GSO run the path refused? If so, remember it (segments this long are sent plainly from now
    on; for anything but EMSGSIZE, no GSO at all on this socket) and say to send again."""
    if exc.errno not in GSO_REFUSED:
        return False
    segment = _plan(items[:MAX_SEGMENTS], to, limit)[0][1]
    if not segment:
        return False  # a plain datagram failed: the error is the datagram's own
    st.gso_limit = min(st.gso_limit, segment) if exc.errno == errno.EMSGSIZE else 0
    return True


def send_many(
    sock: socket.socket, items: Sequence[Bytes | tuple[Bytes, Any]], to: Any = None
) -> int:
    """Send ``items`` as separate datagrams, as many as the socket takes now, in order.

    Args:
        sock: a datagram socket (blocking or not; this never waits).
        items: each a bytes-like datagram (sent to ``to``, or to the connected peer when
            ``to`` is None) or a ``(data, address)`` pair; addresses are kernel socket
            addresses (``(host, port)``, ``(host, port, flow, scope)``, a Unix path).
        to: the destination of the items without their own.

    Returns:
        How many of the first items went (at least 1). Datagrams on the wire are exactly the
        items: GSO runs are cut back by the kernel.

    Raises:
        BlockingIOError: the socket's send queue is full and no datagram went.
        OSError: the first datagram failed (EMSGSIZE, ECONNREFUSED, ...), unchanged. An error
            after the first datagram ends the batch early and is raised by the next call when
            it persists (as with ``sendmmsg(2)``).
    """
    if not items:
        raise ValueError("send_many needs at least one datagram")
    st = _state(sock)
    while True:
        limit = st.gso_limit if HAVE_GSO else 0
        try:
            if _c is not None and HAVE_MMSG:
                n: int | None = _c.udp_send_many(sock.fileno(), st.family, items, to, limit)
                if n is not None:
                    return n
            messages = _plan(items, to, limit)
            if HAVE_MMSG:
                n = _send_mmsg(sock, st, messages)
                if n is not None:
                    return n
            return _send_plain(sock, messages)
        except OSError as exc:
            if not (limit and _gso_refused(st, exc, items, to, limit)):
                raise


def _send_plain(sock: socket.socket, messages: list[tuple[list[Bytes], int, Any, int]]) -> int:
    count = 0
    for buffers, segment, dest, _total in messages:
        try:
            if segment:
                control = [(SOL_UDP, UDP_SEGMENT, _U16.pack(segment))]
                if dest is None:
                    sock.sendmsg(buffers, control, socket.MSG_DONTWAIT)
                else:
                    sock.sendmsg(buffers, control, socket.MSG_DONTWAIT, dest)
            elif dest is None:
                sock.send(buffers[0], socket.MSG_DONTWAIT)
            else:
                sock.sendto(buffers[0], socket.MSG_DONTWAIT, dest)
        except OSError:
            if count:
                return count
            raise
        count += len(buffers)
    return count


class _Sender:
    """Per-thread sendmmsg scratch: headers, one iovec per message, addresses, controls and
    the payload bytes copied into one buffer."""

    def __init__(self) -> None:
        self.msgs = (_MMsgHdr * BATCH)()
        self.iov = (_IoVec * BATCH)()
        self.names = ctypes.create_string_buffer(BATCH * _NAME_SIZE)
        self.control = ctypes.create_string_buffer(BATCH * _SEND_CONTROL)
        self.msgs_addr = ctypes.addressof(self.msgs)
        iov_base = ctypes.addressof(self.iov)
        names_base = ctypes.addressof(self.names)
        self.control_base = ctypes.addressof(self.control)
        self.names_view = memoryview(self.names).cast("B")
        self.control_view = memoryview(self.control).cast("B")
        for i in range(BATCH):
            hdr = self.msgs[i].hdr
            hdr.iov = iov_base + i * ctypes.sizeof(_IoVec)
            hdr.iovlen = 1
            hdr.name = names_base + i * _NAME_SIZE
        self.data: Any = None
        self.data_base = 0
        self.data_view = memoryview(b"")
        self.names_cache: dict[Any, bytes | None] = {}

    def reserve(self, size: int) -> None:
        if len(self.data_view) < size:
            capacity = max(size, 1 << 16)
            self.data = ctypes.create_string_buffer(capacity)
            self.data_base = ctypes.addressof(self.data)
            self.data_view = memoryview(self.data).cast("B")


_local = threading.local()

#: Cached sockaddr encodings kept per thread; the cache is emptied when it reaches this size.
_NAME_CACHE = 256


def _sockaddr(family: int, dest: Any) -> bytes | None:
    """``dest`` as the kernel's sockaddr bytes, or None where only ``sendto`` can say what it
    means (a host name, a scoped IPv6 name, a bad value: it resolves or raises the usual way)."""
    try:
        if family == socket.AF_INET:
            host, port = dest
            packed = socket.inet_pton(socket.AF_INET, host)
            return struct.pack("=H", family) + struct.pack("!H", port) + packed + bytes(8)
        if family == socket.AF_INET6:
            host, port, *rest = dest
            if len(rest) > 2:
                return None
            flow = rest[0] if rest else 0
            scope = rest[1] if len(rest) > 1 else 0
            if not 0 <= flow <= 0xFFFFF:  # 20 bits: sendto raises OverflowError
                return None
            packed = socket.inet_pton(socket.AF_INET6, host)
            return (
                struct.pack("=H", family)
                + struct.pack("!HI", port, flow)
                + packed
                + struct.pack("=I", scope)
            )
        if family == socket.AF_UNIX:
            path = os.fsencode(dest) if isinstance(dest, str) else bytes(dest)
            if not path.startswith(b"\0"):
                path += b"\0"
            if len(path) > 108:
                return None
            return struct.pack("=H", family) + path
    except (TypeError, ValueError, OSError, struct.error):
        return None
    return None


def _send_mmsg(
    sock: socket.socket, st: _State, messages: list[tuple[list[Bytes], int, Any, int]]
) -> int | None:  # st: the socket's family
    """sendmmsg the first up-to-BATCH messages; None when some address needs ``sendto``."""
    sender: _Sender | None = getattr(_local, "sender", None)
    if sender is None:
        sender = _local.sender = _Sender()
    messages = messages[:BATCH]
    sender.reserve(sum(m[3] for m in messages))
    cache = sender.names_cache
    family = st.family
    data_view, data_base = sender.data_view, sender.data_base
    names_view, control_view = sender.names_view, sender.control_view
    msgs, iov = sender.msgs, sender.iov
    names_base = ctypes.addressof(sender.names)
    offset = 0
    for i, (buffers, segment, dest, total) in enumerate(messages):
        hdr = msgs[i].hdr
        if dest is None:
            hdr.namelen = 0
        else:
            key = dest if type(dest) is not list else tuple(dest)
            try:
                name = cache.get(key, b"")
            except TypeError:  # unhashable: encode every time
                name = _sockaddr(family, dest)
            else:
                if name == b"":
                    if len(cache) >= _NAME_CACHE:
                        cache.clear()
                    name = cache[key] = _sockaddr(family, dest)
            if name is None:
                return None
            start = i * _NAME_SIZE
            names_view[start : start + len(name)] = name
            hdr.name = names_base + start
            hdr.namelen = len(name)
        position = offset
        for data in buffers:
            end = position + len(data)
            data_view[position:end] = data
            position = end
        iov[i].base = data_base + offset
        iov[i].len = total
        offset = position
        if segment:
            start = i * _SEND_CONTROL
            socket_cmsg = struct.pack("@NiiH", socket.CMSG_LEN(2), SOL_UDP, UDP_SEGMENT, segment)
            control_view[start : start + len(socket_cmsg)] = socket_cmsg
            hdr.control = sender.control_base + start
            hdr.controllen = _SEND_CONTROL
        else:
            hdr.control = None
            hdr.controllen = 0
    lib = load()
    n = int(lib.sendmmsg(sock.fileno(), sender.msgs_addr, len(messages), socket.MSG_DONTWAIT))
    if n < 0:
        raise _errno_error()
    return sum(len(messages[i][0]) for i in range(n))


# ---------------------------------------------------------------------------------------------
# Receiving


def receive_many(
    sock: socket.socket,
    max_count: int,
    max_size: int,
    *,
    drops: DropCounter | None = None,
) -> list[Datagram]:
    """Read the datagrams queued on ``sock`` now: up to ``max_count`` kernel messages.

    Args:
        sock: a datagram socket (blocking or not; this never waits).
        max_count: how many messages to read at most. With GRO on (``enable_gro``) one
            message may carry a run of up to 64 datagrams, all returned: the list can then be
            longer than ``max_count``.
        max_size: the longest datagram kept; longer ones come back cut to it, ``truncated``.
        drops: the socket's SO_RXQ_OVFL counter, which fills in ``dropped_before`` (None
            there without it).

    Returns:
        At least one :class:`Datagram`, in arrival order, boundaries kept.

    Raises:
        BlockingIOError: nothing is queued.
        OSError: the socket's pending error (ECONNREFUSED after an ICMP port unreachable on
            a connected socket, ...) when it comes before any datagram.
    """
    if max_count < 1 or max_size < 0:
        raise ValueError("receive_many needs max_count >= 1 and max_size >= 0")
    st = _state(sock)
    if st.pending is not None:
        exc, st.pending = st.pending, None
        raise exc
    if HAVE_MMSG and st.family in _MMSG_FAMILIES:
        if _c is not None:
            out, gro = _c.udp_receive_many(sock.fileno(), max_count, max_size, st.gro, drops)
            if gro:
                st.gro = True  # coalesced: someone turned GRO on behind our back
            return out  # type: ignore[no-any-return]
        return _receive_mmsg(sock, st, max_count, max_size, drops)
    return _receive_plain(sock, st, max_count, max_size, drops)


def _receive_plain(
    sock: socket.socket,
    st: _State,
    max_count: int,
    max_size: int,
    drops: DropCounter | None,
) -> list[Datagram]:
    out: list[Datagram] = []
    recvmsg = sock.recvmsg
    for _ in range(max_count):
        gro = st.gro
        try:
            data, ancdata, flags, address = recvmsg(
                max(max_size, GRO_BUFFER) if gro else max_size,
                _CONTROL_SIZE,
                socket.MSG_DONTWAIT,
            )
        except BlockingIOError:
            if out:
                break
            raise
        except OSError as exc:
            if out:
                st.pending = exc
                break
            raise
        segment = gro_segment(ancdata)
        if segment:
            st.gro = True  # coalesced: someone turned GRO on behind our back
        dropped = drops.update(ancdata) if drops is not None else None
        truncated = bool(flags & socket.MSG_TRUNC)
        _split(out, data, segment, address, truncated=truncated, dropped=dropped, max_size=max_size)
    return out


_MMSG_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
_SIZE_T = "Q" if ctypes.sizeof(ctypes.c_size_t) == 8 else "I"
_CMSG_HEADER = socket.CMSG_LEN(0)
_CMSG = struct.Struct("@Nii")  # struct cmsghdr: cmsg_len (size_t), cmsg_level, cmsg_type
_V4 = struct.Struct("!H4s")
_V6 = struct.Struct("!HI16s")


class _Receiver:
    """Per-thread recvmmsg scratch: ``slots`` messages of ``slot_size`` bytes, each with room
    for a socket address and the control messages."""

    def __init__(self, slots: int, slot_size: int) -> None:
        self.slots, self.slot_size = slots, slot_size
        self.map = mmap.mmap(-1, slots * slot_size)  # pages are only touched when written
        self.view = memoryview(self.map)
        self.names = ctypes.create_string_buffer(slots * _NAME_SIZE)
        self.control = ctypes.create_string_buffer(slots * _CONTROL_SIZE)
        self.names_view = memoryview(self.names).cast("B")
        self.control_view = memoryview(self.control).cast("B")
        self.iov = (_IoVec * slots)()
        self.msgs = (_MMsgHdr * slots)()
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        iov_base = ctypes.addressof(self.iov)
        names_base = ctypes.addressof(self.names)
        control_base = ctypes.addressof(self.control)
        for i in range(slots):
            self.iov[i].base = base + i * slot_size
            self.iov[i].len = slot_size
            hdr = self.msgs[i].hdr
            hdr.iov = iov_base + i * ctypes.sizeof(_IoVec)
            hdr.iovlen = 1
            hdr.name = names_base + i * _NAME_SIZE
            hdr.namelen = _NAME_SIZE
            hdr.control = control_base + i * _CONTROL_SIZE
            hdr.controllen = _CONTROL_SIZE
        self.msgs_addr = ctypes.addressof(self.msgs)
        #: The headers as the kernel must find them: copied back in before every call.
        self.template = bytes(memoryview(self.msgs).cast("B"))
        raw = memoryview(self.msgs).cast("B")
        self.u32 = raw.cast("I")
        self.words = raw.cast("Q") if _SIZE_T == "Q" else raw.cast("I")
        self.step32 = _MMSG_SIZE // 4
        self.step_words = _MMSG_SIZE // self.words.itemsize
        self.len_at = _MMsgHdr.len.offset // 4
        self.flags_at = (_MMsgHdr.hdr.offset + _MsgHdr.flags.offset) // 4
        self.namelen_at = (_MMsgHdr.hdr.offset + _MsgHdr.namelen.offset) // 4
        self.controllen_at = (_MMsgHdr.hdr.offset + _MsgHdr.controllen.offset) // (
            self.words.itemsize
        )
        self.addresses: dict[bytes, Any] = {}

    def receive(self, fd: int, count: int) -> int:
        ctypes.memmove(self.msgs_addr, self.template, count * _MMSG_SIZE)
        n = int(load().recvmmsg(fd, self.msgs_addr, count, socket.MSG_DONTWAIT, None))
        if n < 0:
            raise _errno_error()
        return n


def _decode_address(raw: bytes) -> Any:
    """A kernel sockaddr as Python's socket module gives it (``recvfrom``)."""
    if len(raw) < 2:
        return None
    family = _U16.unpack_from(raw)[0]
    if family == socket.AF_INET:
        port, packed = _V4.unpack_from(raw, 2)
        return (socket.inet_ntop(socket.AF_INET, packed), port)
    if family == socket.AF_INET6:
        port, flow, packed = _V6.unpack_from(raw, 2)
        scope = _U32.unpack_from(raw, 24)[0]
        # The scope stays in scope_id only, as recvfrom gives it since Python 3.7 (no "%eth0").
        return (socket.inet_ntop(socket.AF_INET6, packed), port, flow, scope)
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return path
        return os.fsdecode(path.split(b"\0", 1)[0])
    return raw


def _ancillary(control: memoryview) -> list[tuple[int, int, bytes]]:
    """The control messages of one received message, as ``recvmsg`` lists them."""
    out = []
    offset, end = 0, len(control)
    while offset + _CMSG.size <= end:
        length, level, kind = _CMSG.unpack_from(control, offset)
        if length < _CMSG_HEADER or offset + length > end:
            break
        out.append((level, kind, bytes(control[offset + _CMSG_HEADER : offset + length])))
        offset += socket.CMSG_SPACE(length - _CMSG_HEADER)
    return out


def _receive_mmsg(
    sock: socket.socket,
    st: _State,
    max_count: int,
    max_size: int,
    drops: DropCounter | None,
) -> list[Datagram]:
    gro = st.gro
    slot = max(max_size, GRO_BUFFER) if gro else max(max_size, 1)
    slots = max(1, min(GRO_SLOTS if gro else BATCH, RECEIVE_SCRATCH // slot))
    count = min(max_count, slots)
    rx: _Receiver | None = getattr(_local, "receiver", None)
    if rx is None or rx.slot_size != slot or rx.slots < count:
        rx = _local.receiver = _Receiver(slots, slot)
    n = rx.receive(sock.fileno(), count)
    out: list[Datagram] = []
    u32, words = rx.u32, rx.words
    s32, sw = rx.step32, rx.step_words
    lengths = u32[rx.len_at : rx.len_at + n * s32 : s32].tolist()
    flags = u32[rx.flags_at : rx.flags_at + n * s32 : s32].tolist()
    namelens = u32[rx.namelen_at : rx.namelen_at + n * s32 : s32].tolist()
    controllens = words[rx.controllen_at : rx.controllen_at + n * sw : sw].tolist()
    view, names, control = rx.view, rx.names_view, rx.control_view
    addresses = rx.addresses
    for i in range(n):
        start = i * slot
        data = bytes(view[start : start + lengths[i]])
        where = i * _NAME_SIZE
        key = bytes(names[where : where + namelens[i]])
        address = addresses.get(key, addresses)
        if address is addresses:
            if len(addresses) >= _NAME_CACHE:
                addresses.clear()
            address = addresses[key] = _decode_address(key)
        segment = 0
        ancdata: list[tuple[int, int, bytes]] = []
        if controllens[i]:
            where = i * _CONTROL_SIZE
            ancdata = _ancillary(control[where : where + controllens[i]])
            segment = gro_segment(ancdata)
            if segment:
                st.gro = True  # coalesced: someone turned GRO on behind our back
        dropped = drops.update(ancdata) if drops is not None else None
        _split(
            out,
            data,
            segment,
            address,
            truncated=bool(flags[i] & socket.MSG_TRUNC),
            dropped=dropped,
            max_size=max_size,
        )
    return out


def _split(
    out: list[Datagram],
    data: bytes,
    segment: int,
    address: Any,
    *,
    truncated: bool,
    dropped: int | None,
    max_size: int,
) -> None:
    """Append the datagram(s) of one kernel message to ``out``."""
    length = len(data)
    if segment <= 0 or segment >= length:
        if length > max_size:
            out.append(Datagram(data[:max_size], address, True, dropped))
        else:
            out.append(Datagram(data, address, truncated, dropped))
        return
    cut = segment > max_size
    keep = max_size if cut else segment
    append = out.append
    for offset in range(0, length, segment):
        last = offset + segment >= length
        part_cut = cut and (length - offset > max_size)
        append(
            Datagram(
                data[offset : offset + keep],
                address,
                part_cut or (last and truncated),
                dropped if offset == 0 else (0 if dropped is not None else None),
            )
        )


def _speedups() -> Any:
    """The C side of this module (``_speedups.c``), configured; None under SOCKETKIT_PURE=1 or
    where the extension did not build. Set ``_c`` to None to force the ctypes path."""
    if speedups is None or not hasattr(speedups, "udp_send_many"):
        return None
    speedups.configure_udp(Datagram, _decode_address)
    return speedups


_c: Any = _speedups()
