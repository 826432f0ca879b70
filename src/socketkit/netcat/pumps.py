"""One direction of a relay: move bytes from a source descriptor to a destination.

Three ways, fastest first, chosen by the relay:

* :class:`SplicePump` — ``splice(2)`` source -> private pipe -> destination: the bytes never
  enter Python (pipes, TCP/Unix sockets, regular files, ``/dev/null``).
* :class:`MmapPump` — ``send(2)`` from a read-only memory map of a regular file: the kernel
  copies page-cache pages straight into the socket (one copy, no page references).
* :class:`SendfilePump` — ``sendfile(2)`` from a regular file into a socket (small files).
* :class:`CopyPump` — read into one reused page-aligned buffer, write from it (TLS, UDP,
  terminals, CRLF translation, hex dump/session log). No allocation per chunk unless a
  transform is on.

Every pump moves bytes until the kernel would block, then says what it waits for in
:attr:`Pump.want` (``(fd, POLLIN)`` or ``(fd, POLLOUT)``). A pump reports ``eof`` only once
the source ended *and* every byte read was written.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
from collections.abc import Callable

from .._errors import SocketkitError, translate_os_error
from .conn import Conn
from .endpoints import aligned_buffer, grow_pipe

__all__ = ["CopyPump", "MmapPump", "Pump", "SendfilePump", "SpliceUnsupported", "SplicePump"]

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
#: Bytes per splice/sendfile call: a whole (grown) pipe, so Python runs once per MiB.
CHUNK = 1 << 20
#: Copy-path buffer: 256 KiB, page-aligned (docs/design.md, measured trap 1).
COPY_BUFFER = 256 * 1024
#: Bytes one pump may move before the relay looks at the other direction again (fairness).
STEP_BUDGET = 16 << 20
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class SpliceUnsupported(Exception):
    """splice/sendfile cannot be used on these descriptors (EINVAL before any byte was
    delivered). ``leftover`` holds bytes already taken from the source (they must be written
    first by whatever replaces the pump)."""

    def __init__(self, reason: str, leftover: bytes = b"") -> None:
        super().__init__(reason)
        self.leftover = leftover


class Pump:
    """Base: ``want``, ``count`` (bytes delivered), ``eof``, ``step()``, ``ready()``."""

    def __init__(
        self, name: str, src_fd: int, dst_fd: int, src: Conn | None, dst: Conn | None
    ) -> None:
        self.name = name
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.src_conn = src
        self.dst_conn = dst
        self.count = 0
        self.eof = False
        self.want: tuple[int, int] | None = (src_fd, POLLIN)

    def step(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def ready(self) -> bool:
        """True if the pump can make progress that poll would not announce (TLS buffers)."""
        return False

    def close(self) -> None:
        """Release private resources (pipes). Idempotent."""

    # -- errors: the socket side becomes a socketkit error; stdout's EPIPE stays BrokenPipe --
    def _src_error(self, exc: OSError) -> BaseException:
        if self.src_conn is not None:
            return translate_os_error(exc, f"receive from {self.src_conn.peer}")
        return OSError(f"cannot read {self.name}: {exc.strerror}")

    def _dst_error(self, exc: OSError) -> BaseException:
        if self.dst_conn is not None:
            return translate_os_error(exc, f"send to {self.dst_conn.peer}")
        if isinstance(exc, BrokenPipeError):
            return exc
        return OSError(f"cannot write to {self.name}: {exc.strerror}")


class SplicePump(Pump):
    """src -> private pipe -> dst with ``splice(2)``; the bytes stay in the kernel."""

    def __init__(
        self,
        name: str,
        src_fd: int,
        dst_fd: int,
        src: Conn | None = None,
        dst: Conn | None = None,
    ) -> None:
        super().__init__(name, src_fd, dst_fd, src, dst)
        self._r, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._cap = min(grow_pipe(self._w), CHUNK)
        self._in_pipe = 0

    def step(self) -> int:
        moved = 0
        while moved < STEP_BUDGET:
            if self._in_pipe:
                try:
                    n = os.splice(self._r, self.dst_fd, self._in_pipe, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    self.want = (self.dst_fd, POLLOUT)
                    return moved
                except OSError as exc:
                    if exc.errno == errno.EINVAL and self.count == 0:
                        raise SpliceUnsupported(str(exc), self._take_leftover()) from exc
                    raise self._dst_error(exc) from exc
                self._in_pipe -= n
                self.count += n
                moved += n
                continue
            try:
                n = os.splice(self.src_fd, self._w, self._cap, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                self.want = (self.src_fd, POLLIN)
                return moved
            except OSError as exc:
                if exc.errno == errno.EINVAL and self.count == 0:
                    raise SpliceUnsupported(str(exc)) from exc
                raise self._src_error(exc) from exc
            if n == 0:
                self.eof = True
                self.want = None
                return moved
            self._in_pipe = n
        return moved

    def _take_leftover(self) -> bytes:
        """The bytes sitting in the private pipe (at most one pipe's worth)."""
        chunks = []
        while self._in_pipe > 0:
            chunk = os.read(self._r, self._in_pipe)
            if not chunk:
                break
            chunks.append(chunk)
            self._in_pipe -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._r = self._w = -1


class SendfilePump(Pump):
    """A regular file (at its current offset) into a socket with ``sendfile(2)``."""

    def step(self) -> int:
        moved = 0
        while moved < STEP_BUDGET:
            try:
                n = os.sendfile(self.dst_fd, self.src_fd, None, CHUNK)
            except BlockingIOError:
                self.want = (self.dst_fd, POLLOUT)
                return moved
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOSYS) and self.count == 0:
                    raise SpliceUnsupported(str(exc)) from exc
                raise self._dst_error(exc) from exc
            if n == 0:
                self.eof = True
                self.want = None
                return moved
            self.count += n
            moved += n
        return moved


class MmapPump(Pump):
    """A regular file (from its current offset) into a socket: ``send(2)`` from a read-only
    memory map, one window at a time.

    Why not ``sendfile``: on loopback it runs at about half this speed here (it moves 4 KiB
    page references through the kernel's 16-slot internal pipe, and the receiver pays for the
    small fragments); a send from the mapping is one copy into large socket-buffer pages
    (``benchmarks/bench_netcat.py``; ``docs/design.md``).

    Safety: Python never reads the mapping, only the kernel does (inside ``send``). If the
    file shrinks while it is mapped, the kernel's copy fails with ``EFAULT`` instead of the
    process getting ``SIGBUS``; that is reported as a one-line local error. A file that grows
    is followed: each new window is sized from a fresh ``fstat``. The shared file offset is
    left where the bytes sent end, as ``read``/``sendfile`` would leave it.
    """

    #: Bytes mapped at a time (populated up front, so the sends do not fault page by page).
    WINDOW = 32 << 20

    def __init__(
        self,
        name: str,
        src_fd: int,
        dst_fd: int,
        src: Conn | None = None,
        dst: Conn | None = None,
    ) -> None:
        super().__init__(name, src_fd, dst_fd, src, dst)
        self.want = (dst_fd, POLLOUT)
        self._pos = os.lseek(src_fd, 0, os.SEEK_CUR)
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._base = 0  # file offset of the window's first byte
        self._end = 0  # file offset just past the window

    def step(self) -> int:
        moved = 0
        write = os.write
        dst = self.dst_fd
        while moved < STEP_BUDGET:
            if self._pos >= self._end and not self._next_window():
                self.eof = True
                self.want = None
                return moved
            assert self._view is not None
            start = self._pos - self._base
            try:
                n = write(dst, self._view[start:])
            except BlockingIOError:
                self.want = (dst, POLLOUT)
                return moved
            except OSError as exc:
                if exc.errno == errno.EFAULT:
                    raise OSError(
                        f"cannot read {self.name}: the file shrank while it was being sent "
                        f"({self.count} bytes sent)"
                    ) from exc
                raise self._dst_error(exc) from exc
            self._pos += n
            self.count += n
            moved += n
        return moved

    def _next_window(self) -> bool:
        """Map the next window; False at the end of the file."""
        self._unmap()
        os.lseek(self.src_fd, self._pos, os.SEEK_SET)
        try:
            size = os.fstat(self.src_fd).st_size
        except OSError as exc:
            raise self._src_error(exc) from exc
        if self._pos >= size:
            return False
        base = self._pos - self._pos % mmap.ALLOCATIONGRANULARITY
        length = min(self.WINDOW, size - base)
        try:
            self._map = mmap.mmap(
                self.src_fd,
                length,
                flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                prot=mmap.PROT_READ,
                offset=base,
            )
        except OSError as exc:
            if self.count == 0:  # a file system without mmap: sendfile or copy instead
                raise SpliceUnsupported(str(exc)) from exc
            raise self._src_error(exc) from exc
        self._view = memoryview(self._map)
        self._base, self._end = base, base + length
        return True

    def _unmap(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            self._map.close()
            self._map = None

    def close(self) -> None:
        if self._map is not None:
            self._unmap()
            try:
                os.lseek(self.src_fd, self._pos, os.SEEK_SET)
            except OSError:
                pass


Reader = Callable[[memoryview], int]
Writer = Callable[[memoryview], int]


class CopyPump(Pump):
    """Read into a reused buffer, write it out.

    Args:
        read/write: ``recv_into``-style and ``send``-style callables (BlockingIOError = wait).
        src_blocking: the source is a blocking descriptor (a terminal or a pipe we must not
            make non-blocking): read once per poll wake-up, never twice.
        zero_is_eof: ``False`` for datagram sources, where an empty datagram is not an EOF.
        whole_writes: datagram destinations: a chunk is sent in one call or not at all.
        transform: bytes -> bytes applied after reading (``-C``).
        observe: called with the bytes as they will be written (hex dump, session log).
        size: buffer size (a datagram source reads at most one datagram per call).
        initial: bytes to write before reading anything (left over by a splice pump).
    """

    def __init__(
        self,
        name: str,
        src_fd: int,
        dst_fd: int,
        *,
        read: Reader,
        write: Writer,
        src: Conn | None = None,
        dst: Conn | None = None,
        src_blocking: bool = False,
        zero_is_eof: bool = True,
        whole_writes: bool = False,
        transform: Callable[[memoryview], bytes] | None = None,
        observe: Callable[[memoryview], None] | None = None,
        size: int = COPY_BUFFER,
        initial: bytes = b"",
    ) -> None:
        super().__init__(name, src_fd, dst_fd, src, dst)
        self._read = read
        self._write = write
        self._src_blocking = src_blocking
        self._zero_is_eof = zero_is_eof
        self._whole = whole_writes
        self._transform = transform
        self._observe = observe
        self._buf = aligned_buffer(size)
        self._out: memoryview | None = memoryview(initial) if initial else None
        if initial:
            self.want = (dst_fd, POLLOUT)

    def ready(self) -> bool:
        return self._out is None and self.src_conn is not None and self.src_conn.pending() > 0

    def step(self) -> int:
        moved = 0
        reads = 0
        while moved < STEP_BUDGET:
            if self._out is not None:
                try:
                    n = self._write(self._out)
                except BlockingIOError:
                    self.want = (self.dst_fd, POLLOUT)
                    return moved
                except SocketkitError:
                    raise
                except OSError as exc:
                    raise self._dst_error(exc) from exc
                self.count += n
                moved += n
                if self._whole or n >= len(self._out):
                    self._out = None
                else:
                    self._out = self._out[n:]
                continue
            if self.dst_conn is not None and self.dst_conn.wants_write():
                # TLS records the kernel took only in part: finish them before reading on,
                # or they would wait for the source's next byte (or its EOF).
                if not self.dst_conn.flush():
                    self.want = (self.dst_fd, POLLOUT)
                    return moved
                if self._src_blocking:  # woken for the socket: a read now could block
                    self.want = (self.src_fd, POLLIN)
                    return moved
            if self._src_blocking and reads:
                self.want = (self.src_fd, POLLIN)
                return moved
            try:
                n = self._read(self._buf)
            except BlockingIOError:
                self.want = (self.src_fd, POLLIN)
                return moved
            except SocketkitError:
                raise
            except OSError as exc:
                raise self._src_error(exc) from exc
            reads += 1
            if n == 0 and self._zero_is_eof:
                self.eof = True
                self.want = None
                return moved
            chunk = self._buf[:n]
            if self._transform is not None:
                chunk = memoryview(self._transform(chunk))
            if self._observe is not None and n:
                self._observe(chunk)
            if n:
                self._out = chunk
        return moved
