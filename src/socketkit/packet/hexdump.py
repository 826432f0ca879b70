"""Hex + ASCII dump in the layout of ``tcpdump -X``."""

from __future__ import annotations

__all__ = ["hexdump"]

# tcpdump (ascii_print in util-print.c) shows only graphic characters; space becomes "."
_PRINTABLE = bytes(b if 0x20 < b < 0x7F else 0x2E for b in range(256))


def hexdump(data: bytes | bytearray | memoryview, *, offset: int = 0) -> str:
    """Format ``data`` as tcpdump ``-X`` does: 16 bytes a line, hex in 2-byte groups, then
    the graphic ASCII characters (others, space included, as ``.``)::

        \\t0x0000:  4500 0054 1c46 4000 4001 2061 7f00 0001  E..T.F@.@..a....

    Args:
        data: the bytes to dump.
        offset: the number printed for the first line (e.g. where ``data`` starts in a packet).

    Returns:
        The lines joined with ``\\n`` (no trailing newline); ``""`` for empty data.
    """
    raw = bytes(data)
    lines = []
    for start in range(0, len(raw), 16):
        chunk = raw[start : start + 16]
        text = chunk.hex()
        groups = " ".join(text[i : i + 4] for i in range(0, len(text), 4))
        lines.append(
            f"\t0x{offset + start:04x}:  {groups:<39}  {chunk.translate(_PRINTABLE).decode()}"
        )
    return "\n".join(lines)
