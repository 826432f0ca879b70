"""Exit codes and one-line errors of connect/listen (issue 10, items 14 and 15): unreachable
networks, a stdout reader that went away, TLS handshake timeouts, certificate files that are
not PEM, and what a session says when it is interrupted or terminated."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from seed._run import socketkit_cli
from support.netlab import Lab
from support.privilege import require_root

from .nctools import SK, Collector, finish, free_port, one_line, started, wait_bound
from .nctools import run_sk as run

# -- unreachable networks and hosts: exit 4 (docs/connect.md), made in a test namespace ------


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_unreachable_network_and_host_exit_4(proto: str) -> None:
    require_root()
    import sys

    udp = ["-u"] if proto == "udp" else []
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    with Lab() as lab:
        host = lab.host("u")
        # 198.18.40.0/24: no route at all (ENETUNREACH); 198.18.41.0/24: an `unreachable`
        # route (EHOSTUNREACH, "no route to host").
        host.run(["ip", "route", "add", "unreachable", "198.18.41.0/24"])
        for target, words in (("198.18.40.1", "network is unreachable"),
                              ("198.18.41.1", "no route to host")):  # fmt: skip
            argv = [sys.executable, "-m", "socketkit", "connect", *udp, "-w", "5", target, "80"]
            proc = host.run(argv, check=False, env=env, input="")
            assert proc.returncode == 4, proc.stderr
            line = one_line(proc.stderr)
            assert line.startswith(f"socketkit connect: cannot connect to {target}:80:"), line
            assert words in line.lower()


# -- a stdout reader that goes away ------------------------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_reader_gone_before_reading_everything_exits_141(mode: list[str]) -> None:
    """The peer's bytes fit in the stdout pipe (splice can put far more than 64 KiB there); the
    reader reads 10 bytes and closes; then the peer ends. Bytes were lost: 141, never 0; and
    quietly: no error line, no JSON error event (whose exit_code said 9)."""
    go = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"z" * 30000)
                go.wait(20)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        r, w = os.pipe()
        try:
            argv = [*SK, "connect", *mode, "127.0.0.1", str(port)]
            with started(argv, stdin=subprocess.PIPE, stdout=w, stderr=subprocess.PIPE) as proc:
                os.close(w)
                w = -1
                assert os.read(r, 10) == b"zzzzzzzzzz"
                os.close(r)
                r = -1
                go.set()
                assert proc.stdin is not None
                proc.stdin.close()
                rc = finish(proc, 20)
                err = proc.stderr.read() if proc.stderr else b""
        finally:
            go.set()
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
            thread.join(10)
    assert rc == 141
    events = [json.loads(line)["event"] for line in err.decode().splitlines()]
    assert "error" not in events
    assert err == b"" if not mode else events == ["connected", "closed"]


def test_reader_that_read_everything_exits_0() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"0123456789")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        proc = subprocess.run(
            [*SK, "connect", "127.0.0.1", str(port)],
            input=b"",
            capture_output=True,
            timeout=30,
        )
        thread.join(10)
    assert proc.returncode == 0
    assert proc.stdout == b"0123456789"


# -- TLS: handshake timeout is a timeout (5); a certificate file that is not PEM is local ----


def test_tls_handshake_timeout_exits_5_with_one_prefix() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = run("connect", "--tls", "-w", "0.5", "127.0.0.1", str(port))
    assert proc.returncode == 5, proc.stderr
    assert one_line(proc.stderr) == "socketkit connect: TLS handshake with 127.0.0.1: timed out"


def test_listen_tls_handshake_timeout_exits_5() -> None:
    port = free_port()
    argv = [*SK, "listen", "--tls", "-w", "0.5", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        wait_bound(port)
        with socket.create_connection(("127.0.0.1", port)):
            rc = finish(proc, 20)
        err = proc.stderr.read().decode() if proc.stderr else ""
    lines = [line for line in err.splitlines() if "warning" not in line]
    assert rc == 5, err
    assert lines[-1].startswith("socketkit listen: TLS handshake with 127.0.0.1:")
    assert lines[-1].endswith(": timed out")
    assert lines[-1].count("TLS handshake") == 1


@pytest.mark.parametrize("option", ["--tls-cert", "--tls-key", "--tls-ca"])
def test_connect_certificate_file_not_pem(tmp_path: Path, option: str) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("this is not a certificate\n")
    # A port nobody listens on: the file is checked before connecting.
    extra = [option, str(bogus)]
    if option == "--tls-key":
        extra = ["--tls-cert", str(bogus), *extra]
    proc = run("connect", "--tls", *extra, "127.0.0.1", str(free_port()))
    assert proc.returncode == 9, proc.stderr
    line = one_line(proc.stderr)
    shown = "--tls-cert" if option == "--tls-key" else option
    assert line.startswith(f"socketkit connect: {shown} {bogus}: not a PEM file"), line
    assert "_ssl.c" not in line


@pytest.mark.parametrize("option", ["--tls-cert", "--tls-client-ca"])
def test_listen_certificate_file_not_pem_or_missing(tmp_path: Path, option: str) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("hi\n")
    proc = run("listen", "--tls", option, str(bogus), "127.0.0.1", str(free_port()))
    assert proc.returncode == 9, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith(f"socketkit listen: {option} {bogus}: not a PEM file"), line
    missing = tmp_path / "missing.pem"
    proc = run("listen", "--tls", option, str(missing), "127.0.0.1", str(free_port()))
    assert proc.returncode == 9, proc.stderr
    assert one_line(proc.stderr) == (
        f"socketkit listen: cannot read {option} {missing}: No such file or directory"
    )


# -- close reasons: "interrupted", "terminated by SIGTERM", never exception class names -----


@pytest.mark.parametrize(
    ("sig", "reason", "status"),
    [(signal.SIGINT, "interrupted", 130), (signal.SIGTERM, "terminated by SIGTERM", 143)],
)
@pytest.mark.parametrize("keep", [[], ["-k"], ["-k", "-e", "cat"]])
def test_close_reason_when_interrupted(sig: int, reason: str, status: int, keep: list[str]) -> None:
    for mode in ("-v", "--json"):
        port = free_port()
        argv = [*SK, "listen", *keep, mode, "127.0.0.1", str(port)]
        with started(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            wait_bound(port)
            err = Collector(proc.stderr)
            with socket.create_connection(("127.0.0.1", port)):
                deadline = time.monotonic() + 10
                while b"accepted" not in bytes(err.data) and time.monotonic() < deadline:
                    time.sleep(0.02)
                os.kill(proc.pid, sig)
                assert finish(proc, 10) == status
            text = err.wait_for(1 << 20, timeout=2).decode()
        assert "KeyboardInterrupt" not in text
        assert "Traceback" not in text
        if mode == "-v":
            closed = [line for line in text.splitlines() if " closed " in f" {line}"]
            assert len(closed) == 1, text
            assert closed[0].endswith(f"({reason})"), closed
        else:
            records = [json.loads(line) for line in text.splitlines()]
            closed_events = [r for r in records if r["event"] == "closed"]
            assert [r["error"] for r in closed_events] == [reason], text


@pytest.mark.parametrize(
    ("sig", "reason"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated by SIGTERM")]
)
def test_udp_sessions_close_with_the_reason(sig: int, reason: str) -> None:
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "-e", "cat", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        wait_bound(port, "udp")
        err = Collector(proc.stderr)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.settimeout(10)
            peer.sendto(b"hi\n", ("127.0.0.1", port))
            assert peer.recv(10) == b"hi\n"
            os.kill(proc.pid, sig)
            finish(proc, 10)
        text = err.wait_for(1 << 20, timeout=2).decode()
    records = [json.loads(line) for line in text.splitlines()]
    closed_events = [r for r in records if r["event"] == "closed"]
    assert [(r["reason"], r["error"]) for r in closed_events] == [("listener closed", reason)]


def test_listen_client_reset_exits_4_and_address_in_use_exits_1() -> None:
    import struct

    port = free_port()
    argv = [*SK, "listen", "127.0.0.1", str(port)]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        wait_bound(port)
        busy = run("listen", "127.0.0.1", str(port))
        assert busy.returncode == 1
        assert one_line(busy.stderr) == (
            f"socketkit listen: cannot listen on 127.0.0.1:{port}: address already in use"
        )
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"x")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        rc = finish(proc, 10)
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 4, err
    assert "reset" in one_line(err).lower()


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("connect", "-w", "nan"),
        ("connect", "-w", "inf"),
        ("connect", "-w", "1e309"),
        ("connect", "-i", "nan"),
        ("connect", "-q", "inf"),
        ("connect", "-i", "3000000"),
        ("listen", "--udp-session-idle", "nan"),
        ("listen", "--udp-session-idle", "-5"),
        ("listen", "-i", "inf"),
    ],
)
def test_bad_seconds_are_usage_errors(command: str, option: str, value: str) -> None:
    where = ["127.0.0.1", str(free_port())]
    proc = run(command, f"{option}={value}", *where, timeout=15)
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"socketkit {command}: argument {option}"), first
    assert "Traceback" not in proc.stderr and "bug" not in proc.stderr


def _close_fd(fd: int) -> Callable[[], None]:
    def close() -> None:
        os.close(fd)

    return close


@pytest.mark.parametrize(("fd", "name"), [(0, "stdin"), (1, "stdout")])
def test_closed_stdio_fails_before_connecting(fd: int, name: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = subprocess.run(
            [*SK, "connect", "127.0.0.1", str(port)],
            preexec_fn=_close_fd(fd),
            stdin=subprocess.DEVNULL if fd else None,
            stdout=subprocess.DEVNULL if not fd else None,
            stderr=subprocess.PIPE,
            timeout=30,
            text=True,
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected: the check came first
    assert proc.returncode == 9
    assert one_line(proc.stderr).startswith(f"socketkit connect: {name} is closed (")


def test_listen_with_closed_stdout_fails_before_listening() -> None:
    port = free_port()
    proc = subprocess.run(
        [*SK, "listen", "127.0.0.1", str(port)],
        preexec_fn=_close_fd(1),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=30,
        text=True,
    )
    assert proc.returncode == 9
    assert one_line(proc.stderr).startswith("socketkit listen: stdout is closed (")


def test_unreachable_reported_by_a_router() -> None:
    """A router answers a TCP SYN with ICMP host unreachable: connect exits 4, and -z says
    'unreachable' for the port, not 'closed'. (A UDP socket never hears of a host-unreachable
    ICMP error without IP_RECVERR: Linux passes only "hard" ICMP errors to UDP, as for nc.)"""
    require_root()
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    with Lab() as lab:
        a, router = lab.host("a"), lab.host("r", forwarding=True)
        lab.link(a, router, "198.18.60.1/24", "198.18.60.2/24")
        lab.route(a, "198.18.61.0/24", "198.18.60.2")
        router.run(["ip", "route", "add", "unreachable", "198.18.61.0/24"])
        sk = [sys.executable, "-m", "socketkit"]
        proc = a.run([*sk, "connect", "-w", "10", "198.18.61.1", "80"],
                     check=False, env=env, input="")  # fmt: skip
        assert proc.returncode == 4, proc.stderr
        assert "no route to host" in one_line(proc.stderr).lower()
        scan = a.run([*sk, "connect", "-z", "-v", "-w", "5", "198.18.61.1", "80"],
                     check=False, env=env, input="")  # fmt: skip
        assert scan.returncode == 1, scan.stderr
        assert scan.stderr.strip() == (
            "socketkit connect: connection to 198.18.61.1 80 port [tcp] failed: unreachable"
        )
        # a local `unreachable` route, for UDP too
        a.run(["ip", "route", "add", "unreachable", "198.18.62.0/24"])
        for udp in ([], ["-u"]):
            scan = a.run([*sk, "connect", "-z", "-v", *udp, "198.18.62.1", "80"],
                         check=False, env=env, input="")  # fmt: skip
            proto = "udp" if udp else "tcp"
            assert scan.stderr.strip() == (
                f"socketkit connect: connection to 198.18.62.1 80 port [{proto}] "
                "failed: unreachable"
            )


def test_tls_handshake_without_w_uses_the_default_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -w a handshake gets HANDSHAKE_TIMEOUT (30 s, as --help says); shortened here."""
    from socketkit._errors import SocketkitTimeout
    from socketkit.netcat import tls
    from socketkit.netcat.options import TlsOptions

    assert tls.HANDSHAKE_TIMEOUT == 30.0
    monkeypatch.setattr(tls, "HANDSHAKE_TIMEOUT", 0.3)
    ctx = tls.make_server_context(TlsOptions())
    a, b = socket.socketpair()
    with a, b:
        began = time.monotonic()
        with pytest.raises(SocketkitTimeout, match=r"^TLS handshake with peer:9: timed out$"):
            tls.server_wrap(a, ctx, None, "peer:9")
        assert 0.2 < time.monotonic() - began < 5


@pytest.mark.parametrize("command", ["connect", "listen"])
def test_certificate_without_key_or_with_the_wrong_key(tmp_path: Path, command: str) -> None:
    import trustme

    ca = trustme.CA()
    one, two = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    cert, wrong_key = tmp_path / "cert.pem", tmp_path / "other-key.pem"
    one.cert_chain_pems[0].write_to_path(str(cert))
    two.private_key_pem.write_to_path(str(wrong_key))
    where = ["127.0.0.1", str(free_port())]
    proc = run(command, "--tls", "--tls-cert", str(cert), *where)
    assert proc.returncode == 9, proc.stderr
    assert one_line(proc.stderr) == (
        f"socketkit {command}: --tls-cert {cert}: has no private key; give it with --tls-key"
    )
    proc = run(command, "--tls", "--tls-cert", str(cert), "--tls-key", str(wrong_key), *where)
    assert proc.returncode == 9, proc.stderr
    assert one_line(proc.stderr) == (
        f"socketkit {command}: --tls-key {wrong_key} does not match the certificate in "
        f"--tls-cert {cert}"
    )


def test_encrypted_key_is_refused_before_any_prompt(tmp_path: Path) -> None:
    import trustme

    cert = trustme.CA().issue_cert("localhost")
    plain, encrypted = tmp_path / "key.pem", tmp_path / "encrypted.pem"
    chain = tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(plain))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    subprocess.run(
        ["openssl", "pkey", "-in", str(plain), "-aes256", "-passout", "pass:secret",
         "-out", str(encrypted)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    # A terminal-less run would otherwise block on OpenSSL's pass-phrase prompt.
    proc = run("listen", "--tls", "--tls-cert", str(chain), "--tls-key", str(encrypted),
               "127.0.0.1", str(free_port()), timeout=15)  # fmt: skip
    assert proc.returncode == 9, proc.stderr
    assert one_line(proc.stderr).startswith(
        f"socketkit listen: --tls-key {encrypted}: the private key is encrypted"
    )


# -- Unix socket paths: a missing directory is a bad address (2), not a vague failure (1) ----


@pytest.mark.parametrize("mode", [[], ["-u"]])
def test_unix_path_in_a_missing_directory_is_a_usage_error(mode: list[str]) -> None:
    proc = run("listen", *mode, "-U", "/nonexistent-sk-dir/x.sock", timeout=10)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        "socketkit listen: cannot listen on unix:/nonexistent-sk-dir/x.sock: "
        "no such directory /nonexistent-sk-dir"
    )


def test_unix_path_in_a_folder_we_may_not_write_is_a_permission_error(tmp_path: Path) -> None:
    require_root()  # to become another user
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    proc = socketkit_cli("listen", "-U", str(folder / "x.sock"), user=65534)
    assert proc.returncode == 8
    assert one_line(proc.stderr) == (
        f"socketkit listen: cannot listen on unix:{folder}/x.sock: cannot create the socket "
        f"file in {folder}: permission denied"
    )


@pytest.mark.parametrize(("flag", "host"), [("-6", "127.0.0.1"), ("-4", "::1")])
@pytest.mark.parametrize("mode", [[], ["-u"]])
def test_listen_family_flag_holds_when_a_host_is_given(
    flag: str, host: str, mode: list[str]
) -> None:
    """-6 127.0.0.1 listened on 127.0.0.1 (TCP): the flag was ignored. As connect (and nc),
    an address of the other family does not resolve: exit 3 before anything is bound."""
    proc = run("listen", *mode, flag, host, str(free_port()), timeout=10)
    assert proc.returncode == 3
    assert one_line(proc.stderr) == (
        f"socketkit listen: cannot resolve '{host}': Address family for hostname not supported"
    )


def test_sighup_removes_the_unix_socket_file_and_exits_129(tmp_path: Path) -> None:
    """The terminal going away (SIGHUP) ends listen as SIGTERM does: the socket file it made
    is removed (it was left behind), and the status is the shell's 128 + 1."""
    path = tmp_path / "hup.sock"
    proc = subprocess.Popen(
        [*SK, "listen", "-U", str(path)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.exists()
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == 129
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_a_repeated_sigterm_does_not_cut_the_closing_short() -> None:
    """``timeout`` signals the command and then its whole process group: a second SIGTERM
    arrived while the UDP server was ending its sessions and cut the rest short (their closed
    lines went missing). Every session still ends and says so."""
    port = free_port()
    proc = subprocess.Popen(
        # Programs that outlive SIGTERM and take 0.3 s to end after their input: the closing
        # takes about 1.5 s, and the second signal comes in the middle of it.
        [*SK, "listen", "-u", "-k", "-v", "-e", "sh -c 'trap \"\" TERM; cat; sleep 0.3'",
         "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    try:
        assert proc.stderr is not None
        wait_bound(port, "udp")
        for number, peer in enumerate(peers):
            peer.settimeout(20)
            peer.sendto(b"hello %d\n" % number, ("127.0.0.1", port))
            assert peer.recv(100) == b"hello %d\n" % number  # its program is running
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)  # as timeout(1) does: the group, us included
        assert proc.wait(timeout=30) == 143
        err = proc.stderr.read().decode()
    finally:
        for peer in peers:
            peer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert err.count("ended (listener closed)") == 5, err
