"""What a netcat session tells the user on stderr: ``-v`` lines, or ``--json`` lines.

JSON schema (stable; documented in docs/connect.md): one object per line, always with
``"event"`` and ``"time"`` (Unix seconds, float). Events: ``listening``, ``connected``,
``accepted``, ``denied``, ``rejected``, ``tls``, ``closed``, ``port``, ``error``, ``warning``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

__all__ = ["Reporter"]


class Reporter:
    """Writes events. Thread-safe (``--exec`` sessions run in threads).

    Args:
        prog: prefix of human lines (``socketkit connect``).
        verbose: print human lines for every event (``-v``).
        json_lines: print one JSON object per event instead (``--json``).
    """

    def __init__(
        self,
        prog: str,
        *,
        verbose: bool = False,
        json_lines: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.prog = prog
        self.verbose = verbose
        self.json = json_lines
        self._stream = stream
        self._lock = threading.Lock()

    def _out(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def event(self, name: str, text: str, **fields: Any) -> None:
        """Report event ``name``; ``text`` is the human ``-v`` line."""
        if self.json:
            record = {"event": name, "time": round(time.time(), 6), **fields}
            self._write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        elif self.verbose:
            self._write(f"{self.prog}: {text}\n")

    def warning(self, message: str, **fields: Any) -> None:
        """Always shown (as a ``warning`` event with ``--json``)."""
        if self.json:
            self.event("warning", message, message=message, **fields)
        else:
            self._write(f"{self.prog}: warning: {message}\n")

    def error(self, message: str, exit_code: int) -> None:
        """With ``--json``, the final ``error`` event (the one-line message is printed too)."""
        if self.json:
            self.event("error", message, message=message, exit_code=exit_code)

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                out = self._out()
                out.write(text)
                out.flush()
            except (OSError, ValueError):
                pass
