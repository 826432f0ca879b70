"""examples/: each echo server/client pair on loopback, the bytes checked end to end."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from support.procs import running, stop

from ._run import EXAMPLES, env

MESSAGE = "héllo, echo: 1 2 3 \t ~"

SERVERS = {
    "echo_server.py": lambda host: [f"[{host}]:0" if ":" in host else f"{host}:0"],
    "echo_server_async.py": lambda host: [f"[{host}]:0" if ":" in host else f"{host}:0"],
    "bare_echo_server.py": lambda host: [host, "0"],
}
CLIENTS = {
    "echo_client.py": lambda host, port: [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
    "echo_client_async.py": lambda host, port: [
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ],
    "bare_echo_client.py": lambda host, port: [host, str(port)],
}


@contextlib.contextmanager
def _server(script: str, args: list[str]) -> Iterator[int]:
    """Start an example server (stopped by PID on exit); yield the port it listens on."""
    argv = [sys.executable, str(EXAMPLES / script), *args]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            stop(proc)
            pytest.fail(f"{script} did not start: {line!r}")
        yield int(line.rsplit(":", 1)[1])


def _client(script: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env(),
        check=False,
    )


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_echo_pairs(server: str, client: str) -> None:
    """Every client against every server: the same bytes come back."""
    host = "127.0.0.1"
    with _server(server, SERVERS[server](host)) as port:
        result = _client(client, [*CLIENTS[client](host, port), MESSAGE])
        assert result.returncode == 0, result.stderr
        assert result.stdout == MESSAGE + "\n"
        assert result.stderr == ""


@pytest.mark.parametrize("server", ["echo_server.py", "echo_server_async.py"])
def test_echo_on_ipv6(server: str) -> None:
    with _server(server, SERVERS[server]("::1")) as port:
        result = _client(server.replace("server", "client"), [f"[::1]:{port}", MESSAGE])
        assert (result.returncode, result.stdout) == (0, MESSAGE + "\n"), result.stderr


def test_udp_echo_keeps_each_message() -> None:
    with _server("udp_echo.py", ["server", "127.0.0.1", "0"]) as port:
        messages = ["one", "a longer second message", "x" * 1400]
        result = _client("udp_echo.py", ["client", "127.0.0.1", str(port), *messages])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == messages


def test_udp_client_reports_a_lost_reply() -> None:
    # Nothing listens on the port of a just-closed socket: the reply never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _client("udp_echo.py", ["client", "127.0.0.1", str(port), "anyone?"])
    assert result.returncode == 1
    assert "no reply to 'anyone?' within 1 s" in result.stderr


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_ctrl_c_stops_a_server_quietly(server: str) -> None:
    argv = [sys.executable, str(EXAMPLES / server), *SERVERS[server]("127.0.0.1")]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"listening on ")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == b""
