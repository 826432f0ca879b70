"""Observers of the bytes a session moves: the hex dump (``--hex-dump``) and the session log
(``-o``). When one is active the relay takes the copy path, so every byte passes here."""

from __future__ import annotations

import os
import sys
import threading
from typing import IO

from .endpoints import write_all
from .text import HexDumper

__all__ = ["Tap", "open_output"]


def open_output(path: str, what: str) -> int:
    """Open ``path`` for appending session data; a failure is a one-line ``OSError`` (exit 9)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise OSError(f"cannot open {what} {path}: {exc.strerror}") from exc


class Tap:
    """Copies of the session's bytes, written synchronously (a full disk stops the session
    with exit status 9 rather than losing log lines).

    Args:
        hex_dump: ``None`` (off), ``"-"`` (stderr) or a file path.
        output: ``None`` or a file path for the raw session log (both directions, in order).
    """

    def __init__(self, *, hex_dump: str | None = None, output: str | None = None) -> None:
        self._lock = threading.Lock()
        self._dumper = HexDumper() if hex_dump is not None else None
        self._hex_path = hex_dump
        self._hex_fd: int | None = None
        self._hex_stream: IO[str] | None = None
        if hex_dump == "-":
            self._hex_stream = sys.stderr
        elif hex_dump is not None:
            self._hex_fd = open_output(hex_dump, "hex dump file")
        self._out_path = output
        self._out_fd = open_output(output, "output file") if output is not None else None

    @property
    def active(self) -> bool:
        return self._dumper is not None or self._out_fd is not None

    def sent(self, data: memoryview) -> None:
        self._record(">", data)

    def received(self, data: memoryview) -> None:
        self._record("<", data)

    def _record(self, marker: str, data: memoryview) -> None:
        with self._lock:
            if self._out_fd is not None:
                write_all(self._out_fd, data, f"output file {self._out_path}")
            if self._dumper is not None:
                text = self._dumper.dump(marker, data)
                if self._hex_stream is not None:
                    self._hex_stream.write(text)
                    self._hex_stream.flush()
                elif self._hex_fd is not None:
                    write_all(self._hex_fd, text.encode(), f"hex dump file {self._hex_path}")

    def close(self) -> None:
        for fd in (self._hex_fd, self._out_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._hex_fd = self._out_fd = None
