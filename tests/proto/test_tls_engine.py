"""TLSEngine (sans-I/O): two engines wired together with no socket — handshake, data both
ways, half-close in each direction, failures."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

import socketkit
from socketkit import TLSEngine, TLSError


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    where: Path = tmp_path_factory.mktemp("engine")
    leaf = ca.issue_cert("server.test")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(where / "server.pem"))
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    server = socketkit.server_context(cert_file=where / "server.pem", alpn=["proto/1"])
    client = socketkit.client_context(ca_file=where / "ca.pem", alpn=["proto/1"])
    return client, server


def pump(a: TLSEngine, b: TLSEngine) -> int:
    """Move ciphertext both ways until neither has anything to send; returns bytes moved."""
    moved = 0
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return moved
        if out_a:
            b.receive_data(out_a)
        if out_b:
            a.receive_data(out_b)
        moved += len(out_a) + len(out_b)


def handshake(client: TLSEngine, server: TLSEngine) -> None:
    for _ in range(10):  # a TLS 1.3 handshake is 1.5 round trips
        done_c = client.do_handshake()
        done_s = server.do_handshake()
        pump(client, server)
        if done_c and done_s:
            return
    raise AssertionError("handshake did not finish")


def read_all(engine: TLSEngine) -> bytes | None:
    """Everything readable now: bytes, ``b""`` at EOF, or None if it needs more data."""
    chunks = []
    while True:
        data = engine.read()
        if data is None:
            return b"".join(chunks) if chunks else None
        if data == b"":
            return b"".join(chunks) if chunks else b""
        chunks.append(data)


@pytest.fixture
def pair(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[TLSEngine, TLSEngine]:
    client_ctx, server_ctx = contexts
    client = TLSEngine(client_ctx, server_side=False, server_hostname="server.test")
    server = TLSEngine(server_ctx, server_side=True)
    handshake(client, server)
    return client, server


def test_handshake_info(pair: tuple[TLSEngine, TLSEngine]) -> None:
    client, server = pair
    assert client.handshake_done and server.handshake_done
    assert client.info["version"] == "TLSv1.3"
    assert client.info["alpn"] == server.info["alpn"] == "proto/1"
    assert client.info["server_hostname"] == "server.test"
    assert client.info["peer_certificate"]["sha256"].count(":") == 31
    assert server.info["peer_certificate"] is None  # no client certificate
    assert isinstance(client.ssl_object, ssl.SSLObject)


def test_data_both_ways(pair: tuple[TLSEngine, TLSEngine]) -> None:
    client, server = pair
    assert client.read() is None  # nothing yet: needs more ciphertext
    payload = bytes(range(256)) * 1000  # > one 16 KiB record
    client.write(payload)
    pump(client, server)
    assert read_all(server) == payload
    server.write(b"pong")
    server.write(memoryview(b" and more"))
    pump(client, server)
    assert read_all(client) == b"pong and more"


def test_half_close_client_first(pair: tuple[TLSEngine, TLSEngine]) -> None:
    client, server = pair
    client.write(b"last request")
    client.send_eof()
    client.send_eof()  # idempotent
    assert client.eof_sent
    pump(client, server)
    assert read_all(server) == b"last request"
    assert server.read() == b""  # close_notify seen: EOF
    # The server can still answer after the client's EOF (RFC 8446 §6.1).
    server.write(b"answer after EOF")
    pump(client, server)
    assert read_all(client) == b"answer after EOF"
    server.send_eof()
    pump(client, server)
    assert client.read() == b""


def test_half_close_server_first(pair: tuple[TLSEngine, TLSEngine]) -> None:
    client, server = pair
    server.write(b"banner")
    server.send_eof()
    pump(client, server)
    assert read_all(client) == b"banner"
    assert client.read() == b""
    client.write(b"still talking")
    pump(client, server)
    assert read_all(server) == b"still talking"


def test_ragged_eof_is_eof(pair: tuple[TLSEngine, TLSEngine]) -> None:
    """The transport ends without close_notify (netcats do this): EOF, as ssl's
    suppress_ragged_eofs does."""
    client, server = pair
    server.write(b"data")
    pump(client, server)
    client.receive_data(b"")
    assert read_all(client) == b"data"
    assert client.read() == b""


def test_corrupt_record_is_tls_error(pair: tuple[TLSEngine, TLSEngine]) -> None:
    client, server = pair
    client.write(b"secret")
    record = bytearray(client.data_to_send())
    record[-1] ^= 0xFF
    server.receive_data(bytes(record))
    with pytest.raises(TLSError):
        server.read()


def test_wrong_host_name_fails_the_handshake(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client_ctx, server_ctx = contexts
    client = TLSEngine(client_ctx, server_side=False, server_hostname="other.test")
    server = TLSEngine(server_ctx, server_side=True)
    with pytest.raises(TLSError, match="certificate verification failed"):
        handshake(client, server)
    assert not client.handshake_done
    # The alert the client queued tells the server why.
    server.receive_data(client.data_to_send())
    with pytest.raises(TLSError):
        server.do_handshake()


def test_untrusted_server(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    _client_ctx, server_ctx = contexts
    client = TLSEngine(
        socketkit.client_context(ca_file=None), server_side=False, server_hostname="server.test"
    )
    server = TLSEngine(server_ctx, server_side=True)
    with pytest.raises(TLSError):
        handshake(client, server)


def test_plaintext_peer_fails_the_handshake(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    _client_ctx, server_ctx = contexts
    server = TLSEngine(server_ctx, server_side=True)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(TLSError):
        server.do_handshake()


def test_half_close_with_unread_data(pair: tuple[TLSEngine, TLSEngine]) -> None:
    """send_eof while the peer's records wait unread: no error, and nothing is lost."""
    client, server = pair
    payload = bytes(range(256)) * 400  # several records
    server.write(payload)
    pump(client, server)
    first = client.read()
    assert first is not None and 0 < len(first) < len(payload)
    client.send_eof()
    pump(client, server)
    assert first + (read_all(client) or b"") == payload
    assert server.read() == b""  # the server saw our close_notify
    server.write(b"more")
    pump(client, server)
    assert read_all(client) == b"more"


def test_half_close_inside_a_partly_read_record(pair: tuple[TLSEngine, TLSEngine]) -> None:
    """send_eof after a read took only part of a record: the rest of it (and later records)
    is still read, not dropped as "application data after close_notify"."""
    client, server = pair
    payload = bytes(range(256)) * 100
    server.write(payload)
    pump(client, server)
    first = client.read(10)
    assert first == payload[:10]
    client.send_eof()
    pump(client, server)
    assert first + (read_all(client) or b"") == payload
    assert server.read() == b""


def test_send_eof_after_a_ragged_eof(pair: tuple[TLSEngine, TLSEngine]) -> None:
    """The peer closed TCP without close_notify (ncat, socat): our own send_eof afterwards is
    quiet (nobody is left to tell), not SHUTDOWN_WHILE_IN_INIT."""
    client, server = pair
    server.write(b"last words")
    pump(client, server)
    client.receive_data(b"")
    assert read_all(client) == b"last words"
    client.send_eof()
    assert client.eof_sent
