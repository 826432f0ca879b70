"""Sans-I/O byte transforms for the session: CRLF line endings and the hex dump format."""

from __future__ import annotations

__all__ = ["CrlfEncoder", "HexDumper"]


class CrlfEncoder:
    """Turn bare ``\\n`` into ``\\r\\n`` (``-C``); an existing ``\\r\\n`` is left alone.

    Stateful across chunks: a chunk ending in ``\\r`` followed by one starting with ``\\n`` is
    still one CRLF.
    """

    def __init__(self) -> None:
        self._last_cr = False

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        raw = bytes(data)
        if not raw:
            return raw
        out = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._last_cr and raw[:1] == b"\n":
            out = out[1:]  # the \r was already sent with the previous chunk
        self._last_cr = raw[-1:] == b"\r"
        return out


class HexDumper:
    """Format both directions of a session as hex, each line marked ``>`` (sent) or ``<``
    (received), with a running offset per direction (the markers socat ``-x`` uses)."""

    WIDTH = 16

    def __init__(self) -> None:
        self._offset = {">": 0, "<": 0}

    def dump(self, marker: str, data: bytes | bytearray | memoryview) -> str:
        """Lines for ``data`` sent (``marker=">"``) or received (``"<"``), newline-terminated."""
        raw = bytes(data)
        lines = []
        base = self._offset[marker]
        for start in range(0, len(raw), self.WIDTH):
            row = raw[start : start + self.WIDTH]
            hexpart = " ".join(f"{b:02x}" for b in row)
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
            lines.append(f"{marker} {base + start:08x}  {hexpart:<47}  |{text}|\n")
        self._offset[marker] = base + len(raw)
        return "".join(lines)
