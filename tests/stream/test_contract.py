"""The stream contract: every implementation (sync, asyncio, uvloop; TCP, TLS, Unix) passes
the same tests, written once against the harness in ``contract.py``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time

import pytest

from socketkit import (
    BrokenStreamError,
    ClosedResourceError,
    IncompleteReadError,
    LengthPrefixFramer,
    LineFramer,
    ReadTimeout,
    RemoteProtocolError,
    SocketkitError,
    WriteTimeout,
)
from socketkit.proto.framing import Framer

from .contract import AStream, Harness

MiB = 1024 * 1024


def test_ordering(harness: Harness) -> None:
    """Many small writes arrive in order, in both directions, whatever the chunking."""
    messages = [b"%06d;" % i for i in range(3000)]
    expected = b"".join(messages)

    async def body() -> None:
        async with harness.pair() as (client, server):
            for i in range(0, len(messages), 100):
                await client.send_all(b"".join(messages[i : i + 100]))
            got = await server.receive_exactly(len(expected))
            assert got == expected
            await server.send_all(expected)
            back = bytearray()
            while len(back) < len(expected):
                back += await client.receive_some(777)
            assert bytes(back) == expected

    harness.run(body)


def test_binary_safety(harness: Harness) -> None:
    """All 256 byte values (NUL, CR, LF, 0xFF...) pass unchanged both ways."""
    payload = bytes(range(256)) * 64 + bytes(range(255, -1, -1))

    async def body() -> None:
        async with harness.pair() as (client, server):
            await client.send_all(payload)
            assert await server.receive_exactly(len(payload)) == payload
            await server.send_all(memoryview(bytearray(payload)))
            assert await client.receive_exactly(len(payload)) == payload

    harness.run(body)


def test_half_close(harness: Harness) -> None:
    """``send_eof``: the peer reads EOF and can still answer; the answer arrives in full."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            await client.send_all(b"request")
            await client.send_eof()
            await client.send_eof()  # twice is harmless
            assert await server.receive_to_eof() == b"request"
            assert await server.receive_some() == b""  # EOF stays EOF
            await server.send_all(b"reply after your EOF")
            await server.send_eof()
            assert await client.receive_to_eof() == b"reply after your EOF"
            # Sending after our own EOF is a local mistake, the same error everywhere.
            with pytest.raises(ClosedResourceError, match="send_eof"):
                await client.send_all(b"too late")

    harness.run(body)


def test_large_write(harness: Harness) -> None:
    """One 64 MiB ``send_all`` with a concurrent reader: every byte, in order (sha256)."""
    size = 64 * MiB
    payload = random.Random(2).randbytes(size)
    digest = hashlib.sha256(payload).hexdigest()

    async def body() -> None:
        async with harness.pair() as (client, server):

            async def reader() -> tuple[int, str]:
                h = hashlib.sha256()
                buf = bytearray(256 * 1024)
                total = 0
                while True:
                    n = await server.receive_into(buf, timeout=30)  # the timed path
                    if n == 0:
                        return total, h.hexdigest()
                    h.update(memoryview(buf)[:n])
                    total += n

            task = asyncio.create_task(reader())
            await client.send_all(payload)
            await client.send_eof()
            total, got = await task
            assert total == size
            assert got == digest

    harness.run(body)


def test_concurrent_clients(harness: Harness) -> None:
    """200 clients connected at once, each gets its own echo. Every handler waits until all
    200 are running before it echoes, so a server that cannot hold them at once fails."""
    clients = 200
    active = 0
    all_in = asyncio.Event()

    async def echo(stream: AStream) -> None:
        nonlocal active
        active += 1
        if active == clients:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 60)
        while data := await stream.receive_some():
            await stream.send_all(data)

    async def body() -> None:
        server = await harness.serve(echo)
        try:

            async def client(i: int) -> bytes:
                stream = await harness.connect(server.target)
                try:
                    message = b"client %d says hello\n" % i
                    await stream.send_all(message)
                    return await stream.receive_exactly(len(message), timeout=60)
                finally:
                    await stream.aclose()

            answers = await asyncio.gather(*(client(i) for i in range(clients)))
            assert answers == [b"client %d says hello\n" % i for i in range(clients)]
        finally:
            await server.aclose(grace=5)

    harness.run(body)


def test_timeout_keeps_partial_data(harness: Harness) -> None:
    """A timed-out ``receive_exactly``/``receive_until`` hands back what arrived and loses
    nothing: the retry returns every byte."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            await server.send_all(b"abc")
            for _ in range(20):  # on a loaded machine the bytes may take more than one try
                with pytest.raises(ReadTimeout) as info:
                    await client.receive_exactly(6, timeout=0.3)
                assert b"abc".startswith(info.value.partial)
                if info.value.partial == b"abc":
                    break
            assert info.value.partial == b"abc"
            assert isinstance(info.value, TimeoutError)
            await server.send_all(b"def")
            assert await client.receive_exactly(6, timeout=5) == b"abcdef"

            await server.send_all(b"no newline yet")
            for _ in range(20):
                with pytest.raises(ReadTimeout) as info:
                    await client.receive_until(b"\r\n", timeout=0.3)
                if info.value.partial == b"no newline yet":
                    break
            assert info.value.partial == b"no newline yet"
            await server.send_all(b", now\r\nnext")
            assert await client.receive_until(b"\r\n", timeout=5) == b"no newline yet, now"
            assert await client.receive_exactly(4, timeout=5) == b"next"

            with pytest.raises(ReadTimeout) as info:
                await client.receive_some(timeout=0.1)
            assert info.value.partial == b""

    harness.run(body)


def test_eof_in_the_middle(harness: Harness) -> None:
    """EOF before the request is complete: ``IncompleteReadError`` with every byte."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            await server.send_all(b"line one\nhalf a li")
            await server.send_eof()
            assert await client.receive_line() == b"line one"
            with pytest.raises(IncompleteReadError) as info:
                await client.receive_until(b"\n")
            assert info.value.partial == b"half a li"
            assert info.value.expected is None
            assert isinstance(info.value, EOFError)

        async with harness.pair() as (client, server):
            await server.send_all(b"12345")
            await server.send_eof()
            with pytest.raises(IncompleteReadError) as info:
                await client.receive_exactly(10)
            assert info.value.partial == b"12345"
            assert info.value.expected == 10
            assert await client.receive_some() == b""

    harness.run(body)


def test_receive_until_max_size(harness: Harness) -> None:
    """No delimiter within ``max_size``: ``RemoteProtocolError``, with memory bounded although
    the peer keeps sending (16 MiB without a newline)."""
    max_size = 64 * 1024

    async def body() -> None:
        async with harness.pair() as (client, server):

            async def flood() -> int:
                chunk = b"x" * 65536
                sent = 0
                try:
                    while sent < 16 * MiB:
                        await server.send_all(chunk, timeout=10)
                        sent += len(chunk)
                except Exception:  # the client gives up and closes: expected
                    pass
                return sent

            task = asyncio.create_task(flood())
            with pytest.raises(RemoteProtocolError) as info:
                await client.receive_until(b"\n", max_size=max_size, timeout=10)
            # What was held is what the error hands back: max_size plus at most one read
            # (the asyncio side may read ahead up to its 256 KiB high-water mark).
            assert max_size < len(info.value.partial) <= max_size + 320 * 1024
            assert set(info.value.partial) == {ord("x")}
            client.abort()
            await task

        async with harness.pair() as (client, server):
            # Exactly max_size bytes, then a two-byte delimiter split across reads: accepted.
            await server.send_all(b"a" * 1000 + b"\r")

            async def rest() -> None:
                await asyncio.sleep(0.2)
                await server.send_all(b"\nb")

            task = asyncio.create_task(rest())
            line = await client.receive_until(b"\r\n", max_size=1000, timeout=5)
            assert line == b"a" * 1000
            await task

        async with harness.pair() as (client, server):
            # A delimiter found beyond max_size is refused too.
            await server.send_all(b"y" * 2000 + b"\n")
            with pytest.raises(RemoteProtocolError):
                await client.receive_until(b"\n", max_size=1000, timeout=5)

    harness.run(body)


def test_peer_reset(harness: Harness) -> None:
    """The peer aborts (RST): data it sent first is delivered, then ``BrokenStreamError``."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            await server.send_all(b"last words")
            await asyncio.sleep(0.2)  # let the data reach the client before the reset
            server.abort()
            assert await client.receive_exactly(10, timeout=5) == b"last words"
            with pytest.raises(BrokenStreamError) as info:
                for _ in range(10):  # a Unix socket may report EOF before the error
                    if await client.receive_some(timeout=5) == b"":
                        raise BrokenStreamError("EOF")
            if harness.impl.unix is None:
                assert "EOF" not in str(info.value)
                assert info.value.__cause__ is not None

        async with harness.pair() as (client, server):
            server.abort()
            with pytest.raises(BrokenStreamError):
                for _ in range(1000):  # bounded: the reset is seen within a few writes
                    await client.send_all(b"z" * 65536, timeout=5)
                    await asyncio.sleep(0.001)

    harness.run(body)


def test_server_close_with_active_clients(harness: Harness) -> None:
    """``close``/``aclose`` with a short grace while clients idle: handlers end, clients see
    EOF or a reset, and no thread or task is left behind (checked by the harness)."""
    ended = 0

    async def echo(stream: AStream) -> None:
        nonlocal ended
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        finally:
            ended += 1

    async def body() -> None:
        server = await harness.serve(echo)
        clients = [await harness.connect(server.target) for _ in range(5)]
        try:
            for c in clients:
                await c.send_all(b"hi")
                assert await c.receive_exactly(2, timeout=5) == b"hi"
            started = time.monotonic()
            await server.aclose(grace=0.2)
            assert time.monotonic() - started < 5
            assert ended == 5
            for c in clients:
                try:
                    assert await c.receive_some(timeout=5) == b""
                except BrokenStreamError:
                    pass
            # The listener is gone: a new client cannot connect (or gets no service).
            with pytest.raises(SocketkitError):
                late = await harness.connect(server.target, timeout=2)
                try:
                    await late.send_all(b"x")
                    if await late.receive_some(timeout=1) == b"":
                        raise BrokenStreamError("EOF")
                finally:
                    late.abort()
        finally:
            for c in clients:
                c.abort()
            await server.aclose()  # idempotent

    harness.run(body)


def test_max_connections(harness: Harness) -> None:
    """With ``max_connections=2`` the third client is not served until one leaves."""

    async def echo(stream: AStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)

    async def body() -> None:
        server = await harness.serve(echo, max_connections=2)
        first = await harness.connect(server.target)
        second = await harness.connect(server.target)
        try:
            for c in (first, second):
                await c.send_all(b"ok")
                assert await c.receive_exactly(2, timeout=5) == b"ok"

            async def third_client() -> bytes:
                # Over TLS even the handshake waits: do everything in this task.
                third = await harness.connect(server.target, timeout=20)
                try:
                    await third.send_all(b"third")
                    return await third.receive_exactly(5, timeout=20)
                finally:
                    third.abort()

            task = asyncio.create_task(third_client())
            await asyncio.sleep(0.5)
            assert not task.done(), "the third client was served while two were active"
            await first.aclose()
            assert await asyncio.wait_for(task, 10) == b"third"
        finally:
            first.abort()
            second.abort()
            await server.aclose(grace=1)

    harness.run(body)


def test_idle_timeout(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """``idle_timeout``: a client that stops talking is disconnected after about that long."""
    caplog.set_level(logging.INFO, logger="socketkit.server")

    async def echo(stream: AStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)

    async def body() -> None:
        server = await harness.serve(echo, idle_timeout=0.4)
        try:
            client = await harness.connect(server.target)
            try:
                for _ in range(3):  # activity keeps the connection alive
                    await asyncio.sleep(0.2)
                    await client.send_all(b"ping")
                    assert await client.receive_exactly(4, timeout=5) == b"ping"
                last_activity = time.monotonic()
                try:
                    assert await client.receive_some(timeout=10) == b""
                except BrokenStreamError:
                    pass
                waited = time.monotonic() - last_activity
                # The server's clock started when it sent the echo, a little before we got it.
                assert 0.25 <= waited < 5, waited
            finally:
                client.abort()
        finally:
            await server.aclose(grace=1)

    harness.run(body)


def test_iterate_lines(harness: Harness) -> None:
    """Iteration yields lines without ``\\n``/``\\r\\n`` and an unterminated last line."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            await server.send_all(b"first\nsecond\r\n\nbinary \x00\xff\nlast")
            await server.send_eof()
            assert await client.messages() == [
                b"first",
                b"second",
                b"",
                b"binary \x00\xff",
                b"last",
            ]

        async with harness.pair() as (client, server):
            # Lines already buffered by an earlier receive are not lost.
            await server.send_all(b"a;b;c;")
            await server.send_eof()
            assert await client.receive_exactly(1, timeout=5) == b"a"
            assert await client.messages(LineFramer(b";")) == [b"", b"b", b"c"]

    harness.run(body)


def test_iterate_length_prefixed(harness: Harness) -> None:
    """``send_message``/``iter_messages`` with a length-prefix framer, each prefix width."""
    messages = [b"", b"x", bytes(range(256)), b"m" * 70000]

    async def body() -> None:
        for width in (2, 4, 8):
            framed = [m for m in messages if len(m) < (1 << (8 * width))]
            async with harness.pair() as (client, server):
                framer = LengthPrefixFramer(width)
                for m in framed:
                    await server.send_message(m, framer)
                await server.send_eof()
                assert await client.messages(LengthPrefixFramer(width)) == framed

        async with harness.pair() as (client, server):
            await server.send_all(b"\x00\x00\x00\x10short")  # announces 16, sends 5, EOF
            await server.send_eof()
            with pytest.raises(RemoteProtocolError):
                await client.messages(LengthPrefixFramer(4))

        async with harness.pair() as (client, server):
            await server.send_all(b"\x00\x10\x00\x00")  # 1 MiB announced, max is 1 KiB
            with pytest.raises(RemoteProtocolError):
                await client.messages(LengthPrefixFramer(4, max_size=1024), timeout=5)

    harness.run(body)


def test_receive_into(harness: Harness) -> None:
    """``receive_into`` returns counts that add up to every byte, after buffered data too."""
    payload = random.Random(3).randbytes(300_000)

    async def body() -> None:
        async with harness.pair() as (client, server):

            async def send() -> None:  # concurrently: a Unix socket buffers < 300 kB
                await server.send_all(payload)
                await server.send_eof()

            sender = asyncio.create_task(send())
            head = await client.receive_exactly(10, timeout=5)
            got = bytearray(head)
            buf = bytearray(4096)
            while n := await client.receive_into(buf, timeout=5):
                assert 0 < n <= len(buf)
                got += buf[:n]
            assert bytes(got) == payload
            assert await client.receive_into(buf, timeout=5) == 0
            await sender

        async with harness.pair() as (client, server):
            view = memoryview(bytearray(8))
            with pytest.raises(ReadTimeout):
                await client.receive_into(view, timeout=0.1)
            await server.send_all(b"after")
            n = await client.receive_into(view, timeout=5)
            assert bytes(view[:n]) == b"after"[:n] and n > 0

    harness.run(body)


def test_receive_with_timeout_waits_for_data(harness: Harness) -> None:
    """A receive with a timeout that has to wait returns the data that arrives (the first
    bytes of a connection included), not a false EOF."""

    async def body() -> None:
        async with harness.pair() as (client, server):

            async def later(data: bytes) -> None:
                await asyncio.sleep(0.1)
                await server.send_all(data)

            for data in (b"first", b"second"):
                task = asyncio.create_task(later(data))
                assert await client.receive_some(timeout=5) == data
                await task
            task = asyncio.create_task(later(b"third"))
            assert await client.receive_exactly(5, timeout=5) == b"third"
            await task

    harness.run(body)


def test_other_delimiter_after_a_timeout(harness: Harness) -> None:
    """A timed-out delimiter search does not hide bytes from a search for another one."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            await server.send_all(b"abc\r")
            with pytest.raises(ReadTimeout):
                await client.receive_until(b"\n\n", timeout=0.2)
            await server.send_all(b"\n")
            assert await client.receive_until(b"\r\n", timeout=5) == b"abc"

            await server.send_all(b"x\ny")
            with pytest.raises(ReadTimeout):
                await client.receive_until(b"END", timeout=0.2)
            assert await client.receive_line(timeout=5) == b"x"

    harness.run(body)


def test_iteration_stopped_early_keeps_the_rest(harness: Harness) -> None:
    """Leaving a message loop early (break, timeout) loses no byte: the rest of the stream,
    framed or not, is still there for the next read."""

    async def first_line_then(stream: AStream, framer: Framer | None = None) -> bytes:
        if stream.sync:

            def run() -> bytes:
                messages = stream.raw.iter_messages(framer)
                first: bytes = next(messages)
                return first

            return await asyncio.to_thread(run)
        messages = stream.raw.iter_messages(framer)
        first: bytes = await messages.__anext__()
        return first

    async def body() -> None:
        async with harness.pair() as (client, server):
            await server.send_all(b"HELLO\nSTART\n\x00\x01binary after the lines")
            await asyncio.sleep(0.1)  # all of it arrives in one read
            assert await first_line_then(client) == b"HELLO"
            assert await first_line_then(client) == b"START"
            assert await client.receive_exactly(21, timeout=5) == b"\x00\x01binary after the li"

        async with harness.pair() as (client, server):
            framer = LengthPrefixFramer(2)
            await server.send_all(framer.encode(b"one") + framer.encode(b"two") + b"raw")
            await asyncio.sleep(0.1)
            assert await first_line_then(client, LengthPrefixFramer(2)) == b"one"
            assert await client.receive_exactly(5, timeout=5) == b"\x00\x03two"

        async with harness.pair() as (client, server):
            await server.send_all(b"a\nb")
            with pytest.raises(ReadTimeout):
                await client.messages(timeout=0.3)
            await server.send_all(b"c\n")
            await server.send_eof()
            # "a" was yielded before the timeout; "bc" was kept.
            assert await client.messages() == [b"bc"]

    harness.run(body)


def test_write_timeout(harness: Harness) -> None:
    """A peer that does not read: ``send_all`` with a timeout raises ``WriteTimeout`` saying
    how much went out, instead of blocking forever."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            data = b"w" * (64 * MiB)
            started = time.monotonic()
            with pytest.raises(WriteTimeout) as info:
                await client.send_all(data, timeout=0.5)
            assert time.monotonic() - started < 10
            assert 0 <= info.value.sent < len(data)
            assert isinstance(info.value, TimeoutError)
            del server

    harness.run(body)


def test_full_duplex(harness: Harness) -> None:
    """One reader and one writer on the same stream at once (two threads for a sync stream,
    two tasks for an async one), as with a bare socket: every byte echoed back, in order."""
    size = 16 * MiB
    payload = random.Random(5).randbytes(size)

    async def echo(stream: AStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.send_eof()

    async def body() -> None:
        server = await harness.serve(echo)
        try:
            client = await harness.connect(server.target)
            try:

                async def writer() -> None:
                    for i in range(0, size, 65536):
                        await client.send_all(payload[i : i + 65536], timeout=30)
                    await client.send_eof()

                async def reader() -> str:
                    h = hashlib.sha256()
                    while data := await client.receive_some(timeout=30):
                        h.update(data)
                    return h.hexdigest()

                _, digest = await asyncio.gather(writer(), reader())
                assert digest == hashlib.sha256(payload).hexdigest()
            finally:
                client.abort()
        finally:
            await server.aclose(grace=5)

    harness.run(body)


def test_half_close_with_unread_data(harness: Harness) -> None:
    """``send_eof`` while the peer's data is still arriving (over TLS: records not yet read):
    no error, and every byte still arrives after it."""
    payload = random.Random(7).randbytes(4 * MiB)

    async def body() -> None:
        async with harness.pair() as (client, server):
            sender = asyncio.create_task(server.send_all(payload))
            head = await client.receive_exactly(100, timeout=10)
            await client.send_eof()
            rest = await client.receive_exactly(len(payload) - 100, timeout=30)
            assert head + rest == payload
            await sender
            assert await server.receive_to_eof() == b""

    harness.run(body)


def test_large_single_reads(harness: Harness) -> None:
    """One ``receive_exactly`` of 5 MiB and a 1 MiB length-prefixed message (both far above
    the asyncio read-ahead limit) complete, byte for byte."""
    blob = random.Random(11).randbytes(5 * MiB)
    message = random.Random(12).randbytes(MiB - 1)

    async def body() -> None:
        async with harness.pair() as (client, server):
            sender = asyncio.create_task(server.send_all(blob))
            assert await client.receive_exactly(len(blob), timeout=30) == blob
            await sender

            async def send_framed() -> None:  # concurrently: more than a socket buffers
                await server.send_message(message, LengthPrefixFramer(4, max_size=MiB))
                await server.send_eof()

            sender = asyncio.create_task(send_framed())
            assert await client.messages(LengthPrefixFramer(4, max_size=MiB)) == [message]
            await sender

    harness.run(body)


def test_zero_timeout_polls(harness: Harness) -> None:
    """``timeout=0`` polls: ``ReadTimeout`` (with ``partial``) when nothing is there, the
    bytes when they are — never a generic error."""

    async def body() -> None:
        async with harness.pair() as (client, server):
            with pytest.raises(ReadTimeout):
                await client.receive_some(timeout=0)
            with pytest.raises(ReadTimeout):
                await client.receive_into(bytearray(4), timeout=0)
            await server.send_all(b"ab")
            await asyncio.sleep(0.2)
            with pytest.raises(ReadTimeout) as info:
                await client.receive_until(b"\n", timeout=0)
            assert info.value.partial == b"ab"
            with pytest.raises(ReadTimeout) as info:
                await client.receive_exactly(3, timeout=0)
            assert info.value.partial == b"ab"
            assert await client.receive_some(timeout=0) == b"ab"

    harness.run(body)


def test_iteration_flood_is_bounded(harness: Harness) -> None:
    """Iterating lines while the peer sends megabytes without a newline: a protocol error
    once the framer's maximum is passed, holding no more than that plus one read."""
    max_size = 64 * 1024

    async def body() -> None:
        async with harness.pair() as (client, server):

            async def flood() -> None:
                try:
                    for _ in range(256):  # 16 MiB at most
                        await server.send_all(b"z" * 65536, timeout=10)
                except Exception:  # the client gives up and aborts: expected
                    pass

            task = asyncio.create_task(flood())
            with pytest.raises(RemoteProtocolError) as info:
                await client.messages(LineFramer(max_size=max_size), timeout=10)
            assert max_size < len(info.value.partial) <= max_size + 320 * 1024
            client.abort()
            await task

    harness.run(body)
