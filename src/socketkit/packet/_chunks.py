"""Reading a capture file in large chunks (constant memory, few system calls)."""

from __future__ import annotations

from typing import BinaryIO

__all__ = ["CHUNK", "read_more"]

#: bytes read per call; large enough that per-call cost vanishes, small enough for the cache.
CHUNK = 1 << 20


def read_more(fh: BinaryIO, buf: bytes, pos: int, need: int) -> bytes:
    """Return ``buf[pos:]`` extended from ``fh`` until it holds ``need`` bytes or EOF.

    Short reads (pipes, sockets) are retried; an empty read means end of file.
    """
    parts = [buf[pos:]]
    have = len(parts[0])
    while have < need:
        chunk = fh.read(max(CHUNK, need - have))
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)
