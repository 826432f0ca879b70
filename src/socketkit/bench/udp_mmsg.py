"""Batched plain UDP through ``sendmmsg(2)``/``recvmmsg(2)`` (Linux), via ctypes.

Python 3.11 has neither call. Without GSO, one system call per
datagram costs the sender about as much Python and syscall entry as the kernel's own UDP
work; a batch of up to 64 datagrams per call leaves only the kernel's per-datagram work. The
datagrams on the wire are ordinary ones (no GSO), so any receiver - iperf3 included - sees
exactly what ``send`` would have produced.

Every datagram of a batch sits in a fixed slot of one page-aligned buffer; the iovecs and
message headers are built once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import socket
from typing import Any

__all__ = ["MmsgBatch", "load"]

#: Datagrams per sendmmsg/recvmmsg call (the kernel's UIO_MAXIOV is 1024; 64 is plenty).
BATCH = 64
#: recvmmsg: block for the first datagram only, then take what is queued.
MSG_WAITFORONE = 0x10000


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint32)]


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


class MmsgBatch:
    """``slots`` message headers over one aligned buffer of ``slots * slot_size`` bytes."""

    def __init__(self, sock: socket.socket, slot_size: int, slots: int = BATCH) -> None:
        lib = load()
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
        for i in range(slots):
            self._iov[i].base = base + i * slot_size
            self._iov[i].len = slot_size
            self._msgs[i].hdr.iov = ctypes.pointer(self._iov[i])
            self._msgs[i].hdr.iovlen = 1
        self._msgs_addr = ctypes.addressof(self._msgs)
        # msg_len of every header, as a strided view (struct mmsghdr is 64 bytes on LP64).
        size = ctypes.sizeof(_MMsgHdr)
        offset = _MMsgHdr.len.offset
        self._lens = memoryview(self._msgs).cast("B").cast("I")
        self._len_start, self._len_step = offset // 4, size // 4

    def set_length(self, length: int) -> None:
        """Send ``length`` bytes from every slot."""
        for i in range(self.slots):
            self._iov[i].len = length

    def send(self, count: int) -> int:
        """sendmmsg the first ``count`` slots; how many datagrams went (OSError on failure)."""
        n = int(self.lib.sendmmsg(self.fd, self._msgs_addr, count, 0))
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return n

    def receive(self) -> int:
        """recvmmsg into the slots: blocks for one datagram, then takes what is queued."""
        n = int(self.lib.recvmmsg(self.fd, self._msgs_addr, self.slots, MSG_WAITFORONE, None))
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return n

    def lengths(self, count: int) -> memoryview:
        """The received lengths of the first ``count`` slots."""
        start, step = self._len_start, self._len_step
        return self._lens[start : start + count * step : step]
