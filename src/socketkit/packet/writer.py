"""What the pcap and pcapng writers share: the output file, flush, close, ``with``."""

from __future__ import annotations

import os
from types import TracebackType
from typing import BinaryIO, Self


class CaptureFileWriter:
    """Owns the output: a path is opened (and closed by :meth:`close`); a file object given
    by the caller is only flushed, never closed."""

    def __init__(self, fileobj: BinaryIO | str | os.PathLike[str]) -> None:
        self._owned = not hasattr(fileobj, "write")
        self._fh: BinaryIO = (
            open(fileobj, "wb")  # type: ignore[arg-type]  # noqa: SIM115 - owned
            if self._owned
            else fileobj  # type: ignore[assignment]
        )
        self._closed = False

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fh.flush()
        if self._owned:
            self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
