"""TLS half-close in netcat sessions: after OUR stdin ends (close_notify sent) the peer's data
still reaches stdout and the exit status is 0, against socketkit, ncat --ssl and socat OPENSSL
(TLS 1.3 and 1.2); one failed TLS session never ends a -k listener; TLS option combinations that
cannot work are usage errors before anything is bound or connected."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import trustme

from .nctools import SK, Collector, finish, free_port, started, wait_bound, write_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pki-halfclose")
    paths = write_pki(base)
    return paths


def _server_argv(kind: str, pki: dict[str, Path], port: int) -> list[str]:
    cert, key = str(pki["chain"]), str(pki["key"])
    if kind == "socketkit":
        return [*SK, "listen", "--tls", "--tls-cert", cert, "--tls-key", key, "127.0.0.1",
                str(port)]  # fmt: skip
    if kind == "ncat":
        return ["ncat", "--ssl", "--ssl-cert", cert, "--ssl-key", key, "-l", "127.0.0.1",
                str(port)]  # fmt: skip
    listen = f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,verify=0,cert={cert},key={key}"
    if kind == "socat-tls12":
        listen += ",openssl-max-proto-version=TLS1.2"
    return ["socat", "-", listen]


@pytest.mark.parametrize("delay", [0.0, 0.3])
@pytest.mark.parametrize("server", ["socketkit", "ncat", "socat-tls13", "socat-tls12"])
def test_connect_reads_banner_after_own_stdin_eof(
    pki: dict[str, Path], server: str, delay: float
) -> None:
    """`connect --tls < /dev/null` (or stdin ending 0.3 s later) still prints the server's
    banner and exits 0, as `ncat --ssl` and `socat - OPENSSL:` do."""
    port = free_port()
    banner = b"banner " + uuid.uuid4().hex.encode() + b"\n"
    with started(
        _server_argv(server, pki, port),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as srv:
        assert srv.stdin is not None
        srv.stdin.write(banner)
        srv.stdin.close()  # the server sends its banner, then its own EOF
        wait_bound(port)
        with started(
            [*SK, "connect", "--tls", "--tls-ca", str(pki["ca"]), "127.0.0.1", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as client:
            assert client.stdin is not None
            if delay:
                time.sleep(delay)
            client.stdin.close()  # our EOF: close_notify goes out while the banner arrives
            out = Collector(client.stdout)
            err = Collector(client.stderr)
            rc = finish(client, 30)
            got = out.wait_for(len(banner) + 1)
            text = err.wait_for(1 << 16).decode()
    assert rc == 0, text
    assert (got, text) == (banner, "")


def test_listen_reads_client_data_after_own_stdin_eof(pki: dict[str, Path]) -> None:
    """`listen --tls < /dev/null`: our close_notify goes out at once, while `ncat --ssl` sends
    its data; the data still reaches stdout; both exit 0."""
    port = free_port()
    with started(
        _server_argv("socketkit", pki, port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as srv:
        out, err = Collector(srv.stdout), Collector(srv.stderr)
        wait_bound(port)
        with started(
            ["ncat", "--ssl", "127.0.0.1", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as client:
            assert client.stdin is not None
            client.stdin.write(b"client data\n")  # crosses the server's close_notify
            client.stdin.flush()
            time.sleep(0.5)
            client.stdin.close()
            assert finish(client, 30) == 0
        assert finish(srv, 30) == 0
        assert out.wait_for(13) == b"client data\n"
        assert err.wait_for(1 << 16) == b""


def test_unix_socket_half_close(pki: dict[str, Path], tmp_path: Path) -> None:
    """The same over -U: the banner arrives after our close_notify."""
    path = str(tmp_path / "tls.sock")
    cert, key = str(pki["chain"]), str(pki["key"])
    with started(
        [*SK, "listen", "--tls", "--tls-cert", cert, "--tls-key", key, "-U", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as srv:
        assert srv.stdin is not None
        srv.stdin.write(b"unix banner\n")
        srv.stdin.close()
        wait_bound(path)
        client = subprocess.run(
            [*SK, "connect", "--tls", "--tls-insecure", "-U", path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        assert finish(srv, 30) == 0
    assert (client.returncode, client.stdout, client.stderr) == (0, b"unix banner\n", b"")


def test_keep_listening_survives_a_failed_tls_session(pki: dict[str, Path]) -> None:
    """`listen -k --tls < /dev/null` serves two `ncat --ssl` clients one after the other;
    neither session's data is lost and the listener keeps running."""
    port = free_port()
    argv = [*SK, "listen", "-k", "--tls", "--tls-cert", str(pki["chain"]), "--tls-key",
            str(pki["key"]), "127.0.0.1", str(port)]  # fmt: skip
    with started(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as srv:
        out, err = Collector(srv.stdout), Collector(srv.stderr)
        wait_bound(port)
        for n in (1, 2):
            client = subprocess.run(
                ["sh", "-c", f"(echo client{n}; sleep .5) | ncat --ssl 127.0.0.1 {port}"],
                capture_output=True,
                timeout=30,
            )
            assert client.returncode == 0, client.stderr
        got = out.wait_for(16)
        assert srv.poll() is None, err.wait_for(1 << 16)
    assert got == b"client1\nclient2\n"


@pytest.mark.parametrize("server", ["socketkit", "socat-tls13", "socat-tls12"])
def test_connect_tls_to_a_client_without_certificate_hint(
    pki: dict[str, Path], tmp_path: Path, server: str
) -> None:
    """mTLS server, client without a certificate: one line naming the peer and saying the
    server may require a client certificate; exit 6."""
    ca = trustme.CA()
    client_ca = tmp_path / "client-ca.pem"
    ca.cert_pem.write_to_path(str(client_ca))
    port = free_port()
    cert, key = str(pki["chain"]), str(pki["key"])
    if server == "socketkit":
        argv = [*SK, "listen", "--tls", "--tls-cert", cert, "--tls-key", key,
                "--tls-client-ca", str(client_ca), "127.0.0.1", str(port)]  # fmt: skip
    else:
        listen = f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={cert},key={key},"
        listen += f"cafile={client_ca},verify=1"
        if server == "socat-tls12":
            listen += ",openssl-max-proto-version=TLS1.2"
        argv = ["socat", listen, "-"]
    with started(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ):
        wait_bound(port)
        client = subprocess.run(
            [*SK, "connect", "--tls", "--tls-ca", str(pki["ca"]), "127.0.0.1", str(port)],
            input=b"hello\n",
            capture_output=True,
            timeout=30,
        )
    lines = client.stderr.decode().splitlines()
    assert client.returncode == 6, lines
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0]
    assert "client certificate" in lines[0] and "--tls-cert" in lines[0], lines[0]


@pytest.mark.parametrize("keep", [[], ["-k"]])
def test_tls_with_zero_wait_is_a_usage_error(pki: dict[str, Path], keep: list[str]) -> None:
    """`listen --tls -w 0`: refused up front (exit 2, one line + the --help pointer), never
    Python's do_handshake_on_connect message."""
    port = free_port()
    proc = subprocess.run(
        [*SK, "listen", *keep, "--tls", "-w", "0", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2, lines
    assert lines[0].startswith("socketkit listen: ") and "-w" in lines[0], lines
    assert lines[1:] == ["see 'socketkit listen --help'"], lines
    assert "do_handshake_on_connect" not in proc.stderr.decode()


def test_unix_tls_verification_needs_sni(pki: dict[str, Path], tmp_path: Path) -> None:
    """`connect --tls --tls-ca CA -U PATH` cannot check a host name: a usage error before
    connecting (nothing listens at the path, so a connect attempt would say so instead)."""
    path = str(tmp_path / "none.sock")
    for target in (path, "@socketkit-test-" + uuid.uuid4().hex):
        proc = subprocess.run(
            [*SK, "connect", "--tls", "--tls-ca", str(pki["ca"]), "-U", target],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        lines = proc.stderr.decode().splitlines()
        assert proc.returncode == 2, lines
        assert "--sni" in lines[0] and "--tls-insecure" in lines[0], lines
        assert "check_hostname" not in proc.stderr.decode()
        assert not os.path.exists(path)


def test_tls_socket_half_close_both_ways(pki: dict[str, Path]) -> None:
    """TlsSocket over a socket pair: the server sends, sends close_notify and keeps reading;
    the client reads to that EOF, then replies and sends its own close_notify. Nothing is
    lost either way, and after the peer's EOF ``pending()`` is 0 (a poll loop that asks it
    does not spin) and every further read says EOF."""
    import socket
    import threading

    from socketkit.netcat.options import TlsOptions
    from socketkit.netcat.tls import TlsSocket, client_wrap, make_server_context, server_wrap

    ctx = make_server_context(TlsOptions(cert_file=str(pki["chain"]), key_file=str(pki["key"])))
    a, b = socket.socketpair()
    payload = os.urandom(3 << 20)
    box: dict[str, object] = {}

    def read_to_eof(tls: TlsSocket) -> bytes:
        got = bytearray()
        buf = memoryview(bytearray(1 << 16))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                n = tls.recv_into(buf)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            if n == 0:
                return bytes(got)
            got += buf[:n]
        raise AssertionError("no EOF within 20 s")

    def serve() -> None:
        try:
            tls = server_wrap(b, ctx, 10.0, "pair")
            tls.setblocking(False)
            view = memoryview(payload)
            while view:
                try:
                    view = view[tls.send(view) :]
                except BlockingIOError:
                    tls.drain(time.monotonic() + 10)
            tls.send_eof(time.monotonic() + 10)
            box["reply"] = read_to_eof(tls)
        except BaseException as exc:  # reported by the main thread
            box["error"] = exc
        finally:
            b.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client = client_wrap(a, TlsOptions(insecure=True), None, 10.0, peer="pair")
        client.setblocking(False)
        got = read_to_eof(client)
        client.send(memoryview(b"reply"))
        client.send_eof(time.monotonic() + 10)  # after the peer's EOF
        assert client.pending() == 0
        assert client.recv_into(memoryview(bytearray(16))) == 0
    finally:
        thread.join(20)
        a.close()
    assert "error" not in box, box
    assert got == payload
    assert box["reply"] == b"reply"


def test_last_records_go_out_while_stdin_stays_open(pki: dict[str, Path]) -> None:
    """A slow reader fills the socket; when stdin then pauses (still open), the last TLS
    records still go out as the reader catches up, not at stdin's next byte or EOF."""
    import socket
    import ssl
    import threading

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki["chain"]), str(pki["key"]))
    size = 16 << 20
    box: dict[str, object] = {}
    ready = threading.Event()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # inherited
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                listener.settimeout(20)
                raw, _ = listener.accept()
                with ctx.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(20)
                    got = 0
                    deadline = time.monotonic() + 15
                    while got < size and time.monotonic() < deadline:
                        chunk = tls.recv(16384)
                        if not chunk:
                            break
                        got += len(chunk)
                        time.sleep(0.002)  # slower than the sender: its socket stays full
                    box["got"] = got
                    ready.set()
            except BaseException as exc:  # reported by the main thread
                box["error"] = exc
                ready.set()

        thread = threading.Thread(target=serve)
        thread.start()
        argv = [*SK, "connect", "--tls", "--tls-insecure", "127.0.0.1", str(port)]
        with started(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        ) as client:
            assert client.stdin is not None
            client.stdin.write(os.urandom(size))
            client.stdin.flush()  # and stdin stays open
            ready.wait(30)
            client.stdin.close()
        thread.join(30)
    assert "error" not in box, box
    assert box["got"] == size


def test_relay_flushes_tls_records_while_stdin_pauses(pki: dict[str, Path]) -> None:
    """A TLS record the kernel took only part of (a small send buffer) is finished as soon
    as there is room, while stdin stays open and silent; not at stdin's next byte or EOF."""
    import socket
    import threading

    from socketkit.netcat.conn import Conn
    from socketkit.netcat.eof import EofMachine, EofPolicy
    from socketkit.netcat.options import TlsOptions
    from socketkit.netcat.relay import Relay
    from socketkit.netcat.tls import TlsSocket, client_wrap, make_server_context, server_wrap

    ctx = make_server_context(TlsOptions(cert_file=str(pki["chain"]), key_file=str(pki["key"])))
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # records go out in pieces
    size = 1 << 20
    box: dict[str, object] = {"got": 0}
    done = threading.Event()

    def serve() -> None:
        try:
            tls = server_wrap(b, ctx, 10.0, "pair")
            tls.setblocking(False)
            buf = memoryview(bytearray(1 << 16))
            deadline = time.monotonic() + 15
            while int(box["got"]) < size and time.monotonic() < deadline:  # type: ignore[call-overload]
                try:
                    n = tls.recv_into(buf)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                if n == 0:
                    break
                box["got"] = int(box["got"]) + n  # type: ignore[call-overload]
        except BaseException as exc:  # reported by the main thread
            box["error"] = exc
        finally:
            done.set()

    server = threading.Thread(target=serve)
    server.start()
    rfd, wfd = os.pipe()
    try:
        tls: TlsSocket = client_wrap(a, TlsOptions(insecure=True), None, 10.0, peer="pair")
        conn = Conn(tls, peer="pair")
        machine = EofMachine(EofPolicy("shutdown", "stay"), send_only=True)
        relay = Relay(conn, local_in=rfd, local_out=None, machine=machine)
        runner = threading.Thread(target=relay.run)
        runner.start()
        view = memoryview(os.urandom(size))
        while view:
            view = view[os.write(wfd, view) :]
        finished = done.wait(15)  # stdin is still open here
        os.close(wfd)
        wfd = -1
        runner.join(15)
        server.join(15)
    finally:
        if wfd >= 0:
            os.close(wfd)
        os.close(rfd)
        a.close()
        b.close()
    assert "error" not in box, box
    assert (finished, box["got"]) == (True, size)


def test_session_end_sends_close_notify(pki: dict[str, Path]) -> None:
    """`listen --tls` ends its session at the client's close_notify (the nc -N listener rule)
    with its own close_notify, not a bare TCP FIN (a truncation to a strict peer): the
    client's unwrap() completes."""
    import socket
    import ssl

    port = free_port()
    argv = [*SK, "listen", "--tls", "--tls-cert", str(pki["chain"]), "--tls-key",
            str(pki["key"]), "127.0.0.1", str(port)]  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as srv:  # stdin stays open: the session ends at the client's EOF
        out = Collector(srv.stdout)
        wait_bound(port)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as tls,
        ):
            tls.sendall(b"strict\n")
            tls.unwrap()  # our close_notify, then the server's (SSLEOFError without it)
        assert finish(srv, 20) == 0
        assert out.wait_for(7) == b"strict\n"
