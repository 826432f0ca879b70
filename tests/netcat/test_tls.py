"""TLS: socketkit listen with ncat --ssl and openssl s_client as clients; socketkit connect to
openssl s_server and socat OPENSSL-LISTEN; wrong CA, wrong name and expired certificates fail
with one line and exit status 6."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from support.privilege import require_tool

from .nctools import SK, Collector, finish, free_port, started, wait_bound, write_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pki")
    paths = write_pki(base)
    other = trustme.CA()
    paths["other_ca"] = base / "other-ca.pem"
    other.cert_pem.write_to_path(str(paths["other_ca"]))
    paths["expired"], paths["expired_key"] = _expired_cert(base)
    return paths


def _expired_cert(base: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = base / "expired.pem", base / "expired-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _listen_tls(pki: dict[str, Path], port: int, *extra: str) -> list[str]:
    tls = ["--tls", "--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"])]
    return [*SK, "listen", "-v", *tls, *extra, "127.0.0.1", str(port)]


def test_listen_tls_with_ncat_client(pki: dict[str, Path], tmp_path: Path) -> None:
    require_tool("ncat")
    port = free_port()
    data = os.urandom(1 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    out = tmp_path / "out.bin"
    with (
        out.open("wb") as sink,
        src.open("rb") as source,
        started(
            _listen_tls(pki, port), stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE
        ) as server,
    ):
        wait_bound(port)
        with started(
            ["ncat", "--ssl", "--send-only", "127.0.0.1", str(port)], stdin=source
        ) as client:
            assert finish(client, 30) == 0
        assert finish(server, 30) == 0
        err = server.stderr.read().decode() if server.stderr else ""
    assert out.read_bytes() == data
    assert re.search(r"TLS: TLSv1\.[23] \S+", err), err  # -v shows version and cipher


def test_listen_tls_with_openssl_s_client(pki: dict[str, Path], tmp_path: Path) -> None:
    require_tool("openssl")
    port = free_port()
    out = tmp_path / "out.txt"
    argv = _listen_tls(pki, port, "--alpn", "h2,http/1.1")
    with (
        out.open("wb") as sink,
        started(argv, stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE) as server,
    ):
        wait_bound(port)
        client_argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                       str(pki["ca"]), "-verify_return_error", "-alpn", "h2", "-quiet",
                       "-no_ign_eof"]  # fmt: skip
        client = subprocess.run(
            client_argv, input=b"hello over TLS\n", capture_output=True, timeout=30
        )
        assert client.returncode == 0, client.stderr
        assert finish(server, 30) == 0
        err = server.stderr.read().decode() if server.stderr else ""
    assert out.read_bytes() == b"hello over TLS\n"
    assert "ALPN h2" in err


def test_listen_tls_ephemeral_certificate_prints_fingerprint() -> None:
    port = free_port()
    argv = [*SK, "listen", "--tls", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as server:
        err = Collector(server.stderr)
        wait_bound(port)
        text = err.wait_line_count(1).decode()
        match = re.search(r"SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", text)
        assert match, text
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            digest = hashlib.sha256(der).hexdigest().upper()
            assert match.group(1).replace(":", "") == digest
            tls.sendall(b"pinned\n")
        assert finish(server, 30) == 0


def test_connect_tls_to_openssl_s_server(pki: dict[str, Path], tmp_path: Path) -> None:
    require_tool("openssl")
    port = free_port()
    argv = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki["chain"]),
            "-key", str(pki["key"]), "-naccept", "1", "-quiet"]  # fmt: skip
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as server:
        got = Collector(server.stdout)
        wait_bound(port)
        client = subprocess.run(
            [
                *SK,
                "connect",
                "-v",
                "--tls",
                "--tls-ca",
                str(pki["ca"]),
                "-q",
                "1",
                "127.0.0.1",
                str(port),
            ],
            input=b"hello s_server\n",
            capture_output=True,
            timeout=30,
        )
        assert client.returncode == 0, client.stderr
        assert got.wait_for(15) == b"hello s_server\n"
    assert b"TLS: TLSv1.3" in client.stderr
    assert b"peer certificate subject" in client.stderr


def test_connect_tls_to_socat_openssl_listen(pki: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    data = os.urandom(4 << 20)
    out = tmp_path / "out.bin"
    listen = f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,verify=0,"
    listen += f"cert={pki['chain']},key={pki['key']}"
    with (
        out.open("wb") as sink,
        started(["socat", "-u", listen, "-"], stdout=sink, stderr=subprocess.PIPE) as server,
    ):
        wait_bound(port)
        client = subprocess.run(
            [*SK, "connect", "--tls", "--tls-ca", str(pki["ca"]), "localhost", str(port)],
            input=data,
            capture_output=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert finish(server, 30) == 0
    assert out.read_bytes() == data


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong-ca", "certificate verify failed|unable to get local issuer"),
        ("wrong-name", "Hostname mismatch|not valid for"),
        ("expired", "certificate has expired"),
    ],
)
def test_connect_tls_verification_failures_exit_6(
    pki: dict[str, Path], case: str, reason: str
) -> None:
    port = free_port()
    if case == "expired":
        server_argv = [*SK, "listen", "--tls", "--tls-cert", str(pki["expired"]), "--tls-key",
                       str(pki["expired_key"]), "127.0.0.1", str(port)]  # fmt: skip
        client_extra = ["--tls-ca", str(pki["expired"])]
    else:
        server_argv = _listen_tls(pki, port)
        client_extra = ["--tls-ca", str(pki["other_ca"] if case == "wrong-ca" else pki["ca"])]
        if case == "wrong-name":
            client_extra += ["--sni", "wrong-name.invalid"]
    with started(
        server_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ):
        wait_bound(port)
        client = subprocess.run(
            [*SK, "connect", "--tls", *client_extra, "127.0.0.1", str(port)],
            input=b"never sent\n",
            capture_output=True,
            timeout=30,
        )
    assert client.returncode == 6
    lines = client.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert re.search(reason, lines[0]), lines[0]


def test_mutual_tls(pki: dict[str, Path], tmp_path: Path) -> None:
    ca = trustme.CA()
    client_cert = ca.issue_cert("client.test")
    client_pem = tmp_path / "client.pem"
    client_ca = tmp_path / "client-ca.pem"
    with client_pem.open("wb") as fh:
        fh.write(client_cert.private_key_pem.bytes())
        for blob in client_cert.cert_chain_pems:
            fh.write(blob.bytes())
    ca.cert_pem.write_to_path(str(client_ca))
    port = free_port()
    server_argv = _listen_tls(pki, port, "--tls-client-ca", str(client_ca))
    with started(server_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE) as server:  # fmt: skip
        wait_bound(port)
        client = subprocess.run(
            [
                *SK,
                "connect",
                "--tls",
                "--tls-ca",
                str(pki["ca"]),
                "--tls-cert",
                str(client_pem),
                "--recv-only",
                "-v",
                "127.0.0.1",
                str(port),
            ],
            capture_output=True,
            timeout=30,
            input=b"",
        )
        assert finish(server, 10) == 0
        err = server.stderr.read().decode() if server.stderr else ""
    assert client.returncode == 0, client.stderr
    assert "peer certificate subject" in err  # the server saw the client's certificate
    # Without a client certificate the handshake is refused: exit 6 on both sides.
    port = free_port()
    server_argv = _listen_tls(pki, port, "--tls-client-ca", str(client_ca))
    with started(server_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE) as server:  # fmt: skip
        wait_bound(port)
        client = subprocess.run(
            [
                *SK,
                "connect",
                "--tls",
                "--tls-ca",
                str(pki["ca"]),
                "--recv-only",
                "127.0.0.1",
                str(port),
            ],
            capture_output=True,
            timeout=30,
        )
        assert finish(server, 10) == 6
    assert client.returncode in (4, 6), client.stderr
    assert len(client.stderr.decode().strip().splitlines()) == 1
