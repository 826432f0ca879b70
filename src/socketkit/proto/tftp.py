"""TFTP, sans-I/O: packets and the four transfer state machines (client/server x read/write).

RFC 1350 (the protocol), RFC 2347 (option extension, OACK), RFC 2348 (blksize),
RFC 2349 (timeout, tsize), RFC 7440 (windowsize), RFC 1123 section 4.2.3.1 (the Sorcerer's
Apprentice bug: a duplicate ACK must never cause a DATA to be sent again).

Nothing here touches a socket or a clock. A machine is driven by three calls, each returning
the datagrams to send (``list[bytes]``):

* ``start(now)`` — the first packet(s) (a request, an OACK, an ACK 0 or the first DATA);
* ``receive(datagram, now)`` — a datagram from the peer's transfer ID;
* ``on_timeout(now)`` — when ``now >= deadline``: retransmit with exponential back-off, or
  raise :class:`TransferTimeout` once the retries are used up.

``done`` turns true when the transfer is complete (for a receiver: the short last DATA was
written and acknowledged). File bytes go through two callables, ``read(n) -> bytes`` (a
sender's source) and ``write(data)`` (a receiver's sink); netascii conversion wraps them
(:class:`NetasciiEncoder`, :class:`NetasciiDecoder`).

Errors: a packet that breaks the protocol raises :class:`MalformedPacket` (its ``code`` is the
TFTP error code to send back, its message the one line to show); an ERROR from the peer raises
:class:`PeerError`. Both leave the machine finished.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._errors import AccessDenied, ReadTimeout, RemoteProtocolError, SocketkitError

__all__ = [
    "DEFAULT_BLKSIZE",
    "DEFAULT_PORT",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "MAX_BACKOFF",
    "MAX_BLKSIZE",
    "MAX_REQUEST",
    "MAX_WINDOW_BYTES",
    "MAX_WINDOWSIZE",
    "MIN_BLKSIZE",
    "Ack",
    "ClientRead",
    "ClientWrite",
    "Data",
    "Error",
    "ErrorCode",
    "MalformedPacket",
    "Mode",
    "NetasciiDecoder",
    "NetasciiEncoder",
    "Opcode",
    "OptionAck",
    "Options",
    "Packet",
    "PeerAccessDenied",
    "PeerBusy",
    "PeerError",
    "Request",
    "ServerRead",
    "ServerWrite",
    "TftpError",
    "TransferInterrupted",
    "TftpRefusal",
    "TransferTimeout",
    "decode",
    "encode",
    "negotiate",
]

#: The well-known server port (RFC 1350 section 4).
DEFAULT_PORT: Final = 69
#: RFC 1350's block size; also what is used when the peer ignores the blksize option.
DEFAULT_BLKSIZE: Final = 512
#: RFC 2348: "valid values range between 8 and 65464 octets, inclusive".
MIN_BLKSIZE: Final = 8
MAX_BLKSIZE: Final = 65464
#: RFC 7440: windowsize 1..65535.
MAX_WINDOWSIZE: Final = 65535
#: A sender keeps its unacknowledged window in memory: windowsize x blksize is bounded by this
#: (a server answers a larger request with a smaller windowsize, as RFC 7440 allows).
MAX_WINDOW_BYTES: Final = 4 * 1024 * 1024
#: RFC 2347: "the maximum size of a request packet is 512 octets".
MAX_REQUEST: Final = 512
#: Seconds to wait for the peer before the first retransmission (tftp-hpa's default too).
DEFAULT_TIMEOUT: Final = 1.0
#: Retransmissions before giving up (with back-off 1+2+4+8+8+8... seconds: about 40 s).
DEFAULT_RETRIES: Final = 6
#: The back-off doubles the timeout up to this many times the first one.
MAX_BACKOFF: Final = 8
#: Seconds: a window sender takes an ACK of the block before its window as a gap report no
#: sooner than this after sending the window (and half a round trip); a window receiver
#: repeats a gap report no sooner than this (and two round trips).
MIN_GAP_REPORT: Final = 0.0002
#: RFC 2349: the timeout option is 1..255 seconds.
MIN_TIMEOUT_OPTION: Final = 1
MAX_TIMEOUT_OPTION: Final = 255

_HEAD = struct.Struct("!HH")  # opcode + block number / error code
_BLOCKS: Final = 65536  # block numbers are 16 bits and wrap to 0 (tftp-hpa, atftp)


class Opcode(enum.IntEnum):
    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(enum.IntEnum):
    """RFC 1350 section 5 and RFC 2347 (8)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


_ERROR_TEXT = {
    ErrorCode.NOT_DEFINED: "not defined",
    ErrorCode.FILE_NOT_FOUND: "file not found",
    ErrorCode.ACCESS_VIOLATION: "access violation",
    ErrorCode.DISK_FULL: "disk full or allocation exceeded",
    ErrorCode.ILLEGAL_OPERATION: "illegal TFTP operation",
    ErrorCode.UNKNOWN_TID: "unknown transfer ID",
    ErrorCode.FILE_EXISTS: "file already exists",
    ErrorCode.NO_SUCH_USER: "no such user",
    ErrorCode.OPTION_REFUSED: "option negotiation failed",
}


class Mode(enum.StrEnum):
    NETASCII = "netascii"
    OCTET = "octet"


# --- errors ---------------------------------------------------------------------------------


class TftpError(SocketkitError):
    """Base of the TFTP errors; ``code`` is the TFTP error code (sent or received);
    ``answered`` turns true once an ERROR saying so was sent to the peer."""

    code: ErrorCode = ErrorCode.NOT_DEFINED
    answered: bool = False


class MalformedPacket(TftpError, RemoteProtocolError):
    """The peer broke the protocol (or asked for something refused). Send ``ERROR(code)``.

    Args:
        message: one line, without the TFTP code.
        code: the error code to send back to the peer.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.ILLEGAL_OPERATION) -> None:
        super().__init__(message)
        self.code = code


class TftpRefusal(TftpError):
    """A request or a transfer refused by this side (a name outside the served directory,
    writes not allowed, no room); ``code`` is the TFTP error to answer with."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


class PeerError(TftpError):
    """The peer sent an ERROR packet: ``code`` and ``text`` are what it said."""

    def __init__(self, code: int, text: str) -> None:
        try:
            self.code = ErrorCode(code)
        except ValueError:
            self.code = ErrorCode.NOT_DEFINED
        self.raw_code = code
        self.text = text
        super().__init__(f"the peer sent TFTP error {code} ({_describe(code)}): {text}")


class PeerAccessDenied(PeerError, AccessDenied):
    """ERROR 2 (access violation) from the peer."""


class TransferTimeout(TftpError, ReadTimeout):
    """The peer stopped answering: every retransmission went unanswered."""


class PeerBusy(PeerError, AccessDenied):
    """ERROR 0 from a server that says it is busy (socketkit's server: ``server busy: ...``):
    the peer refused us for now, not for good."""


class TransferInterrupted(KeyboardInterrupt):
    """Ctrl-C (a KeyboardInterrupt) during a transfer: the peer was sent ERROR 0 "transfer
    cancelled" (when it had answered already); ``size`` is the bytes transferred by then."""

    def __init__(self, size: int) -> None:
        super().__init__(f"interrupted after {size} bytes")
        self.size = size


def peer_error(code: int, text: str) -> PeerError:
    """The right :class:`PeerError` subclass for an ERROR packet's code."""
    if code == ErrorCode.ACCESS_VIOLATION:
        return PeerAccessDenied(code, text)
    if code == ErrorCode.NOT_DEFINED and "busy" in text.lower():
        return PeerBusy(code, text)
    return PeerError(code, text)


def _describe(code: int) -> str:
    try:
        return _ERROR_TEXT[ErrorCode(code)]
    except ValueError:
        return "unknown code"


# --- packets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """RRQ or WRQ. ``options``: (lower-case name, value) pairs in the order sent."""

    opcode: Opcode
    filename: str
    mode: str = Mode.OCTET
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Data:
    block: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    block: int


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class OptionAck:
    options: tuple[tuple[str, str], ...]


Packet = Request | Data | Ack | Error | OptionAck


def encode(packet: Packet) -> bytes:
    """The datagram for ``packet``."""
    if isinstance(packet, Data):
        return _HEAD.pack(Opcode.DATA, packet.block & 0xFFFF) + packet.data
    if isinstance(packet, Ack):
        return _HEAD.pack(Opcode.ACK, packet.block & 0xFFFF)
    if isinstance(packet, Error):
        return _HEAD.pack(Opcode.ERROR, packet.code) + _text(packet.message, "message") + b"\0"
    if isinstance(packet, OptionAck):
        return struct.pack("!H", Opcode.OACK) + _pairs(packet.options)
    return (
        struct.pack("!H", packet.opcode)
        + _text(packet.filename, "filename")
        + b"\0"
        + _text(packet.mode, "mode")
        + b"\0"
        + _pairs(packet.options)
    )


def _text(value: str, what: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError(f"a TFTP {what} cannot contain NUL: {value!r}")
    return raw


def _pairs(options: tuple[tuple[str, str], ...]) -> bytes:
    return b"".join(
        _text(k, "option") + b"\0" + _text(v, "option value") + b"\0" for k, v in options
    )


def decode(datagram: bytes | bytearray | memoryview) -> Packet:
    """Parse one datagram strictly.

    Raises:
        MalformedPacket: too short, an unknown opcode, a missing NUL, an empty or repeated
            option, a request longer than :data:`MAX_REQUEST`; ``code`` says what to answer.
    """
    raw = bytes(datagram)
    if len(raw) < 2:
        raise MalformedPacket(f"a {len(raw)}-byte datagram is too short for a TFTP packet")
    opcode = (raw[0] << 8) | raw[1]
    if opcode == Opcode.DATA:
        if len(raw) < 4:
            raise MalformedPacket(f"a DATA packet of {len(raw)} bytes has no block number")
        return Data((raw[2] << 8) | raw[3], raw[4:])
    if opcode == Opcode.ACK:
        if len(raw) != 4:
            raise MalformedPacket(f"an ACK packet must be 4 bytes, not {len(raw)}")
        return Ack((raw[2] << 8) | raw[3])
    if opcode == Opcode.ERROR:
        if len(raw) < 5 or raw[-1] != 0:
            raise MalformedPacket("an ERROR packet without a NUL-terminated message")
        message = raw[4:-1].split(b"\0", 1)[0]
        return Error((raw[2] << 8) | raw[3], message.decode("utf-8", "replace"))
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        if len(raw) > MAX_REQUEST:
            raise MalformedPacket(
                f"a request of {len(raw)} bytes is longer than {MAX_REQUEST} (RFC 2347)"
            )
        fields = _fields(raw[2:], "request")
        if len(fields) < 2:
            raise MalformedPacket("a request needs a filename and a mode")
        filename, mode = fields[0], fields[1].lower()
        if not filename:
            raise MalformedPacket("a request with an empty filename")
        if mode not in (Mode.NETASCII, Mode.OCTET):
            raise MalformedPacket(f"transfer mode {fields[1]!r} is not supported (octet, netascii)")
        return Request(Opcode(opcode), filename, mode, _options(fields[2:]))
    if opcode == Opcode.OACK:
        fields = _fields(raw[2:], "OACK")
        return OptionAck(_options(fields))
    raise MalformedPacket(f"unknown opcode {opcode}")


def _fields(raw: bytes, what: str) -> list[str]:
    if not raw:
        return []
    if raw[-1] != 0:
        raise MalformedPacket(f"a {what} whose last field has no NUL terminator")
    try:
        return raw[:-1].decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise MalformedPacket(f"a {what} with text that is not UTF-8") from None


def _options(fields: list[str]) -> tuple[tuple[str, str], ...]:
    if len(fields) % 2:
        raise MalformedPacket(f"option {fields[-1]!r} has no value", ErrorCode.OPTION_REFUSED)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index in range(0, len(fields), 2):
        name, value = fields[index].lower(), fields[index + 1]
        if not name:
            raise MalformedPacket("an option with an empty name", ErrorCode.OPTION_REFUSED)
        if name in seen:
            raise MalformedPacket(f"option {name!r} is repeated", ErrorCode.OPTION_REFUSED)
        seen.add(name)
        pairs.append((name, value))
    return tuple(pairs)


# --- options --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """Transfer parameters: asked for by a client, or in effect after negotiation.

    ``timeout`` is the peer's retransmission timeout in whole seconds (RFC 2349), None when
    not negotiated; ``tsize`` the transfer size when known.
    """

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: int | None = None
    tsize: int | None = None

    def __post_init__(self) -> None:
        if not MIN_BLKSIZE <= self.blksize <= MAX_BLKSIZE:
            raise ValueError(f"blksize {self.blksize}: out of range {MIN_BLKSIZE}..{MAX_BLKSIZE}")
        if not 1 <= self.windowsize <= MAX_WINDOWSIZE:
            raise ValueError(f"windowsize {self.windowsize}: out of range 1..{MAX_WINDOWSIZE}")
        if self.timeout is not None and not (
            MIN_TIMEOUT_OPTION <= self.timeout <= MAX_TIMEOUT_OPTION
        ):
            raise ValueError(f"timeout {self.timeout}: out of range 1..255 seconds")
        if self.tsize is not None and self.tsize < 0:
            raise ValueError(f"tsize {self.tsize}: negative")

    def request_pairs(self, *, send_tsize: bool) -> tuple[tuple[str, str], ...]:
        """The options a client puts in its request (only those that differ from RFC 1350)."""
        pairs: list[tuple[str, str]] = []
        if self.blksize != DEFAULT_BLKSIZE:
            pairs.append(("blksize", str(self.blksize)))
        if self.windowsize != 1:
            pairs.append(("windowsize", str(self.windowsize)))
        if self.timeout is not None:
            pairs.append(("timeout", str(self.timeout)))
        if send_tsize:
            pairs.append(("tsize", str(self.tsize or 0)))
        return tuple(pairs)


def _int_option(name: str, value: str, low: int, high: int | None = None) -> int:
    if not value.isdigit() or len(value) > 20:
        raise MalformedPacket(f"option {name} {value!r} is not a number", ErrorCode.OPTION_REFUSED)
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise MalformedPacket(
            f"option {name} {value}: out of range {bound}", ErrorCode.OPTION_REFUSED
        )
    return number


def negotiate(
    request: Request,
    *,
    file_size: int | None,
    max_blksize: int = MAX_BLKSIZE,
    max_tsize: int | None = None,
) -> tuple[Options, tuple[tuple[str, str], ...]]:
    """A server's answer to a request's options: (what is in effect, the OACK pairs).

    Unknown options are ignored (RFC 2347). blksize and windowsize above what the server
    allows are answered with the server's limit (RFC 2348, RFC 7440); the timeout outside
    1..255 or a value that is not a number is refused (ERROR 8). ``file_size`` is the tsize
    answered to a read (None: not known, e.g. netascii; the option is then left out).

    Raises:
        MalformedPacket: ERROR 8 for a refused option, ERROR 3 for a tsize above ``max_tsize``.
    """
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, None, None
    answer: list[tuple[str, str]] = []
    for name, value in request.options:
        if name == "blksize":
            asked = _int_option(name, value, MIN_BLKSIZE, None)
            blksize = min(asked, max_blksize, MAX_BLKSIZE)
            answer.append((name, str(blksize)))
        elif name == "windowsize":
            windowsize = _int_option(name, value, 1, MAX_WINDOWSIZE)
            answer.append((name, str(windowsize)))
        elif name == "timeout":
            timeout = _int_option(name, value, MIN_TIMEOUT_OPTION, MAX_TIMEOUT_OPTION)
            answer.append((name, str(timeout)))
        elif name == "tsize":
            asked = _int_option(name, value, 0, None)
            if request.opcode == Opcode.WRQ:
                if max_tsize is not None and asked > max_tsize:
                    raise MalformedPacket(
                        f"tsize {asked} is above this server's limit of {max_tsize} bytes",
                        ErrorCode.DISK_FULL,
                    )
                tsize = asked
                answer.append((name, str(asked)))
            elif file_size is not None:
                tsize = file_size
                answer.append((name, str(file_size)))
    if windowsize * blksize > MAX_WINDOW_BYTES:
        windowsize = max(1, MAX_WINDOW_BYTES // blksize)
        answer = [(k, str(windowsize) if k == "windowsize" else v) for k, v in answer]
    return Options(blksize, windowsize, timeout, tsize), tuple(answer)


def accept_oack(asked: Options, oack: OptionAck, *, reading: bool) -> Options:
    """A client's check of the server's OACK against what it asked (RFC 2347 section 3).

    Raises:
        MalformedPacket (ERROR 8): an option not asked for, or a value the client cannot use.
    """
    asked_names = {name for name, _ in asked.request_pairs(send_tsize=True)}
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, None, asked.tsize
    for name, value in oack.options:
        if name not in asked_names:
            raise MalformedPacket(
                f"the server's OACK has option {name!r}, which was not asked for",
                ErrorCode.OPTION_REFUSED,
            )
        if name == "blksize":
            blksize = _int_option(name, value, MIN_BLKSIZE, asked.blksize)
        elif name == "windowsize":
            windowsize = _int_option(name, value, 1, asked.windowsize)
        elif name == "timeout":
            timeout = _int_option(name, value, asked.timeout or 1, asked.timeout or 1)
        elif name == "tsize":
            number = _int_option(name, value, 0, None)
            tsize = number if reading else asked.tsize
    return Options(blksize, windowsize, timeout, tsize)


# --- netascii -------------------------------------------------------------------------------


class NetasciiEncoder:
    """A ``read(n)`` source that turns local text into netascii (RFC 764): LF -> CR LF,
    CR -> CR NUL. Wraps the file's own ``read``."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._pending = b""
        self._eof = False

    def read(self, size: int) -> bytes:
        while len(self._pending) < size and not self._eof:
            chunk = self._read(max(size, 8192))
            if not chunk:
                self._eof = True
                break
            self._pending += chunk.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


class NetasciiDecoder:
    """A ``write(data)`` sink that turns netascii into local text: CR LF -> LF, CR NUL -> CR
    (a CR at the end of a block waits for the next block's first byte). Call ``close()``
    at the end."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._cr = False

    def write(self, data: bytes) -> None:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        if data:
            self._write(data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r"))

    def close(self) -> None:
        if self._cr:  # a lone CR at the very end: keep it
            self._write(b"\r")
            self._cr = False


# --- state machines -------------------------------------------------------------------------


@dataclass(slots=True)
class _Stats:
    blocks: int = 0
    size: int = 0
    retransmits: int = 0
    duplicates: int = 0


class _Machine:
    """Timers, retries and exponential back-off shared by every machine."""

    def __init__(self, *, timeout: float, retries: int) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout {timeout}: must be > 0")
        if retries < 0:
            raise ValueError(f"retries {retries}: must be >= 0")
        self.base_timeout = timeout
        self.retries = retries
        self.deadline: float | None = None
        self.done = False
        self.failed = False
        self.options = Options()
        self.stats = _Stats()
        self._tries = 0
        self._wait = timeout
        self._last: list[bytes] = []

    # A peer that keeps answering resets the back-off.
    def _progress(self, now: float) -> None:
        self._tries = 0
        self._wait = self.base_timeout
        self.deadline = now + self._wait

    def _send(self, packets: list[bytes], now: float) -> list[bytes]:
        self._last = packets
        self._progress(now)
        return packets

    def on_timeout(self, now: float) -> list[bytes]:
        """Retransmit what was sent last, or give up.

        Raises:
            TransferTimeout: after ``retries`` retransmissions without an answer.
        """
        if self.done or self.deadline is None or now < self.deadline:
            return []
        if self._tries >= self.retries:
            self._finish(failed=True)
            raise TransferTimeout(
                f"no answer from the peer after {self._tries + 1} tries "
                f"({self._elapsed_waits():.0f} s)"
            )
        self._tries += 1
        self._wait = min(self._wait * 2, self.base_timeout * MAX_BACKOFF)
        self.deadline = now + self._wait
        out = self._resend()
        self.stats.retransmits += len(out)
        return out

    def _resend(self) -> list[bytes]:
        return list(self._last)

    def _elapsed_waits(self) -> float:
        total, wait = 0.0, self.base_timeout
        for _ in range(self._tries + 1):
            total += wait
            wait = min(wait * 2, self.base_timeout * MAX_BACKOFF)
        return total

    def _finish(self, *, failed: bool = False) -> None:
        self.done = not failed
        self.failed = failed
        self.deadline = None

    def _error_packet(self, packet: Packet) -> None:
        if isinstance(packet, Error):
            self._finish(failed=True)
            raise peer_error(packet.code, packet.message)

    def fail(self, exc: MalformedPacket) -> bytes:
        """Finish with an error; returns the ERROR datagram to send to the peer."""
        self._finish(failed=True)
        return encode(Error(exc.code, str(exc)))


class _Sender(_Machine):
    """Sends DATA blocks from ``read`` and waits for ACKs; RFC 7440 windows.

    Blocks are counted from 1 without wrapping (``_base``, ``_next``); the wire number is the
    count modulo 65536. The unacknowledged window is kept for retransmission (bounded by
    :data:`MAX_WINDOW_BYTES` through the negotiated sizes).
    """

    def __init__(self, read: Callable[[int], bytes], *, timeout: float, retries: int) -> None:
        super().__init__(timeout=timeout, retries=retries)
        self._read = read
        self._window: list[bytes] = []  # DATA packets base .. next-1
        self._base = 1  # the first unacknowledged block
        self._eof_block: int | None = None  # the block number of the short last block
        self._sent_at = 0.0  # when the window was last sent (in full or from a gap)
        self._rtt = 0.0  # smoothed time from sending a window to the ACK that moves it
        self._sending = False

    @property
    def awaiting_last_ack(self) -> bool:
        """Every block but the last is acknowledged, and the last one was sent."""
        return (
            self._sending
            and not self.done
            and self._eof_block is not None
            and self._base == self._eof_block
        )

    def _begin_data(self, now: float) -> list[bytes]:
        self._sending = True
        self._sent_at = now
        return self._send(self._fill(), now)

    def _fill(self) -> list[bytes]:
        """Read and encode blocks until the window is full or the file ended."""
        blksize, window = self.options.blksize, self._window
        head = _HEAD.pack
        new: list[bytes] = []
        while len(window) < self.options.windowsize and self._eof_block is None:
            block = self._base + len(window)
            chunk = self._read(blksize)
            if len(chunk) > blksize:
                raise ValueError("read() returned more than it was asked for")
            packet = head(3, block & 0xFFFF) + chunk
            window.append(packet)
            new.append(packet)
            self.stats.size += len(chunk)
            if len(chunk) < blksize:
                self._eof_block = block
        return new

    def _on_ack(self, wire: int, now: float) -> list[bytes]:
        sent_end = self._base + len(self._window) - 1  # the last block sent
        distance = (wire - (self._base - 1)) % _BLOCKS
        if distance == 0:
            # The ACK of the block before the window: a duplicate (never answered: RFC 1123
            # 4.2.3.1), or, with a window, a receiver asking for the window again after a gap
            # (RFC 7440 section 4). A duplicate of the ACK that started this window arrives
            # right behind it; a gap report comes a round trip after the window went out. So
            # it is honoured only half a round trip (smoothed) after the window was sent:
            # duplicates cannot multiply the traffic, and a repeated gap report still works.
            self.stats.duplicates += 1
            if self.options.windowsize > 1 and now - self._sent_at >= max(
                self._rtt / 2, MIN_GAP_REPORT
            ):
                self.stats.retransmits += len(self._window)
                self._sent_at = now
                return self._send(list(self._window), now)
            return []
        if distance > sent_end - (self._base - 1):
            self.stats.duplicates += 1  # an old ACK (from before the window) or a stray
            return []
        acked = self._base - 1 + distance
        sample = now - self._sent_at
        self._rtt = sample if self._rtt == 0.0 else 0.875 * self._rtt + 0.125 * sample
        del self._window[: acked - self._base + 1]
        self.stats.blocks = acked
        self._base = acked + 1
        if self._eof_block is not None and acked >= self._eof_block:
            self._finish()
            return []
        resend = list(self._window)  # blocks after a gap, sent again
        self.stats.retransmits += len(resend)
        new = self._fill()
        self._sent_at = now
        return self._send(resend + new, now)

    def _resend(self) -> list[bytes]:
        return list(self._window) if self._sending else list(self._last)

    def lockstep_begin(self) -> int | None:
        """The block in flight (not wrapped) when plain lock-step is under way (see
        :meth:`_Receiver.lockstep_begin`), else None. ``source`` is the file's ``read``."""
        if (
            self.done
            or self.failed
            or not self._sending
            or self.options.windowsize != 1
            or self._eof_block is not None
            or len(self._window) != 1
        ):
            return None
        return self._base

    @property
    def source(self) -> Callable[[int], bytes]:
        return self._read

    @property
    def window_packet(self) -> bytes:
        """The DATA in flight (lock-step)."""
        return self._window[0]

    def lockstep_end(self, base: int, size: int, packet: bytes, sent_at: float) -> None:
        """The loop got the ACKs of every block before ``base`` and sent ``packet`` (block
        ``base``, ``size`` more bytes of file in all) at ``sent_at``."""
        if base == self._base:
            return
        self._base = base
        self.stats.blocks = base - 1
        self.stats.size += size
        if len(packet) - 4 < self.options.blksize:
            self._eof_block = base
        self._window = [packet]
        self._last = [packet]
        self._sent_at = sent_at
        self._tries = 0
        self._wait = self.base_timeout
        self.deadline = sent_at + self.base_timeout

    def fast(self, datagram: bytes, now: float) -> bytes | None:
        """The lock-step common case, in fewer steps: ``datagram`` is the ACK of the block in
        flight. Returns the next DATA (``b""`` when that ACK ended the transfer), or None
        when this is not that case (then call :meth:`receive`, which handles everything).
        Same state changes as :meth:`receive` would make."""
        if (
            len(datagram) != 4
            or datagram[1] != 4
            or datagram[0] != 0
            or not self._sending
            or self.options.windowsize != 1
            or ((datagram[2] << 8) | datagram[3]) != self._base & 0xFFFF
        ):
            return None
        acked = self._base
        self._window.clear()
        self.stats.blocks = acked
        self._base = acked + 1
        if self._eof_block is not None:
            self._finish()
            return b""
        new = self._fill()
        self._sent_at = now
        self._last = new
        self._tries = 0
        self._wait = self.base_timeout
        self.deadline = now + self.base_timeout
        return new[0]

    def on_timeout(self, now: float) -> list[bytes]:
        out = super().on_timeout(now)
        if out:
            self._sent_at = now
        return out


class _Receiver(_Machine):
    """Receives DATA blocks into ``write`` and acknowledges them; RFC 7440 windows."""

    def __init__(self, write: Callable[[bytes], object], *, timeout: float, retries: int) -> None:
        super().__init__(timeout=timeout, retries=retries)
        self._write = write
        self._last = []
        self._received = 0  # blocks written, counted without wrapping
        self._acked = -1  # the last block acknowledged (0: the request itself)
        self._in_window = 0
        self._gap_acked = False
        self._gap_at = 0.0
        self._rtt = 0.0

    def _ack(self, block: int, now: float) -> list[bytes]:
        self._acked = block
        return self._send([_HEAD.pack(4, block & 0xFFFF)], now)

    def _on_data(self, wire: int, data: bytes, now: float) -> list[bytes]:
        if self.done or wire != (self._received + 1) % _BLOCKS:
            behind = (self._received - wire) % _BLOCKS
            if behind == 0 and (self._received == self._acked or self.done):
                # The block our last ACK named: that ACK was lost and the peer sent its block
                # (or its whole window) again. One ACK per retransmission, never more; a
                # duplicate inside a window that is not yet acknowledged gets none (an ACK
                # there would tell the sender to resend the rest of its window).
                self.stats.duplicates += 1
                return self._resend_ack(now)
            if behind <= self.options.windowsize or self.done:
                self.stats.duplicates += 1  # an older block of a retransmitted window
                return []
            # A block from beyond a gap (RFC 7440 section 4): ask for the window again from
            # the gap on, once per round trip (the blocks after the gap that are still on
            # their way must not each cause a request).
            if self.options.windowsize > 1 and (
                not self._gap_acked or now - self._gap_at >= max(2 * self._rtt, MIN_GAP_REPORT)
            ):
                self._gap_acked = True
                self._gap_at = now
                self._in_window = 0
                return self._ack(self._received, now)
            return []
        if len(data) > self.options.blksize:
            raise MalformedPacket(
                f"DATA block {wire} has {len(data)} bytes, more than the blksize "
                f"{self.options.blksize}"
            )
        self._write(data)
        self._received += 1
        if self._gap_acked:  # the first block after a gap report: one round trip
            sample = now - self._gap_at
            self._rtt = sample if self._rtt == 0.0 else 0.875 * self._rtt + 0.125 * sample
            self._gap_acked = False
        self.stats.blocks = self._received
        self.stats.size += len(data)
        if len(data) < self.options.blksize:
            self._check_tsize()
            self._finish()
            self._last = [_HEAD.pack(4, wire)]
            return list(self._last)
        self._in_window += 1
        if self._in_window >= self.options.windowsize:
            self._in_window = 0
            return self._ack(self._received, now)
        self._progress(now)  # keep waiting for the rest of the window
        return []

    def fast(self, datagram: bytes, now: float) -> bytes | None:
        """The common case, in fewer steps: ``datagram`` is the next full DATA block (in
        lock-step, or inside a window). Returns its ACK, ``b""`` when a window goes on without
        one, or None when this is not that case (then call :meth:`receive`, which handles
        everything). Same state changes as :meth:`receive`."""
        block = self._received + 1
        if (
            len(datagram) != self._full
            or datagram[1] != 3
            or datagram[0] != 0
            or self.done
            or self._gap_acked
            or ((datagram[2] << 8) | datagram[3]) != block & 0xFFFF
        ):
            return None
        self._write(datagram[4:])
        self._received = block
        self.stats.blocks = block
        self.stats.size += len(datagram) - 4
        windowsize = self.options.windowsize
        if windowsize != 1:
            self._in_window += 1
            if self._in_window < windowsize:
                self._tries = 0
                self._wait = self.base_timeout
                self.deadline = now + self.base_timeout
                return b""
            self._in_window = 0
        ack = _HEAD.pack(4, block & 0xFFFF)
        self._acked = block
        self._last = [ack]
        self._tries = 0
        self._wait = self.base_timeout
        self.deadline = now + self.base_timeout
        return ack

    @property
    def _full(self) -> int:
        return self.options.blksize + 4

    # An I/O loop may run plain lock-step itself, in a tight loop of its own, and hand the
    # result back: lockstep_begin() says whether and from which block, lockstep_end() applies
    # what the loop did. The loop must do exactly what fast() does for each block.

    def lockstep_begin(self) -> int | None:
        """The next block number (not wrapped) when plain lock-step is under way, else None.
        ``sink`` is where the loop writes the blocks."""
        if self.done or self.failed or self.options.windowsize != 1 or self._received < 1:
            return None
        return self._received + 1

    @property
    def sink(self) -> Callable[[bytes], object]:
        return self._write

    def lockstep_end(self, received: int, size: int, acked_at: float) -> None:
        """The loop wrote blocks up to ``received`` (``size`` bytes in all) and sent the ACK
        of ``received`` at ``acked_at`` (its clock)."""
        if received == self._received:
            return
        self._received = received
        self.stats.blocks = received
        self.stats.size += size
        self._acked = received
        self._last = [_HEAD.pack(4, received & 0xFFFF)]
        self._tries = 0
        self._wait = self.base_timeout
        self.deadline = acked_at + self.base_timeout

    def _resend_ack(self, now: float) -> list[bytes]:
        if self.done:
            return list(self._last)
        return self._ack(self._received, now)

    def _resend(self) -> list[bytes]:
        # Once DATA flows, the sender alone retransmits (its timer; RFC 1123 4.2.3.1): an ACK
        # repeated on our timer would be a duplicate it must ignore, and some senders
        # (tftp-hpa) restart their own timer on every packet, so repeating it would keep
        # them from ever resending the lost DATA. The timer only counts down to giving up.
        # Before the first DATA the request, OACK or ACK 0 is sent again: the peer waits.
        # With a window (RFC 7440) the receiver does ACK on its timer, the last block that
        # arrived in order: its count of the window can be offset from the sender's (after a
        # gap report the sender did not take, it fills the rest of its old window and waits),
        # and then all of that window is here, unacknowledged, and each resend of it is a
        # duplicate: without this ACK both sides would wait until they give up.
        if self._received:
            if self.options.windowsize > 1 and not self.done:
                self._in_window = 0
                self._acked = self._received
                self._last = [_HEAD.pack(4, self._received & 0xFFFF)]
                return list(self._last)
            return []
        return list(self._last)

    def _check_tsize(self) -> None:
        tsize = self.options.tsize
        if tsize is not None and self.stats.size != tsize and self._checks_tsize:
            raise MalformedPacket(
                f"the transfer ended after {self.stats.size} bytes, but tsize said {tsize}",
                ErrorCode.DISK_FULL if self.stats.size > tsize else ErrorCode.NOT_DEFINED,
            )

    _checks_tsize = True


class ClientRead(_Receiver):
    """A client's read (RRQ): receives the file.

    Args:
        filename: the remote name.
        write: where the file's bytes go (already netascii-decoded if you wrap it).
        options: what to ask for; the server may answer fewer (fallback to RFC 1350 defaults
            when it ignores the options and answers DATA 1 directly).
        mode: octet or netascii.
        timeout: seconds before the first retransmission.
        retries: retransmissions before :class:`TransferTimeout`.
    """

    def __init__(
        self,
        filename: str,
        write: Callable[[bytes], object],
        *,
        options: Options = Options(),
        mode: str = Mode.OCTET,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(write, timeout=timeout, retries=retries)
        self.asked = options
        self.mode = mode
        self.request = Request(
            Opcode.RRQ, filename, mode, options.request_pairs(send_tsize=mode == Mode.OCTET)
        )
        self._checks_tsize = mode == Mode.OCTET
        self.negotiated = False  # True once an OACK was accepted
        self.locked = False  # True once the server's first answer arrived (its TID is known)

    def start(self, now: float) -> list[bytes]:
        return self._send([encode(self.request)], now)

    def fast(self, datagram: bytes, now: float) -> bytes | None:
        return super().fast(datagram, now) if self.locked else None

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        if len(datagram) >= 4 and datagram[1] == Opcode.DATA and datagram[0] == 0:
            if not self.locked:
                self.locked = True
                self.options = Options(tsize=self.options.tsize)  # options ignored: RFC 1350
            return self._on_data((datagram[2] << 8) | datagram[3], datagram[4:], now)
        packet = decode(datagram)
        self._error_packet(packet)
        if isinstance(packet, OptionAck):
            if not self.locked:
                self.locked = True
                self.negotiated = True
                self.options = accept_oack(self.asked, packet, reading=True)
                return self._ack(0, now)
            if self._received == 0:  # our ACK 0 was lost: the server sent its OACK again
                self.stats.duplicates += 1
                return self._ack(0, now)
            return []
        raise MalformedPacket(f"unexpected {type(packet).__name__} packet while reading")


class ClientWrite(_Sender):
    """A client's write (WRQ): sends the file from ``read``. ``options.tsize`` (the file's
    size, octet mode) is sent so the server can refuse a file too large for it."""

    def __init__(
        self,
        filename: str,
        read: Callable[[int], bytes],
        *,
        options: Options = Options(),
        mode: str = Mode.OCTET,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(read, timeout=timeout, retries=retries)
        self.asked = options
        self.mode = mode
        send_tsize = options.tsize is not None and mode == Mode.OCTET
        self.request = Request(
            Opcode.WRQ, filename, mode, options.request_pairs(send_tsize=send_tsize)
        )
        self.negotiated = False
        self.locked = False

    def start(self, now: float) -> list[bytes]:
        return self._send([encode(self.request)], now)

    def fast(self, datagram: bytes, now: float) -> bytes | None:
        return super().fast(datagram, now) if self.locked else None

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        if len(datagram) == 4 and datagram[0] == 0 and datagram[1] == Opcode.ACK:
            wire = (datagram[2] << 8) | datagram[3]
            if not self.locked:
                if wire != 0:
                    raise MalformedPacket(f"the answer to a write request was ACK {wire}, not 0")
                self.locked = True
                self.options = Options(tsize=self.asked.tsize)  # options ignored: RFC 1350
                return self._begin_data(now)
            return self._on_ack(wire, now)
        packet = decode(datagram)
        self._error_packet(packet)
        if isinstance(packet, OptionAck):
            if not self.locked:
                self.locked = True
                self.negotiated = True
                self.options = accept_oack(self.asked, packet, reading=False)
                return self._begin_data(now)
            self.stats.duplicates += 1  # a retransmitted OACK: DATA 1 goes on its own timer
            return []
        raise MalformedPacket(f"unexpected {type(packet).__name__} packet while writing")


class ServerRead(_Sender):
    """A server's answer to an RRQ: sends the file from ``read``.

    ``options`` and ``oack`` come from :func:`negotiate`; an empty ``oack`` means the first
    DATA goes out at once, otherwise the OACK does and DATA 1 waits for the client's ACK 0.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        *,
        options: Options,
        oack: tuple[tuple[str, str], ...] = (),
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(read, timeout=timeout, retries=retries)
        self.options = options
        self._oack = oack

    def start(self, now: float) -> list[bytes]:
        if self._oack:
            return self._send([encode(OptionAck(self._oack))], now)
        return self._begin_data(now)

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        if len(datagram) == 4 and datagram[0] == 0 and datagram[1] == Opcode.ACK:
            wire = (datagram[2] << 8) | datagram[3]
            if not self._sending:
                if wire != 0:
                    raise MalformedPacket(f"the answer to an OACK was ACK {wire}, not 0")
                return self._begin_data(now)
            return self._on_ack(wire, now)
        packet = decode(datagram)
        self._error_packet(packet)
        raise MalformedPacket(f"unexpected {type(packet).__name__} packet during a read")


class ServerWrite(_Receiver):
    """A server's answer to a WRQ: receives the file into ``write`` (OACK or ACK 0 first).

    With a negotiated ``options.tsize``, a transfer that ends at another size fails
    (:class:`MalformedPacket`), so the caller keeps no partial file.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        options: Options,
        oack: tuple[tuple[str, str], ...] = (),
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(write, timeout=timeout, retries=retries)
        self.options = options
        self._oack = oack

    def start(self, now: float) -> list[bytes]:
        if self._oack:
            return self._send([encode(OptionAck(self._oack))], now)
        return self._ack(0, now)

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        if len(datagram) >= 4 and datagram[0] == 0 and datagram[1] == Opcode.DATA:
            if self._received == 0 and (datagram[2] << 8) | datagram[3] != 1:
                self.stats.duplicates += 1  # only DATA 1 can come first
                return []
            return self._on_data((datagram[2] << 8) | datagram[3], datagram[4:], now)
        packet = decode(datagram)
        self._error_packet(packet)
        raise MalformedPacket(f"unexpected {type(packet).__name__} packet during a write")
