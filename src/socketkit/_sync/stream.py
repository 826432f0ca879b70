"""The synchronous :class:`Stream`: a connected TCP or Unix stream socket, optionally TLS.

What it adds over a bare socket: ``send_all`` that finishes or says how far it got, reads that
keep partial data on timeout or EOF, bounded delimiter reads, framed-message iteration,
half-close (also over TLS), one error tree, and idempotent close.
"""

from __future__ import annotations

import errno
import math
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from .._accel import accelerate
from .._addr import format_sockaddr
from .._errors import (
    ClosedResourceError,
    IncompleteReadError,
    ReadTimeout,
    RemoteProtocolError,
    SocketkitError,
    TLSError,
    WriteTimeout,
    translate_os_error,
)
from .._timeout import UNSET, check_timeout
from ..proto.buffer import DEFAULT_CHUNK, ByteBuffer
from ..proto.framing import DEFAULT_MAX_MESSAGE, Framer, LineFramer
from ..proto.tls import TLSEngine

__all__ = ["DEFAULT_RECEIVE_SIZE", "Stream"]

#: ``receive_some`` default: 64 KiB, below glibc's mmap threshold (design.md trap 1).
DEFAULT_RECEIVE_SIZE = 64 * 1024
#: "No timeout" — wait as long as it takes.
_NO_TIMEOUT = None
_UNSET: float = UNSET  # 'not given': compared with `is` (socketkit/_timeout.py)
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_SENT_EOF = "send: this side already ended its sending direction (send_eof)"
#: ``struct linger {l_onoff=1, l_linger=0}``: close() sends RST and drops unsent data (socket(7)).
LINGER_RESET = struct.pack("ii", 1, 0)


class Stream:
    """A connected byte stream. Use :func:`socketkit.connect` or a server handler to get one.

    Every receive/send takes an optional ``timeout`` in seconds; without one, the stream's
    ``default_timeout`` applies (``None`` = wait forever). What a timeout leaves behind is
    documented on each method; in short, receiving never loses bytes.

    One thread may receive while another sends, each with its own timeout: a deadline belongs
    to its call. The socket stays blocking with no timeout of its own (a socket timeout is
    shared by every thread that uses it); a call with a deadline reads or writes with
    ``MSG_DONTWAIT`` and waits in ``poll`` until its own deadline.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        tls: TLSEngine | None = None,
        default_timeout: float | None = None,
    ) -> None:
        self._sock = sock
        self._tls = tls
        # TLS: one reader thread and one writer thread may use the stream at once, as with a
        # socket. The engine (an SSLObject) is not thread-safe, so every call into it holds
        # _tls_lock; ciphertext taken out under that lock is sent holding _send_lock, taken
        # before _tls_lock is let go, so records go out in the order they were made.
        self._tls_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._buffer = ByteBuffer()
        self._closed = False
        self._eof = False
        self._eof_sent = False  # send_eof() was called: sending is over
        self._default_timeout = default_timeout
        if sock.gettimeout() is not None:
            sock.settimeout(None)  # blocking: each call keeps its own deadline (see above)
        # True while a receive or send can go straight to the socket: plain TCP/Unix, nothing
        # buffered, no EOF yet, no default timeout. Kept up to date by _refresh().
        self._direct = False
        self._refresh()
        try:
            self.local_address = format_sockaddr(sock.getsockname())
            self.peer_address = format_sockaddr(sock.getpeername())
        except OSError as exc:
            raise translate_os_error(exc, "inspect the new connection") from exc

    # -- properties -------------------------------------------------------------------------

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (for setsockopt and friends; do not read or write it)."""
        return self._sock

    @property
    def tls(self) -> TLSEngine | None:
        """The TLS engine when this is a TLS stream (``tls.ssl_object`` for details)."""
        return self._tls

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- low-level helpers ------------------------------------------------------------------

    def _refresh(self) -> None:
        self._direct = (
            not self._closed
            and self._tls is None
            and not self._eof
            and not len(self._buffer)
            and self.default_timeout is None
        )

    @property
    def default_timeout(self) -> float | None:
        """Timeout of every operation that is not given its own (``None``: wait forever)."""
        return self._default_timeout

    @default_timeout.setter
    def default_timeout(self, value: float | None) -> None:
        self._default_timeout = value
        self._refresh()

    def _wait_ready(self, events: int, deadline: float | None) -> None:
        """Wait until the socket is ready for ``events`` (``POLLIN``/``POLLOUT``) by this call's
        own ``deadline`` (``None``: no limit); the builtin ``TimeoutError`` when it passes.
        Ready includes an error or hang-up: the read or write that follows reports it."""
        fd = self._sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        poller = select.poll()
        poller.register(fd, events)
        while True:
            if deadline is None:
                wait = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                wait = math.ceil(left * 1000)  # ms, rounded up: never wakes before the deadline
            if poller.poll(wait):  # (PEP 475: retried after a signal whose handler returned)
                return

    def _recv(self, size: int, deadline: float | None) -> bytes:
        """``recv`` by this call's deadline: what has arrived is taken even when the time is
        already up (a zero timeout polls). Socket errors propagate as ``OSError``."""
        sock = self._sock
        flags = 0 if deadline is None else socket.MSG_DONTWAIT
        while True:
            try:
                return sock.recv(size, flags)
            except BlockingIOError:  # (also a socket made non-blocking behind our back)
                self._wait_ready(_POLLIN, deadline)

    def _recv_into(self, view: memoryview | bytearray, deadline: float | None) -> int:
        """``recv_into`` by this call's deadline, as :meth:`_recv`."""
        sock = self._sock
        flags = 0 if deadline is None else socket.MSG_DONTWAIT
        while True:
            try:
                return sock.recv_into(view, 0, flags)
            except BlockingIOError:
                self._wait_ready(_POLLIN, deadline)

    def _deadline(self, timeout: float) -> float | None:
        t = self.default_timeout if timeout is _UNSET else check_timeout(timeout)
        return None if t is None else time.monotonic() + t

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the stream is closed")

    def _fill(self, deadline: float | None, minimum: int = 1) -> int:
        """Receive once into the buffer (at least ``minimum`` bytes of room).

        Returns the number of bytes received; 0 at EOF. Raises ``TimeoutError`` (builtin) when
        the deadline passes, for the caller to turn into ReadTimeout with its partial data.
        """
        if self._eof:
            return 0
        if self._tls is not None:
            return self._fill_tls(minimum, deadline)
        view = self._buffer.writable(max(minimum, DEFAULT_CHUNK))
        try:
            count = self._recv_into(view, deadline)
        except TimeoutError:
            raise
        except OSError as exc:
            raise self._error(exc, "receive") from exc
        finally:
            view.release()
        if count == 0:
            self._eof = True
        self._buffer.commit(count)
        return count

    def _fill_tls(self, minimum: int, deadline: float | None) -> int:
        tls = self._tls
        assert tls is not None
        while True:
            with self._tls_lock:
                plain = tls.read()
            if plain is None:
                try:
                    cipher = self._recv(max(minimum, DEFAULT_CHUNK), deadline)
                except TimeoutError:
                    raise
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
                self._tls_call(tls.receive_data, cipher, None)  # may owe the peer a reply
                continue
            if not plain:
                self._eof = True
            self._buffer.append(plain)
            return len(plain)

    def _tls_call(
        self,
        call: Callable[[bytes | bytearray | memoryview], None],
        data: bytes | bytearray | memoryview,
        deadline: float | None,
    ) -> None:
        """``call(data)`` on the TLS engine, then send the ciphertext it produced, in order."""
        assert self._tls is not None
        with self._tls_lock:
            call(data)
            out = self._tls.data_to_send()
            if not out:
                return
            self._send_lock.acquire()
        try:
            self._send_raw(out, deadline)
        finally:
            self._send_lock.release()

    def _send_raw(self, data: bytes | bytearray | memoryview, deadline: float | None) -> None:
        """Send all of ``data`` by this call's deadline (``None``: block until it is sent)."""
        view = memoryview(data).cast("B")
        sock = self._sock
        flags = 0 if deadline is None else socket.MSG_DONTWAIT
        sent = 0
        try:
            while sent < len(view):
                try:
                    sent += sock.send(view[sent:], flags)
                except BlockingIOError:  # (also a socket made non-blocking behind our back)
                    self._wait_ready(_POLLOUT, deadline)
        except TimeoutError as exc:
            raise WriteTimeout(
                f"send timed out after {sent} of {len(view)} bytes", sent=sent
            ) from exc
        except OSError as exc:
            raise self._error(exc, "send") from exc

    def _error(self, exc: OSError, action: str) -> SocketkitError:
        if self._closed:
            return ClosedResourceError(f"{action}: the stream was closed")
        if self._eof_sent and action == "send":  # EPIPE from our own half-close
            return ClosedResourceError(_SENT_EOF)
        return translate_os_error(exc, f"{action} ({self.peer_address})")

    # -- receiving --------------------------------------------------------------------------

    def receive_some(
        self, max_bytes: int = DEFAULT_RECEIVE_SIZE, *, timeout: float = _UNSET
    ) -> bytes:
        """Return between 1 and ``max_bytes`` bytes, waiting for at least one.

        Returns ``b""`` only at EOF (the peer called ``send_eof`` or closed).

        Raises:
            ReadTimeout: nothing arrived in time (``partial`` is ``b""``; nothing was lost).
            BrokenStreamError: the connection was reset.
        """
        if self._direct and timeout is _UNSET:
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                pass  # a socket made non-blocking behind our back: the waiting path polls
            except OSError as exc:
                raise self._error(exc, "receive") from exc
            else:
                if not data:
                    self._eof = True
                    self._direct = False
                return data
        try:
            return self._receive_some(max_bytes, timeout)
        finally:
            self._refresh()

    def _receive_some(self, max_bytes: int, timeout: float) -> bytes:
        self._check_open()
        if not len(self._buffer):
            if self._tls is None and not self._eof:
                try:
                    data = self._recv(max_bytes, self._deadline(timeout))
                except TimeoutError as exc:
                    raise ReadTimeout("receive timed out") from exc
                except OSError as exc:
                    raise self._error(exc, "receive") from exc
                if not data:
                    self._eof = True
                return data
            try:
                self._fill(self._deadline(timeout))
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out") from exc
        return self._buffer.take(max_bytes)

    def receive_into(self, buffer: bytearray | memoryview, *, timeout: float = _UNSET) -> int:
        """Receive into ``buffer`` (no allocation: the bulk-transfer path). Returns the count,
        0 only at EOF. Timeouts raise :class:`ReadTimeout` with nothing consumed."""
        if self._direct and timeout is _UNSET:
            try:
                count = self._sock.recv_into(buffer)
            except BlockingIOError:
                pass  # as in receive_some
            except OSError as exc:
                raise self._error(exc, "receive") from exc
            else:
                if not count:
                    self._eof = True
                    self._direct = False
                return count
        try:
            return self._receive_into(buffer, timeout)
        finally:
            self._refresh()

    def _receive_into(self, buffer: bytearray | memoryview, timeout: float) -> int:
        self._check_open()
        target = memoryview(buffer).cast("B")
        if len(self._buffer):
            return self._buffer.take_into(target)
        if self._tls is not None or self._eof:
            try:
                self._fill(self._deadline(timeout))
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out") from exc
            return self._buffer.take_into(target)
        try:
            count = self._recv_into(target, self._deadline(timeout))
        except TimeoutError as exc:
            raise ReadTimeout("receive timed out") from exc
        except OSError as exc:
            raise self._error(exc, "receive") from exc
        if count == 0:
            self._eof = True
        return count

    def receive_exactly(self, count: int, *, timeout: float = _UNSET) -> bytes:
        """Return exactly ``count`` bytes.

        Raises:
            IncompleteReadError: EOF came first; ``partial`` has every byte received.
            ReadTimeout: time ran out; ``partial`` is a copy of what had arrived, and those
                bytes stay in the stream, so the call can simply be repeated.
        """
        try:
            return self._receive_exactly(count, timeout)
        finally:
            self._refresh()

    def _receive_exactly(self, count: int, timeout: float) -> bytes:
        self._check_open()
        deadline = self._deadline(timeout)
        while len(self._buffer) < count:
            try:
                got = self._fill(deadline, count - len(self._buffer))
            except TimeoutError as exc:
                raise ReadTimeout(
                    f"receive timed out with {len(self._buffer)} of {count} bytes",
                    partial=self._buffer.peek(),
                ) from exc
            if got == 0:
                raise IncompleteReadError(self._buffer.take_all(), count)
        return self._buffer.take(count)

    def receive_until(
        self,
        delimiter: bytes = b"\n",
        *,
        max_size: int = DEFAULT_MAX_MESSAGE,
        include_delimiter: bool = False,
        timeout: float = _UNSET,
    ) -> bytes:
        """Return the bytes up to ``delimiter`` (excluded unless ``include_delimiter``).

        Raises:
            RemoteProtocolError: no delimiter within ``max_size`` bytes (``partial`` holds
                them; memory never grows past ``max_size`` plus one read).
            IncompleteReadError: EOF before the delimiter; ``partial`` has the bytes.
            ReadTimeout: time ran out; the bytes stay buffered (``partial`` is a copy).
        """
        try:
            return self._receive_until(delimiter, max_size, include_delimiter, timeout)
        finally:
            self._refresh()

    def _receive_until(
        self, delimiter: bytes, max_size: int, include_delimiter: bool, timeout: float
    ) -> bytes:
        self._check_open()
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        deadline = self._deadline(timeout)
        while True:
            index = self._buffer.find(delimiter)
            if index >= 0:
                if index > max_size:
                    raise RemoteProtocolError(
                        f"no {delimiter!r} within {max_size} bytes", self._buffer.take_all()
                    )
                data = self._buffer.take(index + len(delimiter))
                return data if include_delimiter else data[: -len(delimiter)]
            if len(self._buffer) >= max_size + len(delimiter):  # one in range would be here
                raise RemoteProtocolError(
                    f"no {delimiter!r} within {max_size} bytes", self._buffer.take_all()
                )
            try:
                got = self._fill(deadline)
            except TimeoutError as exc:
                raise ReadTimeout(
                    f"receive timed out waiting for {delimiter!r}", partial=self._buffer.peek()
                ) from exc
            if got == 0:
                raise IncompleteReadError(self._buffer.take_all(), None)

    def receive_line(
        self, *, max_size: int = DEFAULT_MAX_MESSAGE, timeout: float = _UNSET
    ) -> bytes:
        """One line without its ``\\n`` (a ``\\r`` before it is dropped too). Errors as
        :meth:`receive_until`; at EOF, ``IncompleteReadError`` with ``partial`` = the unterminated
        rest (``b""`` when the stream ended cleanly after a full line)."""
        line = self.receive_until(b"\n", max_size=max_size, timeout=timeout)
        return line[:-1] if line.endswith(b"\r") else line

    def iter_messages(
        self, framer: Framer | None = None, *, timeout: float = _UNSET
    ) -> Iterator[bytes]:
        """Yield framed messages until EOF (lines by default).

        ``framer`` is a :class:`~socketkit.LineFramer` or :class:`~socketkit.LengthPrefixFramer`.
        At EOF a line framer yields an unterminated last line; a length-prefix framer raises
        ``RemoteProtocolError`` if the stream ended inside a frame. ``timeout`` applies to each
        wait for data.
        """
        framer = framer if framer is not None else LineFramer(strip_cr=True)
        try:
            yield from self._iter_messages(framer, timeout)
        finally:
            self._refresh()

    def _iter_messages(self, framer: Framer, timeout: float) -> Iterator[bytes]:
        if len(framer.buffer):  # bytes fed to the framer earlier come first
            framer.buffer.append(self._buffer.take_all())
            self._buffer = framer.buffer
        # The framer parses the stream's own buffer in place: bytes not yet framed stay in
        # the stream, so a loop that stops early (break, timeout) loses nothing.
        framer.buffer = self._buffer
        while True:
            message = framer.next_message()
            if message is not None:
                self._refresh()  # the caller may use the stream before resuming us
                yield message
                continue
            try:
                got = self._fill(self._deadline(timeout))
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out waiting for a message") from exc
            if got == 0:
                last = framer.check_eof()
                if last is not None:
                    self._refresh()
                    yield last
                return

    def __iter__(self) -> Iterator[bytes]:
        """Iterate over lines (``\\n`` or ``\\r\\n``, without the ending) until EOF."""
        return self.iter_messages()

    # -- sending ----------------------------------------------------------------------------

    def send_all(self, data: bytes | bytearray | memoryview, *, timeout: float = _UNSET) -> None:
        """Send every byte of ``data`` (loops over partial sends).

        Raises:
            WriteTimeout: time ran out; ``sent`` says how many bytes went out. Close the stream.
            BrokenStreamError: the peer reset or closed the connection.
        """
        if self._direct and timeout is _UNSET:
            try:
                sent = self._sock.send(data)
            except BlockingIOError:  # a socket made non-blocking behind our back
                sent = 0
            except OSError as exc:
                raise self._error(exc, "send") from exc
            view = memoryview(data).cast("B")
            if sent < len(view):  # (a signal, or that socket): the rest, waiting as needed
                self._send_raw(view[sent:], None)
            return
        self._check_open()
        deadline = self._deadline(timeout)
        # (No _refresh() here: that is the reading side's state, kept by the reader's calls.)
        if self._tls is None:
            self._send_raw(data, deadline)
        else:
            if self._tls.eof_sent:
                raise ClosedResourceError(_SENT_EOF)
            self._tls_call(self._tls.write, data, deadline)

    def send_message(
        self, message: bytes | bytearray | memoryview, framer: Framer, *, timeout: float = _UNSET
    ) -> None:
        """Send one message framed by ``framer`` (e.g. a 4-byte length prefix)."""
        self.send_all(framer.encode(message), timeout=timeout)

    def send_eof(self) -> None:
        """Half-close: tell the peer we are done sending; receiving goes on.

        Over TLS this sends ``close_notify`` first. Calling it twice is harmless.
        """
        self._check_open()
        self._eof_sent = True
        try:
            if self._tls is not None:
                if self._tls.eof_sent:
                    return
                tls = self._tls
                self._tls_call(lambda _: tls.send_eof(), b"", None)
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._error(exc, "send EOF") from exc
        except TLSError:
            raise

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent). Unread data is discarded."""
        if self._closed:
            return
        self._closed = True
        self._direct = False
        self._sock.close()

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0) instead of a FIN."""
        if self._closed:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
        self.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        tls = " tls" if self._tls else ""
        return f"<Stream {self.local_address} -> {self.peer_address}{tls} {state}>"


# receive_some and send_all's direct branches, done in C where the extension is built.
accelerate(Stream, "receive_some", "SYNC_RECEIVE_SOME")
accelerate(Stream, "send_all", "SYNC_SEND_ALL")
