"""The asyncio side's only transport-facing code: one protocol class in two read modes.

* :class:`StreamProtocol` receives with ``data_received``: the fastest path on uvloop (whose
  reads land in its own buffer), and on the hot path a waiting ``receive_some`` gets the bytes
  object itself.
* :class:`BufferedStreamProtocol` receives with ``get_buffer``/``buffer_updated`` into the
  stream's :class:`ByteBuffer` tail, or, when a ``receive_into`` waits with nothing buffered,
  into the caller's own buffer (zero copies, like ``sock.recv_into``). It is the mode from the
  start on asyncio's own loop, where ``data_received`` costs a fresh 256 KiB object per read
  (docs/design.md, trap 2), and a connection switches to it (``use_buffered``) at its first
  ``receive_into``.

Flow control bounds memory: reading pauses once ``high_water`` bytes wait unread (or more, if a
pending ``receive_exactly`` asked for more) and resumes when the reader catches up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._errors import BrokenStreamError, SocketkitError, TLSError
from ..proto.buffer import DEFAULT_CHUNK, ByteBuffer
from ..proto.tls import TLSEngine
from .driver import DRIVEN, HandlerDriver

#: Unread bytes held per connection before reading pauses (per-connection memory bound).
DEFAULT_HIGH_WATER = 256 * 1024
#: The buffer of every connection that has received nothing yet; never written to.
_NO_DATA = ByteBuffer()


class StreamProtocol(asyncio.BaseProtocol):
    """Receives (``data_received``) into a :class:`ByteBuffer`; wakes one waiting reader;
    tracks write pauses. Not an ``asyncio.Protocol`` subclass: uvloop would then refuse the
    buffered variant's ``get_buffer``."""

    __slots__ = (
        "_closed_waiter",
        "_drain_waiter",
        "_lent_user",
        "_read_waiter",
        "_some",
        "_user_count",
        "_user_view",
        "buffer",
        "driver",
        "eof",
        "error",
        "lost",
        "reading_paused",
        "tls",
        "transport",
        "want",
        "write_paused",
    )

    #: Unread bytes at which reading pauses (a class attribute: no per-connection slot).
    high_water = DEFAULT_HIGH_WATER
    #: The class this connection switches to for zero-copy reads (set below each class).
    buffered_class: type[StreamProtocol]

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # A server connection's handler, resumed here when its read waiter completes.
        self.driver: HandlerDriver | None = None
        # Shared and empty until the first byte arrives: idle connections own no buffer.
        self.buffer = _NO_DATA
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.want = 0  # bytes a pending read needs buffered (may exceed high_water)
        self.tls: TLSEngine | None = None
        # A Future, DRIVEN (a driven handler waits in receive_some), or None.
        self._read_waiter: object = None
        # When a receive_some is waiting: its max_bytes. The protocol then completes the
        # waiter with the data itself, so the reader needs no coroutine frame of its own.
        self._some: int | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self._user_view: memoryview | None = None
        self._user_count = 0
        self._lent_user = False
        self.reading_paused = False
        self.write_paused = False

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            self.tls.receive_data(data)
            self._pump_tls()
            self._received()
            return
        some = self._some
        if some is not None:
            # The hot path: a receive_some waits (so nothing is buffered): it gets the bytes
            # object itself, no copy, and its handler runs now.
            waiter = self._read_waiter
            if waiter is DRIVEN or (isinstance(waiter, asyncio.Future) and not waiter.done()):
                self._some = None
                if len(data) <= some:
                    if waiter is DRIVEN:  # _deliver, inlined: once per message
                        self._read_waiter = None
                        self.driver._step(data, None)  # type: ignore[union-attr]
                    else:
                        self._deliver(waiter, data)
                    return
                self._stash(data[some:])  # first: the handler may read again at once
                self._deliver(waiter, data[:some])
                self._received()
                return
        self._stash(data)
        self._received()

    def _stash(self, data: bytes) -> None:
        buffer = self.buffer
        if buffer is _NO_DATA:
            buffer = self.buffer = ByteBuffer()
        buffer.append(data)

    def _deliver(self, waiter: object, data: bytes) -> None:
        """Complete the waiting ``receive_some`` with ``data`` and resume its handler."""
        if waiter is DRIVEN:
            self._read_waiter = None
            assert self.driver is not None
            self.driver.send(data)
            return
        assert isinstance(waiter, asyncio.Future)
        waiter.set_result(data)
        if self.driver is not None:
            self.driver.resume(waiter)

    def cancel_driven_read(self) -> None:
        """The driven handler waiting in ``receive_some`` was cancelled: nothing waits now."""
        if self._read_waiter is DRIVEN:
            self._read_waiter = None
            self._some = None

    def _received(self) -> None:
        """After bytes were buffered: pause reading above the high-water mark; wake a reader."""
        buffer = self.buffer
        if len(buffer) >= self.high_water and len(buffer) >= self.want:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        if self.tls is not None:
            self.tls.receive_data(b"")
            self._pump_tls()
        self.eof = True
        self._wake()
        return True  # keep our write side open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        for waiter in (self._drain_waiter, self._closed_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the Stream ---------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._read_waiter
        if waiter is DRIVEN:
            self._wake_driven()
            return
        if not isinstance(waiter, asyncio.Future) or waiter.done():
            return
        self._complete(waiter)
        if self.driver is not None and waiter.done():
            self.driver.resume(waiter)

    def _wake_driven(self) -> None:
        driver = self.driver
        assert driver is not None and self._some is not None
        if len(self.buffer):
            data = self.buffer.take(self._some)
            self._read_waiter = self._some = None
            if self.reading_paused:
                self.reader_consumed()
            driver.send(data)
        elif self.eof:
            self._read_waiter = self._some = None
            err = peer_error(self)
            if err is None:
                driver.send(b"")
            else:
                driver.throw(err)

    def _complete(self, waiter: asyncio.Future[Any]) -> None:
        some = self._some
        if some is None:
            waiter.set_result(None)
        elif len(self.buffer):
            self._some = None
            waiter.set_result(self.buffer.take(some))
            if self.reading_paused:
                self.reader_consumed()
        elif self.eof:
            self._some = None
            err = peer_error(self)
            if err is None:
                waiter.set_result(b"")
            else:
                waiter.set_exception(err)

    def _pump_tls(self) -> None:
        """Move decrypted bytes into the buffer; send what the engine wants sent."""
        tls = self.tls
        assert tls is not None
        if tls.handshake_done:
            try:
                while True:
                    plain = tls.read()
                    if not plain:
                        if plain == b"":
                            self.eof = True
                        break
                    if self.buffer is _NO_DATA:
                        self.buffer = ByteBuffer()
                    self.buffer.append(plain)
            except TLSError as exc:
                self.error = exc
                self.eof = True
        out = tls.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def reader_consumed(self) -> None:
        """Called after the reader took bytes: resume reading below the high-water mark."""
        if self.reading_paused and len(self.buffer) < self.high_water // 2:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def new_read_waiter(self, some: int | None = None) -> asyncio.Future[Any]:
        """A future completed when data, EOF or an error arrives. With ``some`` (a byte
        count) it completes with up to that many bytes (``b""`` at EOF) instead of None."""
        if self.reading_paused:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        self._read_waiter = waiter
        self._some = some
        return waiter

    def expire(self, waiter: asyncio.Future[Any]) -> None:
        """A read timeout ran out: fail ``waiter`` with TimeoutError."""
        if not waiter.done():
            waiter.set_exception(TimeoutError())
            if self.driver is not None:
                self.driver.resume(waiter)

    def use_buffered(self) -> None:
        """Switch to BufferedProtocol reads for good (a ``receive_into`` reader)."""
        cls = self.buffered_class
        transport = self.transport
        if type(self) is cls or transport is None or transport.is_closing():
            return
        self.__class__ = cls
        transport.set_protocol(self)
        if not self.reading_paused:
            # uvloop picks its read callbacks when reading starts: restart it.
            transport.pause_reading()
            transport.resume_reading()

    def lend(self, view: memoryview) -> None:
        self.use_buffered()
        self._user_view = view
        self._user_count = 0

    def take_lent(self) -> int:
        """Bytes received straight into the lent buffer (0 if none); ends the loan."""
        count = self._user_count
        self._user_view = None
        self._user_count = 0
        return count

    def unread(self, data: bytes | bytearray | memoryview) -> None:
        """Put ``data`` back in front of the buffered bytes: a read that had received it was
        cancelled (or timed out) before it could return it, so the next read gets it first."""
        if not len(data):
            return
        if self.buffer is _NO_DATA:
            self.buffer = ByteBuffer()
        self.buffer.unread(data)

    def end_read(self, waiter: asyncio.Future[Any], cancelled: bool) -> None:
        """The read waiting on ``waiter`` ended without taking its result (``cancelled``):
        bytes the protocol had already completed it with go back in front of the buffer,
        and the protocol stops delivering into this wait."""
        if self._read_waiter is waiter:
            self._read_waiter = None
            self._some = None
        if cancelled and waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            data = waiter.result()
            if data:
                self.unread(data)

    async def drain(self) -> None:
        if self.error is not None:
            raise _broken(self.error)
        if self.write_paused and self.transport is not None and not self.transport.is_closing():
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiter = waiter
            try:
                await waiter
            finally:
                self._drain_waiter = None
            if self.error is not None:
                raise _broken(self.error)

    def closed_waiter(self) -> asyncio.Future[None]:
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
            if self.lost:
                self._closed_waiter.set_result(None)
        return self._closed_waiter


class BufferedStreamProtocol(StreamProtocol, asyncio.BufferedProtocol):
    """The same protocol receiving into memory it chooses (``get_buffer``): into the stream's
    buffer, or straight into the buffer a waiting ``receive_into`` lent (zero copies).

    Used from the start on asyncio's own loop, whose ``data_received`` path allocates a
    256 KiB object per read (docs/design.md, trap 2), and on uvloop from a connection's first
    ``receive_into`` on (``use_buffered``). On uvloop, ``data_received`` is the faster path
    for everything else: its reads land in uvloop's own buffer, and a bare BufferedProtocol
    echo server runs at 0.82-0.86x a bare Protocol one there (``benchmarks/bench_echo.py``).
    """

    __slots__ = ()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.tls is not None:
            if self.tls.receive_buffer is None:
                self.tls.receive_buffer = bytearray(DEFAULT_CHUNK)
            self._lent_user = False
            return memoryview(self.tls.receive_buffer)
        if self._user_view is not None and not len(self.buffer):
            self._lent_user = True
            return self._user_view
        self._lent_user = False
        buffer = self.buffer
        if buffer is _NO_DATA:
            buffer = self.buffer = ByteBuffer()
        return buffer.writable(DEFAULT_CHUNK)

    def buffer_updated(self, nbytes: int) -> None:
        if self.tls is None and not self._lent_user:
            # The hot path: bytes landed in our buffer; hand them straight to a waiting
            # receive_some (one future completion, nothing else).
            buffer = self.buffer
            buffer.commit(nbytes)
            waiter = self._read_waiter
            some = self._some
            if some is not None and (
                waiter is DRIVEN or (isinstance(waiter, asyncio.Future) and not waiter.done())
            ):
                self._some = None
                self._deliver(waiter, buffer.take(some))
                return
        elif self.tls is not None:
            assert self.tls.receive_buffer is not None
            self.tls.receive_data(self.tls.receive_buffer[:nbytes])
            self._pump_tls()
        elif self._lent_user:
            # Bytes went straight into the reader's buffer. Until the reader's task runs,
            # further reads of this loop iteration keep filling the rest of it: one wake-up
            # per burst, not per read.
            self._lent_user = False
            self._user_count += nbytes
            view = self._user_view
            if view is not None and nbytes < len(view):
                self._user_view = view[nbytes:]
            else:
                self._user_view = None
                if self.transport is not None and self._user_count >= DEFAULT_CHUNK:
                    # A bulk reader with a full buffer: leave the next bytes in the kernel
                    # until it lends again, rather than copy them through ours.
                    self.transport.pause_reading()
                    self.reading_paused = True
        self._received()


StreamProtocol.buffered_class = BufferedStreamProtocol


def protocol_class(loop: asyncio.AbstractEventLoop) -> type[StreamProtocol]:
    """The protocol to start a connection with on ``loop`` (see BufferedStreamProtocol)."""
    if type(loop).__module__.startswith("uvloop"):
        return StreamProtocol
    return BufferedStreamProtocol


def _broken(exc: BaseException) -> BrokenStreamError:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    err = BrokenStreamError(f"connection broken: {text}")
    err.__cause__ = exc
    return err


def peer_error(protocol: StreamProtocol) -> SocketkitError | None:
    """The error to raise once the buffer is drained, if the connection broke (not clean EOF).
    A TLS alert stays a ``TLSError``, as on the sync stream; an ``OSError`` is a broken stream."""
    if protocol.error is None:
        return None
    if isinstance(protocol.error, SocketkitError):
        return protocol.error
    return _broken(protocol.error)


def info(protocol: StreamProtocol, name: str) -> Any:
    return None if protocol.transport is None else protocol.transport.get_extra_info(name)
