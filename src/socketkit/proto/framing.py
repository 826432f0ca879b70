"""Message framing over a byte stream (sans-I/O): delimiters and length prefixes.

A framer is fed bytes as they arrive (``feed``) and hands back complete messages
(``next_message`` → ``bytes`` or ``None`` when it needs more data). ``encode`` does the
reverse. Every framer has a maximum message size, and the bytes it holds never exceed that
maximum plus what one ``feed`` brought: a peer that sends an oversize frame gets a
:class:`~socketkit.RemoteProtocolError`, not an ever-growing buffer.
"""

from __future__ import annotations

import struct
from typing import Protocol

from .._errors import LocalProtocolError, RemoteProtocolError
from .buffer import ByteBuffer

__all__ = ["DEFAULT_MAX_MESSAGE", "Framer", "LengthPrefixFramer", "LineFramer"]

#: Default largest message: 1 MiB is more than any line-oriented protocol needs and small
#: enough that 10,000 hostile peers cannot exhaust memory (asyncio's default limit is 64 KiB).
DEFAULT_MAX_MESSAGE = 1024 * 1024


class Framer(Protocol):
    """What the streams need of a framer."""

    buffer: ByteBuffer

    def next_message(self) -> bytes | None: ...

    def encode(self, message: bytes | bytearray | memoryview) -> bytes: ...

    def check_eof(self) -> bytes | None: ...


class LineFramer:
    """Messages separated by a delimiter (default ``b"\\n"``).

    Args:
        delimiter: the separator; not included in returned messages.
        max_size: the largest message, delimiter excluded.
        strip_cr: also drop a ``\\r`` before a ``\\n`` delimiter (CRLF text protocols).
        allow_partial_last: at EOF, a final message without its delimiter is returned
            (like iterating over a text file) instead of raising.
    """

    def __init__(
        self,
        delimiter: bytes = b"\n",
        *,
        max_size: int = DEFAULT_MAX_MESSAGE,
        strip_cr: bool = False,
        allow_partial_last: bool = True,
    ) -> None:
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        self.delimiter = bytes(delimiter)
        self.max_size = max_size
        self.strip_cr = strip_cr
        self.allow_partial_last = allow_partial_last
        self.buffer = ByteBuffer()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer.append(data)

    def next_message(self) -> bytes | None:
        """The next complete message, or ``None`` if more bytes are needed.

        Raises:
            RemoteProtocolError: no delimiter within ``max_size`` bytes.
        """
        index = self.buffer.find(self.delimiter)
        if index < 0:
            # A delimiter starting within max_size would be complete by now.
            if len(self.buffer) >= self.max_size + len(self.delimiter):
                raise RemoteProtocolError(
                    f"no {self.delimiter!r} delimiter within {self.max_size} bytes",
                    partial=self.buffer.take_all(),
                )
            return None
        if index > self.max_size:
            raise RemoteProtocolError(
                f"message of {index} bytes exceeds the maximum of {self.max_size}",
                partial=self.buffer.take_all(),
            )
        message = self.buffer.take(index)
        self.buffer.take(len(self.delimiter))
        if self.strip_cr and message.endswith(b"\r") and self.delimiter == b"\n":
            message = message[:-1]
        return message

    def check_eof(self) -> bytes | None:
        """Called at EOF: the unterminated last message, or ``None`` if nothing is left.

        Raises:
            RemoteProtocolError: bytes are left and ``allow_partial_last`` is false.
        """
        if not len(self.buffer):
            return None
        rest = self.buffer.take_all()
        if not self.allow_partial_last:
            raise RemoteProtocolError("stream ended inside a message", partial=rest)
        if self.strip_cr and rest.endswith(b"\r"):
            rest = rest[:-1]
        return rest

    def encode(self, message: bytes | bytearray | memoryview) -> bytes:
        data = bytes(message)
        if len(data) > self.max_size:
            raise LocalProtocolError(f"message of {len(data)} bytes over {self.max_size}")
        framed = data + self.delimiter
        # Not just "delimiter in data": with b"--" as the delimiter, b"x-" + b"--" would be
        # read back as b"x" (the delimiter must first occur where the message ends).
        if framed.find(self.delimiter) != len(data):
            raise LocalProtocolError(f"message contains the delimiter {self.delimiter!r}")
        return framed


_PREFIX = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I"),
           8: struct.Struct(">Q")}  # fmt: skip


class LengthPrefixFramer:
    """Messages preceded by their length as a 1, 2, 4 or 8-byte big-endian unsigned integer.

    The length header is checked against ``max_size`` before any payload is buffered.
    """

    def __init__(self, width: int = 4, *, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        if width not in _PREFIX:
            raise ValueError(f"prefix width must be 1, 2, 4 or 8 bytes, not {width}")
        self.width = width
        self.max_size = min(max_size, (1 << (8 * width)) - 1)
        self._struct = _PREFIX[width]
        self._need: int | None = None  # payload length of the message being read
        self.buffer = ByteBuffer()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer.append(data)

    def next_message(self) -> bytes | None:
        """The next complete message, or ``None`` if more bytes are needed.

        Raises:
            RemoteProtocolError: the announced length exceeds ``max_size``.
        """
        if self._need is None:
            if len(self.buffer) < self.width:
                return None
            (length,) = self._struct.unpack(self.buffer.take(self.width))
            if length > self.max_size:
                raise RemoteProtocolError(
                    f"frame of {length} bytes announced, over the maximum of {self.max_size}",
                    partial=self.buffer.take_all(),
                )
            self._need = length
        if len(self.buffer) < self._need:
            return None
        message = self.buffer.take(self._need)
        self._need = None
        return message

    def check_eof(self) -> bytes | None:
        """Called at EOF. Raises RemoteProtocolError if the stream ended inside a frame."""
        if self._need is None and not len(self.buffer):
            return None
        raise RemoteProtocolError(
            "stream ended inside a length-prefixed frame", partial=self.buffer.take_all()
        )

    def encode(self, message: bytes | bytearray | memoryview) -> bytes:
        if len(message) > self.max_size:
            raise LocalProtocolError(
                f"message of {len(message)} bytes over the maximum of {self.max_size}"
            )
        return self._struct.pack(len(message)) + bytes(message)
