"""``connect`` (sync, asyncio, uvloop): Happy Eyeballs and its failure report, resolution and
address errors, timeouts."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest

import socketkit
import socketkit.aio as skio
from socketkit import (
    AddressError,
    ConnectionRefused,
    ConnectTimeout,
    ResolutionError,
    SocketkitError,
)

from .peers import (
    APIS,
    echo_lines,
    exchange,
    fake_resolve,
    refused_port,
    run_async,
    unresponsive_port,
)

pytestmark = pytest.mark.parametrize("api", APIS)


def test_two_refused_addresses_report_both(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with refused_port("::1") as p6, refused_port("127.0.0.1") as p4:
        fake_resolve(
            monkeypatch,
            [(socket.AF_INET6, ("::1", p6, 0, 0)), (socket.AF_INET, ("127.0.0.1", p4))],
        )
        with pytest.raises(ConnectionRefused) as info:
            exchange(api, "dual.test:80")
    attempts = info.value.attempts
    assert [where for where, _ in attempts] == [f"[::1]:{p6}", f"127.0.0.1:{p4}"]
    assert all(isinstance(exc, ConnectionRefusedError | OSError) for _, exc in attempts)
    message = str(info.value)
    assert "dual.test:80" in message
    assert f"[::1]:{p6}" in message and f"127.0.0.1:{p4}" in message


def test_one_family_listening_is_enough(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``localhost``-style names: ::1 refuses, 127.0.0.1 listens → connected."""
    with socketkit.serve(echo_lines, "127.0.0.1:0") as server:
        port = server.address.port
        with refused_port("::1") as p6:
            fake_resolve(
                monkeypatch,
                [(socket.AF_INET6, ("::1", p6, 0, 0)), (socket.AF_INET, ("127.0.0.1", port))],
            )
            started = time.monotonic()
            exchange(api, "dual.test:80", happy_eyeballs_delay=5)
            # The refusal starts the next attempt at once, not after the attempt delay.
            assert time.monotonic() - started < 2.5


def test_stalled_first_address_loses_the_race(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 8305: an address that never answers costs one attempt delay, not the timeout."""
    with socketkit.serve(echo_lines, "127.0.0.1:0") as server, unresponsive_port() as stalled:
        fake_resolve(
            monkeypatch,
            [
                (socket.AF_INET, ("127.0.0.1", stalled)),
                (socket.AF_INET, ("127.0.0.1", server.address.port)),
            ],
        )
        started = time.monotonic()
        exchange(api, "slow.test:80", happy_eyeballs_delay=0.1, timeout=10)
        assert 0.09 <= time.monotonic() - started < 2


def test_real_localhost(api: str) -> None:
    with socketkit.serve(echo_lines, "localhost:0") as server:
        exchange(api, f"localhost:{server.address.port}")
        exchange(api, ("127.0.0.1", server.address.port), numeric=True)


def test_refused(api: str) -> None:
    with refused_port() as port, pytest.raises(ConnectionRefused) as info:
        exchange(api, f"127.0.0.1:{port}")
    assert len(info.value.attempts) == 1
    assert isinstance(info.value, socketkit.ConnectError)
    # One attempt at the address asked for: named once, not "127.0.0.1:P: 127.0.0.1:P refused".
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: refused"


def test_unknown_host(api: str) -> None:
    with pytest.raises(ResolutionError) as info:
        exchange(api, "no-such-host.invalid:80")
    assert "no-such-host.invalid" in str(info.value)
    assert isinstance(info.value, AddressError)


@pytest.mark.parametrize(
    "address", ["127.0.0.1:65536", "127.0.0.1:http", "127.0.0.1:", "[::1]80", "::1:80", "nohost"]
)
def test_bad_address(api: str, address: str) -> None:
    with pytest.raises(AddressError):
        exchange(api, address)


def test_timeout_on_unresponsive_listener(api: str) -> None:
    with unresponsive_port() as port:
        started = time.monotonic()
        with pytest.raises(ConnectTimeout) as info:
            exchange(api, f"127.0.0.1:{port}", timeout=0.5)
        assert 0.45 <= time.monotonic() - started < 3
    assert isinstance(info.value, TimeoutError)
    assert "timed out" in str(info.value)


def test_tiny_timeout(api: str) -> None:
    with socketkit.serve(echo_lines, "127.0.0.1:0") as server, pytest.raises(ConnectTimeout):
        exchange(api, f"127.0.0.1:{server.address.port}", timeout=0.000001)


def test_unix_missing_path(api: str, tmp_path: Any) -> None:
    with pytest.raises(SocketkitError):
        exchange(api, f"unix:{tmp_path}/nobody-here.sock")


def test_unix_backlog_full_waits_then_times_out(api: str) -> None:
    """A Unix listener whose backlog is full: connect waits (like a blocking connect) and
    ends in ConnectTimeout — it must never hand back an unconnected stream."""
    name = f"socketkit-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("\0" + name)
        listener.listen(1)
        fillers = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        try:
            for filler in fillers:
                filler.connect("\0" + name)
            started = time.monotonic()
            with pytest.raises(ConnectTimeout):
                if api == "sync":
                    socketkit.connect(f"unix:@{name}", timeout=0.5).close()
                else:

                    async def go() -> None:
                        stream = await skio.connect(f"unix:@{name}", timeout=0.5)
                        stream.abort()

                    run_async(api, go())
            assert time.monotonic() - started < 3
        finally:
            for filler in fillers:
                filler.close()


def test_source_address_and_default_timeout(api: str) -> None:
    """``source=`` binds the local end; ``default_timeout=`` applies to every receive."""

    def quiet(stream: socketkit.Stream) -> None:
        stream.receive_some(timeout=5)  # says nothing until the client leaves

    with socketkit.serve(quiet, "127.0.0.1:0") as server:
        target = str(server.address)
        if api == "sync":
            with socketkit.connect(target, source="127.0.0.2:0", default_timeout=0.2) as stream:
                assert stream.local_address.startswith("127.0.0.2:")
                started = time.monotonic()
                with pytest.raises(socketkit.ReadTimeout):
                    stream.receive_some()
                assert time.monotonic() - started >= 0.15
            return

        async def go() -> None:
            stream = await skio.connect(target, source="127.0.0.2:0", default_timeout=0.2)
            try:
                assert stream.local_address.startswith("127.0.0.2:")
                started = time.monotonic()
                with pytest.raises(socketkit.ReadTimeout):
                    await stream.receive_some()
                assert time.monotonic() - started >= 0.15
            finally:
                stream.abort()

        run_async(api, go())
