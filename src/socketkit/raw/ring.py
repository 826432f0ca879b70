"""A ``PACKET_MMAP`` ``TPACKET_V3`` receive ring on an ``AF_PACKET`` socket.

The kernel writes packets into blocks of a shared memory ring and hands over a whole block at
a time (packet(7), Documentation/networking/packet_mmap.rst), so Python pays one ``poll`` per
block instead of one ``recv`` per packet. This module owns the socket and the mapping; it
knows the kernel's structures (linux/if_packet.h) and nothing about file formats.

Layout (offsets in bytes, host byte order):

* ``tpacket_block_desc``: version u32 @0, offset_to_priv u32 @4, then ``tpacket_hdr_v1``:
  block_status u32 @8, num_pkts u32 @12, offset_to_first_pkt u32 @16, blk_len u32 @20, ...
* ``tpacket3_hdr``: tp_next_offset u32 @0, tp_sec @4, tp_nsec @8, tp_snaplen @12, tp_len @16,
  tp_status @20, tp_mac u16 @24, tp_net u16 @26, tp_vlan_tci u32 @32, tp_vlan_tpid u16 @36;
  48 bytes, followed by a ``sockaddr_ll`` (ifindex i32 @4, hatype u16 @8, pkttype u8 @10).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import select
import socket
import struct
from collections.abc import Sequence

from .._errors import PermissionDenied, SocketkitError, translate_os_error
from . import bpf

__all__ = ["Ring", "open_ring", "PERMISSION_HINT"]

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
TPACKET3_HDRLEN = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)); sockaddr_ll follows

#: One block: large enough for any 64 KiB packet (GSO on lo) plus headers; a power of two.
DEFAULT_BLOCK_SIZE = 1 << 20
#: Total ring: 32 MiB, ~0.5 s of 64-byte packets at 400 k/s before the kernel must drop.
DEFAULT_BUFFER_SIZE = 32 << 20
#: A block is handed over when full or after this many milliseconds (interactive latency).
DEFAULT_BLOCK_TIMEOUT_MS = 50

#: Root for the one command; never a capability on the system python3, which would give raw
#: sockets to every Python program on the host (the tutorial lists the safe ways).
PERMISSION_HINT = (
    "capturing needs CAP_NET_RAW: run as root (sudo socketkit sniff ...); other safe ways: "
    'socketkit help tutorial ("Privileges for raw sockets")'
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.bind.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
_libc.bind.restype = ctypes.c_int


class Ring:
    """The socket, its mapped ring, and the cursor over its blocks. Close is idempotent."""

    def __init__(
        self,
        sock: socket.socket,
        mem: mmap.mmap,
        block_size: int,
        block_nr: int,
        *,
        cooked: bool,
        hatype: int,
    ) -> None:
        self.sock = sock
        self.mem = mem
        self.view = memoryview(mem)
        self.block_size = block_size
        self.block_nr = block_nr
        self.cooked = cooked
        self.hatype = hatype
        self.index = 0
        self.received_total = 0
        self.dropped_total = 0
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
        self._closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready_block(self) -> int | None:
        """Offset of the next block if the kernel has handed it to us, else ``None``."""
        base = self.index * self.block_size
        status = struct.unpack_from("I", self.mem, base + 8)[0]
        return base if status & TP_STATUS_USER else None

    def release(self, base: int) -> None:
        """Give the block at ``base`` back to the kernel and move the cursor on."""
        struct.pack_into("I", self.mem, base + 8, TP_STATUS_KERNEL)
        self.index = (self.index + 1) % self.block_nr

    def wait(self, timeout_ms: int) -> bool:
        """Block until a block may be ready (or ``timeout_ms``); True if woken by the kernel."""
        try:
            return bool(self._poll.poll(timeout_ms))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return False

    def statistics(self) -> tuple[int, int]:
        """(packets seen by the socket, packets dropped) since open; reading resets the kernel's."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, _freeze = struct.unpack("III", raw)
        self.received_total += packets
        self.dropped_total += drops
        return self.received_total, self.dropped_total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.statistics()
        except OSError:
            pass
        self.view.release()
        self.mem.close()
        self.sock.close()


def _bind(sock: socket.socket, ifindex: int) -> None:
    # Python's AF_PACKET address form cannot say "ifindex 0" (all interfaces), so bind with a
    # raw sockaddr_ll. Binding with ETH_P_ALL is what starts reception: done last, after the
    # filter and ring exist, so no unfiltered packet ever lands in the ring.
    addr = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0,
                       b"")  # fmt: skip
    if _libc.bind(sock.fileno(), addr, len(addr)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bind: {errno.errorcode.get(code, code)}")


def _interface(name: str) -> tuple[int, int]:
    """(ifindex, hatype) of an interface; (0, 0) for ``any``."""
    if name == "any":
        return 0, 0
    try:
        ifindex = socket.if_nametoindex(name)
    except OSError as exc:
        raise SocketkitError(f"no such interface {name!r} (see 'ip link')") from exc
    try:
        with open(f"/sys/class/net/{name}/type") as fh:
            hatype = int(fh.read().strip())
    except (OSError, ValueError):
        hatype = ARPHRD_ETHER
    return ifindex, hatype


def open_ring(
    interface: str,
    program: Sequence[bpf.Instruction] | None,
    *,
    snaplen: int,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    block_size: int = DEFAULT_BLOCK_SIZE,
    block_timeout_ms: int = DEFAULT_BLOCK_TIMEOUT_MS,
    filter_expression: str | None = None,
    direction: str = "inout",
) -> tuple[Ring, bool]:
    """Open the capture socket and ring for ``interface`` (a name or ``any``).

    Ethernet and loopback interfaces are captured raw (LINKTYPE_ETHERNET); ``any`` and other
    link types cooked (``SOCK_DGRAM``, the caller synthesises LINKTYPE_LINUX_SLL2).
    ``program`` is compiled for that link type by the caller, or None for "keep all".
    ``direction`` (``in``, ``out``, ``inout``) keeps received and/or sent packets, in the
    kernel (:func:`.bpf.with_direction`).

    Returns:
        (ring, filtered_in_kernel): the second is False when the program could not run in the
        kernel (a cooked capture reading link-layer fields) and the caller must filter.
    Raises:
        PermissionDenied: no CAP_NET_RAW (the message says what to do).
        SocketkitError: unknown interface, or the kernel refused the ring.
    """
    ifindex, hatype = _interface(interface)
    cooked = hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK)
    kind = socket.SOCK_DGRAM if cooked else socket.SOCK_RAW
    try:
        sock = socket.socket(socket.AF_PACKET, kind, 0)
    except PermissionError as exc:
        raise PermissionDenied(PERMISSION_HINT) from exc
    except OSError as exc:
        raise translate_os_error(exc, "open a packet socket") from exc
    try:
        in_kernel = True
        kernel_prog: list[bpf.Instruction] = list(program or bpf.accept_all(snaplen))
        if cooked and program is not None:
            fixed = bpf.for_cooked_socket(program)
            if fixed is None:
                in_kernel = False
                kernel_prog = bpf.accept_all(snaplen)
            else:
                kernel_prog = fixed
        kernel_prog = bpf.with_direction(kernel_prog, direction)
        lo_index = _loopback_index()
        if lo_index is not None and ifindex in (0, lo_index):
            kernel_prog = bpf.with_loopback_dedup(kernel_prog, lo_index)
        try:
            bpf.attach(sock, kernel_prog)
        except OSError as exc:
            raise translate_os_error(exc, "attach the capture filter") from exc
        block_size = max(mmap.PAGESIZE, block_size)
        block_nr = max(2, buffer_size // block_size)
        frame_size = 2048  # only used by the kernel to sanity-check the request in V3
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = struct.pack(
                "7I", block_size, block_nr, frame_size, block_size * block_nr // frame_size,
                block_timeout_ms, 0, 0,
            )  # fmt: skip
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            mem = mmap.mmap(sock.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                            mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        except OSError as exc:
            raise translate_os_error(exc, "set up the capture ring") from exc
        try:
            _bind(sock, ifindex)
        except OSError as exc:
            mem.close()
            raise translate_os_error(exc, f"bind to {interface}") from exc
    except BaseException:
        sock.close()
        raise
    return Ring(sock, mem, block_size, block_nr, cooked=cooked, hatype=hatype), in_kernel


def _loopback_index() -> int | None:
    try:
        return socket.if_nametoindex("lo")
    except OSError:
        return None
