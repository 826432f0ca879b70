"""TLS through ``connect``/``serve`` (sync, asyncio, uvloop clients): verification failures
are ``TLSError``; SNI, ALPN and client certificates are negotiated; an ephemeral server
certificate is announced with its fingerprint and can be pinned."""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import socketkit
from socketkit import TLSError

from .certs import write_tls_files
from .contract import TLSFiles
from .peers import APIS, aio_server_thread, exchange

pytestmark = pytest.mark.parametrize("api", APIS)


class TLSEchoServer:
    """A sync TLS echo server that records what each connection negotiated."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.infos: list[dict[str, Any]] = []
        self.server = socketkit.serve(self._handle, "127.0.0.1:0", tls=context)
        self.target = f"127.0.0.1:{self.server.address.port}"

    def _handle(self, stream: socketkit.Stream) -> None:
        assert stream.tls is not None
        self.infos.append(stream.tls.info)
        for line in stream:
            stream.send_all(line + b"\n")


@pytest.fixture
def echo_server(tls_files: TLSFiles) -> Iterator[TLSEchoServer]:
    ctx = socketkit.server_context(cert_file=tls_files.cert_file, key_file=tls_files.key_file)
    server = TLSEchoServer(ctx)
    with server.server:
        yield server


def test_verified(api: str, echo_server: TLSEchoServer, tls_files: TLSFiles) -> None:
    info = exchange(
        api, echo_server.target, tls=socketkit.client_context(ca_file=tls_files.ca_file)
    )
    assert info is not None
    assert info["version"] in ("TLSv1.2", "TLSv1.3")
    assert info["peer_certificate"]["sha256"].count(":") == 31
    assert info["server_hostname"] == "127.0.0.1"


def test_system_store_does_not_trust_test_ca(api: str, echo_server: TLSEchoServer) -> None:
    with pytest.raises(TLSError, match="certificate verification failed"):
        exchange(api, echo_server.target, tls=True)


def test_wrong_ca(api: str, echo_server: TLSEchoServer, tmp_path: Path) -> None:
    other = write_tls_files(trustme.CA(), tmp_path)
    with pytest.raises(TLSError, match="certificate verification failed"):
        exchange(api, echo_server.target, tls=socketkit.client_context(ca_file=other.ca_file))


def test_wrong_host_name(api: str, echo_server: TLSEchoServer, tls_files: TLSFiles) -> None:
    ctx = socketkit.client_context(ca_file=tls_files.ca_file)
    with pytest.raises(TLSError, match=r"(?i)hostname|host name"):
        exchange(api, echo_server.target, tls=ctx, server_hostname="www.example.org")


def test_expired_certificate(api: str, ca: trustme.CA, tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    files = write_tls_files(
        ca,
        tmp_path,
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    server = TLSEchoServer(
        socketkit.server_context(cert_file=files.cert_file, key_file=files.key_file)
    )
    with server.server, pytest.raises(TLSError, match="expired"):
        exchange(api, server.target, tls=socketkit.client_context(ca_file=files.ca_file))


def test_sni_and_alpn(api: str, tls_files: TLSFiles) -> None:
    seen_sni: list[str | None] = []
    ctx = socketkit.server_context(
        cert_file=tls_files.cert_file, key_file=tls_files.key_file, alpn=["h2", "http/1.1"]
    )
    ctx.sni_callback = lambda _obj, name, _ctx: seen_sni.append(name)  # type: ignore[assignment,func-returns-value]
    server = TLSEchoServer(ctx)
    with server.server:
        client_ctx = socketkit.client_context(ca_file=tls_files.ca_file, alpn=["http/1.1"])
        info = exchange(api, server.target, tls=client_ctx, server_hostname="localhost")
    assert info is not None
    assert info["alpn"] == "http/1.1"
    assert info["server_hostname"] == "localhost"
    assert seen_sni == ["localhost"]
    assert server.infos[0]["alpn"] == "http/1.1"


def test_mutual_tls(api: str, ca: trustme.CA, tls_files: TLSFiles, tmp_path: Path) -> None:
    client_files = write_tls_files(ca, tmp_path, "client.example")
    ctx = socketkit.server_context(
        cert_file=tls_files.cert_file,
        key_file=tls_files.key_file,
        client_ca_file=ca_path(ca, tmp_path),
    )
    server = TLSEchoServer(ctx)
    with server.server:
        with_cert = socketkit.client_context(
            ca_file=tls_files.ca_file,
            cert_file=client_files.cert_file,
            key_file=client_files.key_file,
        )
        exchange(api, server.target, tls=with_cert)
        peer = server.infos[0]["peer_certificate"]
        assert peer is not None
        assert "client.example" in str(peer) or peer["sha256"]

        without = socketkit.client_context(ca_file=tls_files.ca_file)
        # TLS 1.3: the client's handshake ends before the server checks; the refusal comes
        # as an alert on the first read. Either way it is a TLSError.
        with pytest.raises(TLSError, match=r"(?i)certificate"):
            exchange(api, server.target, tls=without)


def ca_path(ca: trustme.CA, where: Path) -> str:
    path = where / "client-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_ephemeral_certificate(api: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="socketkit.tls")

    def echo(stream: socketkit.Stream) -> None:
        for line in stream:
            stream.send_all(line + b"\n")

    with socketkit.serve(echo, "127.0.0.1:0", tls=True) as server:
        target = f"127.0.0.1:{server.address.port}"
        records = [r for r in caplog.records if r.name == "socketkit.tls"]
        assert len(records) == 1 and records[0].levelno == logging.WARNING
        message = records[0].getMessage()
        fingerprint = message.rsplit(" ", 1)[-1]
        assert fingerprint.count(":") == 31 and "ephemeral" in message

        with pytest.raises(TLSError):  # not trusted by default
            exchange(api, target, tls=True)
        # Pinning: skip CA verification, then insist on the announced fingerprint.
        info = exchange(api, target, tls=socketkit.client_context(insecure=True))
        assert info is not None
        assert info["peer_certificate"]["sha256"] == fingerprint


def test_bad_files(api: str, tmp_path: Path) -> None:
    del api  # the contexts are shared by every API
    with pytest.raises(TLSError, match=r"missing\.pem"):
        socketkit.client_context(ca_file=tmp_path / "missing.pem")
    with pytest.raises(TLSError, match=r"missing\.pem"):
        socketkit.server_context(cert_file=tmp_path / "missing.pem")


def test_silent_server_handshake_times_out(api: str, tls_files: TLSFiles) -> None:
    """A peer that accepts but never answers the ClientHello: ConnectTimeout, in time."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        target = f"127.0.0.1:{listener.getsockname()[1]}"
        ctx = socketkit.client_context(ca_file=tls_files.ca_file)
        started = time.monotonic()
        with pytest.raises(socketkit.ConnectTimeout):
            exchange(api, target, tls=ctx, timeout=0.5)
        assert time.monotonic() - started < 3


def test_plaintext_server_is_a_tls_error(api: str, tls_files: TLSFiles) -> None:
    """A server that answers in plain text (wrong port, no TLS): TLSError, not a hang."""

    def plain(stream: socketkit.Stream) -> None:
        stream.send_all(b"220 plain text service ready\r\n" * 4)
        stream.receive_some(timeout=5)

    with socketkit.serve(plain, "127.0.0.1:0") as server:
        ctx = socketkit.client_context(ca_file=tls_files.ca_file)
        with pytest.raises(TLSError):
            exchange(api, str(server.address), tls=ctx, timeout=5)


def test_mutual_tls_aio_server(
    api: str, ca: trustme.CA, tls_files: TLSFiles, tmp_path: Path
) -> None:
    """The asyncio server requiring a client certificate: with one the exchange works;
    without, the client is told why (TLSError), not just disconnected."""
    client_files = write_tls_files(ca, tmp_path, "client.example")
    ctx = socketkit.server_context(
        cert_file=tls_files.cert_file,
        key_file=tls_files.key_file,
        client_ca_file=ca_path(ca, tmp_path),
    )

    async def echo(stream: Any) -> None:
        async for line in stream:
            await stream.send_all(line + b"\n")

    with aio_server_thread(echo, tls=ctx) as target:
        with_cert = socketkit.client_context(
            ca_file=tls_files.ca_file,
            cert_file=client_files.cert_file,
            key_file=client_files.key_file,
        )
        exchange(api, target, tls=with_cert)
        with pytest.raises(TLSError, match=r"(?i)certificate"):
            exchange(api, target, tls=socketkit.client_context(ca_file=tls_files.ca_file))
