"""A growable byte buffer with a read cursor and a writable tail (sans-I/O).

It is the one receive buffer of every socketkit stream: the sync stream ``recv_into`` its
tail, the asyncio protocol hands its tail to the event loop (``get_buffer``), and the framers
parse from it. The bytearray is never resized in place (only replaced or written with
same-length slice assignment), so a memoryview handed out earlier never blocks it.
"""

from __future__ import annotations

#: Free space asked of the buffer before a read: large enough that bulk reads are few,
#: small enough (< 128 KiB) that glibc serves it from the heap, not mmap (design.md trap 1).
DEFAULT_CHUNK = 64 * 1024
_EMPTY = bytearray()
_EMPTY_VIEW = memoryview(_EMPTY)


class ByteBuffer:
    """Bytes received but not yet consumed."""

    __slots__ = ("_buf", "_end", "_scan", "_scan_for", "_start", "_view")

    def __init__(self) -> None:
        # Start on a shared empty array: an idle connection's buffer costs no storage at all
        # (the first write replaces it; an empty array is never written to).
        self._buf = _EMPTY
        self._view = _EMPTY_VIEW
        self._start = 0  # first unread byte
        self._end = 0  # one past the last written byte
        self._scan = 0  # where the next delimiter search resumes
        self._scan_for = b""  # ... if it looks for this delimiter (another restarts)

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def writable(self, min_free: int = DEFAULT_CHUNK) -> memoryview:
        """A view of at least ``min_free`` free bytes at the tail; call :meth:`commit` after
        writing into it."""
        if len(self._buf) - self._end < min_free:
            size = self._end - self._start
            if self._start and len(self._buf) - size >= min_free:
                self._buf[:size] = self._buf[self._start : self._end]
            else:
                grown = bytearray(max(2 * len(self._buf), size + min_free))
                grown[:size] = self._buf[self._start : self._end]
                self._buf = grown
                self._view = memoryview(grown)
            self._scan = max(0, self._scan - self._start)
            self._start, self._end = 0, size
        return self._view[self._end :]

    def commit(self, count: int) -> None:
        """Mark ``count`` bytes written into the last :meth:`writable` view as received."""
        self._end += count

    def append(self, data: bytes | bytearray | memoryview) -> None:
        count = len(data)
        if count:
            self.writable(count)[:count] = data
            self._end += count

    def unread(self, data: bytes | bytearray | memoryview) -> None:
        """Put ``data`` back in front of the unread bytes: what a cancelled read had already
        received elsewhere (the asyncio ``receive_into``'s own buffer, a completed future) is
        read again, first, by the next read."""
        count = len(data)
        if not count:
            return
        if self._start >= count:
            self._start -= count
            self._buf[self._start : self._start + count] = data
        else:
            size = self._end - self._start
            grown = bytearray(max(len(self._buf), count + size + DEFAULT_CHUNK))
            grown[:count] = data
            grown[count : count + size] = self._buf[self._start : self._end]
            self._buf = grown
            self._view = memoryview(grown)
            self._start, self._end = 0, count + size
        self._scan = self._start
        self._scan_for = b""

    def take(self, count: int) -> bytes:
        """Remove and return up to ``count`` bytes from the front."""
        start = self._start
        stop = min(start + count, self._end)
        out = self._view[start:stop].tobytes()
        if stop == self._end:
            self._start = self._end = self._scan = 0
        else:
            self._start = stop
        return out

    def take_all(self) -> bytes:
        return self.take(len(self))

    def peek(self) -> bytes:
        """A copy of everything buffered, left in place."""
        return self._view[self._start : self._end].tobytes()

    def take_into(self, target: memoryview) -> int:
        """Move up to ``len(target)`` bytes into ``target``; returns how many."""
        count = min(len(target), len(self))
        target[:count] = self._view[self._start : self._start + count]
        self._start += count
        if self._start == self._end:
            self._start = self._end = self._scan = 0
        return count

    def find(self, delimiter: bytes) -> int:
        """Offset (from the front) of the first ``delimiter``, or -1. Repeated calls after more
        data arrives resume where the last search stopped, so a long line costs O(n), not
        O(n²)."""
        begin = max(self._start, self._scan) if delimiter == self._scan_for else self._start
        index = self._buf.find(delimiter, begin, self._end)
        if index < 0:
            self._scan = max(self._start, self._end - len(delimiter) + 1)
            self._scan_for = delimiter
            return -1
        return index - self._start

    def release(self, keep: int = DEFAULT_CHUNK) -> None:
        """Free the storage if it is empty and bigger than ``keep`` (bounded idle memory)."""
        if self._start == self._end and len(self._buf) > keep:
            self._buf = _EMPTY
            self._view = _EMPTY_VIEW
            self._start = self._end = self._scan = 0
