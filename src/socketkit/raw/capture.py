"""Live capture: ``socketkit.capture()``, packets from an ``AF_PACKET`` ring, kernel-filtered.

    with socketkit.capture("lo", filter="tcp port 8080", count=10, timeout=5) as cap:
        for pkt in cap:
            print(pkt.ts_ns, len(pkt.data), pkt.orig_len)
    print(cap.stats())

The same object is an async iterator (``async for pkt in cap``). Filters use tcpdump syntax,
compiled by libpcap and attached with ``SO_ATTACH_FILTER``: filtered-out packets never reach
Python. On loopback the kernel filter also drops the outgoing copy of each packet, so every
packet is seen exactly once.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import IO, NamedTuple

from .._errors import SocketkitError
from . import bpf
from .ring import (
    DEFAULT_BLOCK_TIMEOUT_MS,
    DEFAULT_BUFFER_SIZE,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    TPACKET3_HDRLEN,
    Ring,
    open_ring,
)

__all__ = [
    "Capture",
    "CaptureStats",
    "CapturedPacket",
    "capture",
    "interface_list",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_LINUX_SLL2",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL2 = 276
DEFAULT_SNAPLEN = bpf.DEFAULT_SNAPLEN

_TP3 = struct.Struct("IIIIIIHH")  # next_offset sec nsec snaplen len status mac net
_SLL = struct.Struct("HHiHBB8s")  # family protocol(BE) ifindex hatype pkttype halen addr
_SLL2 = struct.Struct(">HHIHBB8s")
_REC_NS = struct.Struct("IIII")


class CapturedPacket(NamedTuple):
    """One captured packet.

    ``data`` starts with the link-layer header given by ``linktype`` (1 Ethernet, 276 Linux
    cooked SLL2 for ``any``) and holds at most the snap length; ``orig_len`` is the length on
    the wire; ``ifindex`` the interface it was seen on.
    """

    ts_ns: int
    data: bytes
    orig_len: int
    linktype: int
    ifindex: int


class CaptureStats(NamedTuple):
    """``captured``: packets delivered to you; ``dropped``: packets the kernel dropped because
    the ring was full (``PACKET_STATISTICS``)."""

    captured: int
    dropped: int


class Capture:
    """An open capture. Iterate it (sync or async); close it (idempotent) or use ``with``.

    Iteration ends after ``count`` packets or when ``timeout`` seconds have passed since the
    capture was opened (whichever first); without either it runs until closed or interrupted.
    """

    def __init__(
        self,
        interface: str = "any",
        *,
        filter: str | None = None,
        count: int | None = None,
        timeout: float | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        block_timeout_ms: int = DEFAULT_BLOCK_TIMEOUT_MS,
        direction: str = "inout",
    ) -> None:
        if direction not in bpf.DIRECTIONS:
            raise ValueError(f"direction must be 'in', 'out' or 'inout', not {direction!r}")
        if not 0 <= snaplen <= DEFAULT_SNAPLEN:
            raise ValueError(
                f"snaplen must be 0 to {DEFAULT_SNAPLEN} (0: the default), not {snaplen}"
            )
        snaplen = snaplen or DEFAULT_SNAPLEN
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        self.interface = interface
        self.filter = filter or None
        self.count = count
        self.timeout = timeout
        self.snaplen = snaplen
        self._ring: Ring | None = None
        self._pending: deque[CapturedPacket] = deque()
        self._captured = 0
        self._block_timeout_ms = block_timeout_ms
        # Cooked captures ("any", non-Ethernet) are SLL2 in files; the filter is compiled for
        # that and moved to the network header for the kernel (bpf.for_cooked_socket).
        self.linktype = LINKTYPE_ETHERNET
        program = None
        if self.filter is not None:
            cooked_guess = interface == "any" or not _is_ethernet(interface)
            self.linktype = LINKTYPE_LINUX_SLL2 if cooked_guess else LINKTYPE_ETHERNET
            program = bpf.compile_filter(self.filter, self.linktype, snaplen=snaplen)
        ring, in_kernel = open_ring(
            interface,
            program,
            snaplen=snaplen,
            buffer_size=buffer_size,
            block_timeout_ms=block_timeout_ms,
            direction=direction,
        )
        self._ring = ring
        self.linktype = LINKTYPE_LINUX_SLL2 if ring.cooked else LINKTYPE_ETHERNET
        self._user_filter = (
            None
            if in_kernel or self.filter is None
            else bpf.OfflineFilter(self.filter, self.linktype, snaplen=snaplen)
        )
        self._deadline = None if timeout is None else time.monotonic() + timeout

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop capturing and release the ring (idempotent). ``stats()`` stays available."""
        if self._ring is not None:
            self._ring.close()
            self._final_stats = CaptureStats(self._captured, self._ring.dropped_total)
            self._ring = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Capture:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def stats(self) -> CaptureStats:
        """Packets delivered so far and packets the kernel dropped (ring full)."""
        if self._ring is None:
            return getattr(self, "_final_stats", CaptureStats(self._captured, 0))
        _seen, dropped = self._ring.statistics()
        return CaptureStats(self._captured, dropped)

    def stop(self) -> None:
        """End the capture gracefully: iteration (or :meth:`write_pcap`) goes on only for the
        packets the kernel has already captured, including the block it is filling (it gets
        one block timeout to hand it over), then ends. Nothing captured is thrown away."""
        self._deadline = time.monotonic()

    @property
    def buffered(self) -> int:
        """Packets already taken from the ring and not yet delivered by iteration."""
        return len(self._pending)

    @property
    def done(self) -> bool:
        """True once ``count`` packets were delivered, the timeout passed, or it was closed."""
        if self._ring is None:
            return True
        if self.count is not None and self._captured >= self.count:
            return True
        return self._deadline is not None and time.monotonic() >= self._deadline

    # --- packets -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[CapturedPacket]:
        return self

    def __next__(self) -> CapturedPacket:
        while True:
            step = self._next_or_wait()
            if isinstance(step, CapturedPacket):
                return step
            if step is None:
                raise StopIteration
            assert self._ring is not None
            self._ring.wait(step)

    def __aiter__(self) -> AsyncIterator[CapturedPacket]:
        return self

    async def __anext__(self) -> CapturedPacket:
        loop = asyncio.get_running_loop()
        while True:
            step = self._next_or_wait()
            if isinstance(step, CapturedPacket):
                return step
            if step is None:
                raise StopAsyncIteration
            wait = step
            assert self._ring is not None
            ready: asyncio.Future[None] = loop.create_future()
            fd = self._ring.fileno()
            loop.add_reader(fd, _wake, ready)
            try:
                await asyncio.wait_for(ready, wait / 1000)
            except TimeoutError:
                pass
            finally:
                loop.remove_reader(fd)

    def _next_or_wait(self) -> CapturedPacket | int | None:
        """The next packet if one is ready; else how many ms to wait for the ring; None at
        the end (count reached, stopped, or past the deadline). Shared by both iterators."""
        while True:
            if self.count is not None and self._captured >= self.count:
                return None
            if self._pending:
                self._captured += 1
                return self._pending.popleft()
            if self._ring is None:
                return None
            if not self._fill():
                return self._wait_ms()

    def _wait_ms(self) -> int | None:
        """How long to wait for the next block; None when the deadline has passed and the last
        partly filled block had its chance to be handed over."""
        tick = max(1, self._block_timeout_ms) * 2
        if self._deadline is None:
            return 250  # wake up now and then: stop() may have been called by a signal
        left = self._deadline - time.monotonic()
        if left > 0:
            return max(1, min(1000, int(left * 1000) + 1))
        if left > -tick / 1000:  # grace: let the kernel retire the block in progress
            return tick
        return None

    def _fill(self) -> bool:
        """Move the packets of the next ready block into the pending queue; False if none."""
        ring = self._ring
        assert ring is not None
        base = ring.ready_block()
        if base is None:
            return False
        try:
            self._pending.extend(self._decode_block(ring, base))
        finally:
            ring.release(base)
        return True

    def _decode_block(self, ring: Ring, base: int) -> list[CapturedPacket]:
        mem = ring.mem
        num, first = struct.unpack_from("II", mem, base + 12)
        off = base + first
        out: list[CapturedPacket] = []
        append = out.append
        unpack = _TP3.unpack_from
        linktype = self.linktype
        cooked = ring.cooked
        keep = self._user_filter
        for _ in range(num):
            nxt, sec, nsec, snap, length, status, mac, net = unpack(mem, off)
            _fam, proto, ifindex, hatype, pkttype, halen, addr = _SLL.unpack_from(
                mem, off + TPACKET3_HDRLEN
            )
            if cooked:
                head = _SLL2.pack(
                    struct.unpack(">H", struct.pack("H", proto))[0], 0, ifindex, hatype,
                    pkttype, halen, addr,
                )  # fmt: skip
                data = head + mem[off + net : off + net + snap]
                length += len(head)
            else:
                data = mem[off + mac : off + mac + snap]
                if status & TP_STATUS_VLAN_VALID:
                    data, length = _insert_vlan(mem, off, status, data, length)
            if keep is None or keep.matches(data, length):
                append(CapturedPacket(sec * 1_000_000_000 + nsec, data, length, linktype, ifindex))
            off += nxt
        return out

    # --- straight to a file ------------------------------------------------------------------

    def write_pcap(self, fh: IO[bytes], *, nanosecond: bool = False) -> int:
        """Write every packet to ``fh`` as classic pcap records, without decoding them.

        The 24-byte file header must already be written (see :func:`pcap_file_header`). Whole
        ring blocks become one ``write`` each. Returns the number of packets written; stops
        like iteration does (count, timeout, close, KeyboardInterrupt propagates).
        """
        ring = self._ring
        if ring is None:
            return 0
        if ring.cooked or self._user_filter is not None:
            return self._write_slow(fh, nanosecond)
        mem = ring.mem
        view = ring.view
        unpack = _TP3.unpack_from
        pack_rec = _REC_NS.pack
        limit = self.count
        while True:
            if limit is not None and self._captured >= limit:
                break
            base = ring.ready_block()
            if base is None:
                wait = self._wait_ms()
                if wait is None:
                    break
                ring.wait(wait)
                if self._ring is None:
                    break
                continue
            try:
                num, first = struct.unpack_from("II", mem, base + 12)
                if limit is not None:
                    num = min(num, limit - self._captured)
                off = base + first
                chunks: list[bytes | memoryview] = []
                add = chunks.append
                for _ in range(num):
                    nxt, sec, nsec, snap, length, status, mac, _net = unpack(mem, off)
                    if status & TP_STATUS_VLAN_VALID:
                        data, vlen = _insert_vlan(
                            mem, off, status, mem[off + mac : off + mac + snap], length
                        )
                        add(pack_rec(sec, nsec if nanosecond else nsec // 1000, len(data), vlen))
                        add(data)
                    else:
                        if nanosecond:
                            add(
                                view[off + 4 : off + 20]
                            )  # sec, nsec, snaplen, len: a record header
                        else:
                            add(pack_rec(sec, nsec // 1000, snap, length))
                        add(view[off + mac : off + mac + snap])
                    off += nxt
                fh.write(b"".join(chunks))
                self._captured += num
            finally:
                ring.release(base)
        return self._captured

    def _write_slow(self, fh: IO[bytes], nanosecond: bool) -> int:
        pack_rec = _REC_NS.pack
        for pkt in self:
            sec, frac = divmod(pkt.ts_ns, 1_000_000_000)
            fh.write(
                pack_rec(sec, frac if nanosecond else frac // 1000, len(pkt.data), pkt.orig_len)
            )
            fh.write(pkt.data)
        return self._captured


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def pcap_file_header(linktype: int, snaplen: int, *, nanosecond: bool = False) -> bytes:
    """The 24-byte classic pcap file header (libpcap sf-pcap.c), host byte order, v2.4."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return struct.pack("IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def _insert_vlan(mem: object, off: int, status: int, data: bytes, length: int) -> tuple[bytes, int]:
    """Put back the 802.1Q tag the NIC/kernel stripped into ``tp_vlan_tci`` (as libpcap does)."""
    tci, tpid = struct.unpack_from("IH", mem, off + 32)  # type: ignore[arg-type]
    if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
        tpid = 0x8100
    tag = struct.pack(">HH", tpid, tci & 0xFFFF)
    return data[:12] + tag + data[12:], length + 4


def _is_ethernet(interface: str) -> bool:
    try:
        with open(f"/sys/class/net/{interface}/type") as fh:
            return int(fh.read().strip()) in (1, 772)
    except (OSError, ValueError):
        return True


def capture(
    interface: str = "any",
    *,
    filter: str | None = None,
    count: int | None = None,
    timeout: float | None = None,
    snaplen: int = DEFAULT_SNAPLEN,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    direction: str = "inout",
) -> Capture:
    """Open a live capture on ``interface`` (a name, or ``"any"`` for all interfaces).

    Args:
        filter: a tcpdump filter expression (``"tcp port 80"``), run in the kernel.
        count: stop after this many packets.
        timeout: stop this many seconds after opening (packets already in the ring that
            the kernel hands over within one block timeout are still delivered).
        snaplen: keep at most this many bytes of each packet (truncated in the kernel);
            0 to 262144, 0 meaning the default 262144 (as tcpdump's ``-s 0``).
        buffer_size: bytes of ring memory; when it is full the kernel drops and counts.
        direction: ``"in"`` packets this host received, ``"out"`` packets it sent,
            ``"inout"`` both (tcpdump ``-Q``), selected in the kernel.
    Returns:
        a :class:`Capture`: iterate it (``for``/``async for``), then read ``stats()``.
    Raises:
        PermissionDenied: without CAP_NET_RAW (the message says what to do).
        MissingDependency: a filter was given and libpcap is not installed.
        FilterError: the filter does not compile.
        ValueError: ``snaplen`` or ``count`` out of range, or an unknown ``direction``.
    """
    if not interface:
        raise SocketkitError("interface must be a name or 'any'")
    return Capture(
        interface,
        filter=filter,
        count=count,
        timeout=timeout,
        snaplen=snaplen,
        buffer_size=buffer_size,
        direction=direction,
    )


# --- -D: the interfaces, as libpcap lists them ----------------------------------------------------

_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40
_SIOCETHTOOL, _ETHTOOL_GLINK = 0x8946, 0x0A


def _link_state(name: str) -> bool | None:
    """The ethtool link state (ETHTOOL_GLINK), as libpcap asks it; None when the driver
    does not say."""
    import ctypes
    import fcntl
    import socket

    buf = ctypes.create_string_buffer(struct.pack("II", _ETHTOOL_GLINK, 0))
    request = struct.pack("16sP", name.encode()[:15], ctypes.addressof(buf))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request)
    except OSError:
        return None
    return bool(struct.unpack("II", buf.raw[:8])[1])


def interface_list(sysfs: str = "/sys/class/net") -> list[str]:
    """``tcpdump -D`` lines for the network interfaces (and ``any``): ``N.NAME [flags]``,
    ordered as libpcap orders them (running, up and connected first, loopback after the
    others, then by the number ending the name). libpcap's other capture sources
    (bluetooth-monitor, nflog, nfqueue, dbus) are not interfaces socketkit captures on and are
    left out."""
    import os

    entries: list[tuple[int, int, str]] = [
        (0x0FFFFFFF, -1, "any (Pseudo-device that captures on all interfaces) [Up, Running]")
    ]
    try:
        names = os.listdir(sysfs)
    except OSError:
        names = []
    for name in names:
        try:
            with open(os.path.join(sysfs, name, "flags")) as fh:
                flags = int(fh.read().strip(), 16)
            with open(os.path.join(sysfs, name, "ifindex")) as fh:
                ifindex = int(fh.read().strip())
            with open(os.path.join(sysfs, name, "operstate")) as fh:
                operstate = fh.read().strip()
        except (OSError, ValueError):
            continue
        if flags & _IFF_UP and operstate in ("up", "unknown"):  # dev_get_flags' IFF_RUNNING
            flags |= _IFF_RUNNING
        wireless = os.path.isdir(os.path.join(sysfs, name, "wireless"))
        digits = len(name) - len(name.rstrip("0123456789"))
        merit = int(name[-digits:]) + 1 if digits else 0
        words = []
        if flags & _IFF_UP:
            words.append("Up")
        else:
            merit |= 0x40000000
        if flags & _IFF_RUNNING:
            words.append("Running")
        else:
            merit |= 0x80000000
        if wireless:
            words.append("Wireless")
        if flags & _IFF_LOOPBACK:
            words.append("Loopback")
            merit |= 0x10000000
        else:
            link = _link_state(name)
            if link is not None:
                words.append("Connected" if link else "Disconnected")
                if not link and not wireless:
                    merit |= 0x20000000
        if not words or words[0] not in ("Up", "Running", "Wireless", "Loopback"):
            words.insert(0, "none")
        entries.append((merit, ifindex, f"{name} [{', '.join(words)}]"))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [f"{number}.{text}" for number, (_m, _i, text) in enumerate(entries, 1)]
