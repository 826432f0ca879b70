"""The asyncio :class:`Stream`: the same methods and semantics as the sync one, awaited.

Timeouts are per call (``timeout=`` seconds) or the stream's ``default_timeout``.

What a cancelled call has already done (trio's rule, kept for every receive method, at every
await, on every loop, with or without the C extension): a receive that is cancelled
(``Task.cancel``, ``asyncio.timeout``, ``wait_for``) or times out (``ReadTimeout``) consumed
nothing. Bytes that had already been handed to it when the cancellation came, in the same loop
iteration (a read future completed with them, or the kernel's copy into the buffer
``receive_into`` lent to the loop), are put back in front of the stream's buffer, so the next
read returns them first; ``ReadTimeout.partial`` is a copy. (After a cancelled
``receive_into``, the contents of its buffer are unspecified.) A send that is cancelled while
it waits for the peer to read has still handed all of its data to the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import types
from collections.abc import AsyncIterator, Awaitable, Generator
from types import TracebackType
from typing import Any, NoReturn

from .._accel import accelerate, speedups
from .._addr import format_sockaddr
from .._errors import (
    ClosedResourceError,
    IncompleteReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
)
from .._timeout import UNSET, check_timeout
from ..proto.framing import DEFAULT_MAX_MESSAGE, Framer, LineFramer
from ..proto.tls import TLSEngine
from .driver import DRIVEN, RUNNING, HandlerDriver, _enter_task, _leave_task
from .protocol import _NO_DATA, StreamProtocol, peer_error

__all__ = ["DEFAULT_RECEIVE_SIZE", "DrivenStream", "Stream"]

#: ``receive_some`` default, as in the sync stream.
DEFAULT_RECEIVE_SIZE = 64 * 1024
#: Seconds ``aclose`` waits for buffered writes to flush before it aborts the connection.
CLOSE_FLUSH_TIMEOUT = 5.0
_UNSET: float = UNSET  # 'not given': compared with `is` (socketkit/_timeout.py)
#: receive_into tries this many more loop iterations before it sleeps (see there) ...
SPIN_READS = 30
#: ... when its buffer is at least this large (a bulk reader).
SPIN_MIN_BUFFER = 64 * 1024
_SENT_EOF = "send: this side already ended its sending direction (send_eof)"
#: struct linger {l_onoff=1, l_linger=0}: close() sends RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)
_TIMED_OUT = object()


async def _sent() -> None:
    """What ``send_all`` returns when nothing is left to wait for (its data is with the
    transport already): a real coroutine, so ``create_task``, ``gather``, ``wait_for``... take
    it, and awaiting it twice raises ``RuntimeError`` as any coroutine does."""


# Named after the method, so a forgotten ``await`` is reported as the method's coroutine.
_sent.__qualname__ = "Stream.send_all"


@types.coroutine
def _driven() -> Generator[Any, Any, bytes]:
    """The driven handler's wait: yields DRIVEN; the protocol sends the bytes in."""
    return (yield DRIVEN)  # type: ignore[no-any-return]


async def _awaiting_some(read: Awaitable[bytes]) -> bytes:
    """The C fast path's driven read (``_speedups.DrivenRead``), as a coroutine."""
    return await read


async def _awaiting_into(read: Awaitable[int]) -> int:
    """The C fast path's ``receive_into`` (its direct read), as a coroutine."""
    return await read


_awaiting_some.__qualname__ = "DrivenStream.receive_some"
_awaiting_into.__qualname__ = "Stream.receive_into"


class Stream:
    """A connected byte stream on an asyncio loop (``socketkit.aio.connect`` / a handler)."""

    __slots__ = (
        "_closed",
        "_p",
        "_transport",
        "default_timeout",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: StreamProtocol,
        *,
        default_timeout: float | None = None,
    ) -> None:
        self._transport = transport  # the one reference kept besides the protocol
        self._p = protocol
        self._closed = False
        self.default_timeout = default_timeout

    # -- properties -------------------------------------------------------------------------

    @property
    def local_address(self) -> str:
        """Our end, e.g. ``127.0.0.1:5000`` or ``unix:/path`` (computed on use: idle
        connections keep no strings)."""
        return format_sockaddr(self._transport.get_extra_info("sockname"))

    @property
    def peer_address(self) -> str:
        """The peer's end, formatted like :attr:`local_address`."""
        return format_sockaddr(self._transport.get_extra_info("peername"))

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (for options only)."""
        sock: socket.socket = self._transport.get_extra_info("socket")
        return sock

    @property
    def tls(self) -> TLSEngine | None:
        return self._p.tls

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def transport(self) -> asyncio.Transport:
        return self._transport

    # -- waiting ----------------------------------------------------------------------------

    async def _wait(self, timeout: float | None) -> None:
        """Wait for the protocol to signal data, EOF or an error. Raises TimeoutError."""
        waiter = self._p.new_read_waiter()
        if timeout is None:
            await waiter
            return
        handle = asyncio.get_running_loop().call_later(max(0.0, timeout), self._p.expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._p._read_waiter = None

    def _timeout(self, timeout: float) -> float | None:
        return self.default_timeout if timeout is _UNSET else check_timeout(timeout)

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - asyncio.get_running_loop().time()

    def _deadline(self, timeout: float) -> float | None:
        t = self._timeout(timeout)
        return None if t is None else asyncio.get_running_loop().time() + t

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the stream is closed")

    # -- receiving --------------------------------------------------------------------------

    async def receive_some(
        self, max_bytes: int = DEFAULT_RECEIVE_SIZE, *, timeout: float = _UNSET
    ) -> bytes:
        """Between 1 and ``max_bytes`` bytes; ``b""`` only at EOF. See the sync ``Stream``.

        On the hot path (nothing buffered, no timeout) the protocol completes the read's
        future with the bytes object it received. Cancelled (or timed out) it consumes
        nothing, even when those bytes had already been handed to it: they go back in front
        of the stream's buffer and the next read returns them.
        """
        if self._closed:
            raise ClosedResourceError("the stream is closed")
        p = self._p
        if not len(p.buffer) and not p.eof and timeout is _UNSET and self.default_timeout is None:
            waiter = p.new_read_waiter(max_bytes)
            try:
                return await waiter  # type: ignore[no-any-return]
            except BaseException:
                p.end_read(waiter, cancelled=True)
                raise
        return await self._receive_some(max_bytes, timeout)

    async def _receive_some(self, max_bytes: int, timeout: float) -> bytes:
        p = self._p
        deadline = self._deadline(timeout)
        # A wake-up is not always data: a partial TLS record wakes us with nothing to read.
        while not len(p.buffer) and not p.eof:
            try:
                await self._wait(self._remaining(deadline))
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out") from exc
        buffer = p.buffer  # after the wait: the first bytes replace the shared empty buffer
        if not len(buffer):
            err = peer_error(p)
            if err is not None:
                raise err
            return b""
        data = buffer.take(max_bytes)
        if p.reading_paused:
            p.reader_consumed()
        return data

    async def receive_into(self, buffer: bytearray | memoryview, *, timeout: float = _UNSET) -> int:
        """Receive into ``buffer``; the count, 0 only at EOF. When nothing is buffered the
        kernel writes straight into ``buffer`` (no copy).

        Cancelled or timed out, it consumes nothing: bytes that had already landed in
        ``buffer`` are copied back to the stream's buffer and the next read returns them
        first (``buffer``'s contents are then unspecified)."""
        self._check_open()
        p = self._p
        if p.tls is None and not len(p.buffer) and not p.eof:
            count = self._read_now(memoryview(buffer).cast("B"))
            if count is not None:
                return count
        return await self._receive_into_waiting(buffer, timeout)

    async def _receive_into_waiting(
        self, buffer: bytearray | memoryview, timeout: float = _UNSET
    ) -> int:
        """``receive_into`` once nothing could be read at once: lend ``buffer`` and wait."""
        self._check_open()
        p = self._p
        target = memoryview(buffer).cast("B")
        if p.tls is None and len(target) >= SPIN_MIN_BUFFER:
            # A bulk reader found the socket empty; in a transfer, more arrives within
            # microseconds. Try again for a few loop iterations (every other callback runs in
            # between) before sleeping in epoll: waking a sleeping reader costs the sender
            # more than these tries cost us (docs/design.md, "bulk reads").
            # Lent meanwhile, so what the loop itself reads lands in ``buffer`` too (no copy).
            p.lend(target)
            try:
                for _ in range(SPIN_READS):
                    await asyncio.sleep(0)
                    if p._user_count or len(p.buffer) or p.eof or self._closed:
                        break
                    count = self._read_now(target)
                    if count is not None:
                        return count
            except BaseException:
                # Cancelled: what the loop had read into ``buffer`` meanwhile stays ours.
                p.unread(target[: p.take_lent()])
                raise
            finally:
                lent = p.take_lent()
            if lent:
                return lent
        deadline = self._deadline(timeout)
        # Loop: a wake-up is not always data (a partial TLS record wakes us with nothing).
        while not len(p.buffer) and not p.eof:
            if p.tls is None:
                p.lend(target)
            try:
                await self._wait(self._remaining(deadline))
            except BaseException as exc:
                # Cancelled or timed out, perhaps after bytes landed in ``buffer`` in the same
                # loop iteration: they go back in front of the stream's buffer (the call
                # consumed nothing; the next read returns them first).
                p.unread(target[: p.take_lent()])
                if isinstance(exc, TimeoutError):
                    raise ReadTimeout("receive timed out") from exc
                raise
            count = p.take_lent()
            if count:
                return count
        if len(p.buffer):
            count = p.buffer.take_into(target)
            p.reader_consumed()
            return count
        err = peer_error(p)
        if err is not None:
            raise err
        return 0

    def _read_now(self, target: memoryview) -> int | None:
        """Try one non-blocking read straight into ``target``; ``None`` if nothing is there.

        A bulk reader usually finds data already waiting: reading it now skips a trip through
        the event loop (an epoll wake-up and a task switch per read), which is what makes
        asyncio reads slower than a blocking ``recv_into``. The transport stays the owner of the
        socket; it simply finds less to read.
        """
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return None
        try:
            count = os.readv(sock.fileno(), [target])
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._read_failed(exc)
        except ValueError:
            return None  # a socket the transport already closed: let the slow path say so
        if count == 0:
            self._p.eof = True  # the transport will see the same EOF on its next read
        return count

    def _read_failed(self, exc: OSError) -> NoReturn:
        """A read of our own failed: the connection is broken; say so now and from now on."""
        p = self._p
        if p.error is None:
            p.error = exc
        p.eof = True
        err = peer_error(p)
        assert err is not None
        raise err from exc

    async def _fill(self, deadline: float | None, want: int = 0) -> bool:
        """Wait for more bytes; False at EOF. ``want``: how many must fit before pausing."""
        p = self._p
        if p.eof:
            err = peer_error(p)
            if err is not None and not len(p.buffer):
                raise err
            return False
        p.want = want
        before = len(p.buffer)
        try:
            while len(p.buffer) == before and not p.eof:
                await self._wait(self._remaining(deadline))
        finally:
            p.want = 0
        if len(p.buffer) > before:
            return True
        err = peer_error(p)  # broke while we waited: an error, not a clean EOF
        if err is not None:
            raise err
        return not p.eof

    async def receive_exactly(self, count: int, *, timeout: float = _UNSET) -> bytes:
        """Exactly ``count`` bytes. Raises ``IncompleteReadError`` (with ``partial``) at EOF,
        ``ReadTimeout`` (bytes stay buffered, ``partial`` is a copy) when time runs out."""
        self._check_open()
        p = self._p
        deadline = self._deadline(timeout)
        while len(p.buffer) < count:
            try:
                more = await self._fill(deadline, count)
            except TimeoutError as exc:
                raise ReadTimeout(
                    f"receive timed out with {len(p.buffer)} of {count} bytes",
                    partial=p.buffer.peek(),
                ) from exc
            if not more:
                raise IncompleteReadError(p.buffer.take_all(), count)
        data = p.buffer.take(count)
        p.reader_consumed()
        return data

    async def receive_until(
        self,
        delimiter: bytes = b"\n",
        *,
        max_size: int = DEFAULT_MAX_MESSAGE,
        include_delimiter: bool = False,
        timeout: float = _UNSET,
    ) -> bytes:
        """Bytes up to ``delimiter``; errors as the sync ``Stream.receive_until``."""
        self._check_open()
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        p = self._p
        deadline = self._deadline(timeout)
        while True:
            index = p.buffer.find(delimiter)
            if index >= 0:
                if index > max_size:
                    raise RemoteProtocolError(
                        f"no {delimiter!r} within {max_size} bytes", p.buffer.take_all()
                    )
                data = p.buffer.take(index + len(delimiter))
                p.reader_consumed()
                return data if include_delimiter else data[: -len(delimiter)]
            if len(p.buffer) >= max_size + len(delimiter):  # one in range would be here
                raise RemoteProtocolError(
                    f"no {delimiter!r} within {max_size} bytes", p.buffer.take_all()
                )
            try:
                more = await self._fill(deadline, max_size + len(delimiter))
            except TimeoutError as exc:
                raise ReadTimeout(
                    f"receive timed out waiting for {delimiter!r}", partial=p.buffer.peek()
                ) from exc
            if not more:
                raise IncompleteReadError(p.buffer.take_all(), None)

    async def receive_line(
        self, *, max_size: int = DEFAULT_MAX_MESSAGE, timeout: float = _UNSET
    ) -> bytes:
        """One line without ``\\n`` (and a ``\\r`` before it)."""
        line = await self.receive_until(b"\n", max_size=max_size, timeout=timeout)
        return line[:-1] if line.endswith(b"\r") else line

    async def iter_messages(
        self, framer: Framer | None = None, *, timeout: float = _UNSET
    ) -> AsyncIterator[bytes]:
        """Yield framed messages until EOF (lines by default); see the sync ``Stream``."""
        framer = framer if framer is not None else LineFramer(strip_cr=True)
        p = self._p
        if len(framer.buffer):  # bytes fed to the framer earlier come first
            framer.buffer.append(p.buffer.take_all())
            p.buffer = framer.buffer
        while True:
            # Parse the stream's own buffer in place (the protocol may have replaced it):
            # bytes not yet framed stay in the stream, so a loop that stops early loses nothing.
            framer.buffer = p.buffer
            message = framer.next_message()
            if message is not None:
                if p.reading_paused:
                    p.reader_consumed()
                yield message
                continue
            try:
                more = await self._fill(self._deadline(timeout))
            except TimeoutError as exc:
                raise ReadTimeout("receive timed out waiting for a message") from exc
            if not more:  # EOF: what is left (in place) is an unterminated last message
                framer.buffer = p.buffer
                last = framer.check_eof()
                if last is not None:
                    yield last
                return

    def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for line in stream``: lines without their endings, until EOF."""
        return self.iter_messages()

    # -- sending ----------------------------------------------------------------------------

    def send_all(
        self, data: bytes | bytearray | memoryview, *, timeout: float = _UNSET
    ) -> Awaitable[None]:
        """Send all of ``data``: ``await stream.send_all(data)``. It is handed to the transport
        at once; the await waits only while the transport's buffer is above its high-water
        mark (the peer reads slower than we write). Raises ``BrokenStreamError`` if the
        connection broke, ``WriteTimeout`` if the peer does not read within the timeout.
        """
        if self._closed:
            raise ClosedResourceError("the stream is closed")
        p = self._p
        transport = self._transport
        if p.error is not None or transport.is_closing():
            err = peer_error(p)
            raise err if err is not None else ClosedResourceError("the connection is closed")
        if p.tls is not None:
            if p.tls.eof_sent:
                raise ClosedResourceError(_SENT_EOF)
            p.tls.write(data)
            transport.write(p.tls.data_to_send())
        else:
            try:
                transport.write(data)
            except RuntimeError as exc:  # "Cannot call write() after write_eof()"
                raise ClosedResourceError(_SENT_EOF) from exc
        if not p.write_paused:
            return _sent()
        return self._drain(len(data), timeout)

    async def _drain(self, size: int, timeout: float) -> None:
        p = self._p
        t = self._timeout(timeout)
        if t is None:
            await p.drain()
            return
        try:
            await asyncio.wait_for(p.drain(), t)
        except TimeoutError as exc:
            raise WriteTimeout(
                "send timed out: the peer is not reading",
                sent=size - self._transport.get_write_buffer_size(),
            ) from exc

    async def send_message(
        self, message: bytes | bytearray | memoryview, framer: Framer, *, timeout: float = _UNSET
    ) -> None:
        await self.send_all(framer.encode(message), timeout=timeout)

    async def send_eof(self) -> None:
        """Half-close (``close_notify`` first over TLS); receiving goes on."""
        self._check_open()
        p = self._p
        if p.tls is not None:
            if p.tls.eof_sent:
                return
            p.tls.send_eof()
            out = p.tls.data_to_send()
            if out:
                self._transport.write(out)
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()
        await p.drain()

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close without waiting (buffered writes are still flushed by the transport)."""
        if not self._closed:
            self._closed = True
            self._transport.close()

    async def aclose(self) -> None:
        """Close and wait (up to 5 s) for buffered writes to flush; then abort. Idempotent."""
        self.close()
        waiter = self._p.closed_waiter()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), CLOSE_FLUSH_TIMEOUT)
        except TimeoutError:
            self._transport.abort()

    def abort(self) -> None:
        """Close at once with a TCP reset (SO_LINGER 0), dropping unsent data."""
        self._closed = True
        sock = self._transport.get_extra_info("socket")
        if sock is not None and not self._transport.is_closing():
            # ValueError: uvloop's pseudo-socket of an already closed transport (fd -1).
            with contextlib.suppress(OSError, ValueError):
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self._transport.abort()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        tls = " tls" if self._p.tls else ""
        return f"<aio.Stream {self.local_address} -> {self.peer_address}{tls} {state}>"


class DrivenStream(Stream):
    """The stream of a server connection whose handler the protocol drives (``driver.py``).

    Its ``receive_some`` is a coroutine: awaited by the handler itself (the usual case), it
    waits with no future and the protocol sends the bytes in; awaited anywhere else (in
    another task, through ``asyncio.wait_for``...) it is the ordinary receive. Few locals on
    purpose: an idle connection keeps this coroutine, so its frame is memory per connection.
    """

    __slots__ = ()

    async def receive_some(
        self, max_bytes: int = DEFAULT_RECEIVE_SIZE, *, timeout: float = _UNSET
    ) -> bytes:
        """Between 1 and ``max_bytes`` bytes; ``b""`` only at EOF. See the sync ``Stream``."""
        if self._closed:
            raise ClosedResourceError("the stream is closed")
        p = self._p
        if (
            p.driver._waiting is RUNNING  # type: ignore[union-attr]
            and timeout is _UNSET
            and self.default_timeout is None
            and (p.buffer is _NO_DATA or not len(p.buffer))
            and not p.eof
            and p._read_waiter is None
        ):
            if p.reading_paused:
                p.reader_consumed()
            p._some = max_bytes
            p._read_waiter = DRIVEN
            return await _driven()
        return await self._receive_some(max_bytes, timeout)


# The per-message path in C where the extension is built (_accel.py, _speedups.c): the
# handler's receive_some and send_all, receive_into's first read, the protocol's delivery and
# the driver's step.
if speedups is not None:
    speedups.configure_aio(
        stream=Stream,
        protocol=StreamProtocol,
        driver=HandlerDriver,
        driven=DRIVEN,
        running=RUNNING,
        no_data=_NO_DATA,
        done=_sent,
        awaiting_some=_awaiting_some,
        awaiting_into=_awaiting_into,
        unset=_UNSET,
        enter_task=_enter_task,
        leave_task=_leave_task,
        cancelled_error=asyncio.CancelledError,
    )
    accelerate(Stream, "send_all", "AIO_SEND_ALL")
    accelerate(Stream, "receive_into", "AIO_RECEIVE_INTO")
    accelerate(DrivenStream, "receive_some", "AIO_RECEIVE_SOME")
    accelerate(StreamProtocol, "data_received", "DATA_RECEIVED")
    accelerate(HandlerDriver, "_step", "STEP")
