"""Bad input gives one line on stderr and the documented exit status, never a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import socketkit
from support.privilege import require_root

from .nctools import SK, Collector, finish, free_port, one_line, started, wait_bound
from .nctools import run_sk as run


def test_unknown_host_exits_3() -> None:
    proc = run("connect", "no-such-host.invalid", "80")
    assert proc.returncode == 3
    assert "no-such-host.invalid" in one_line(proc.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("connect", "127.0.0.1", "70000"),
        ("connect", "127.0.0.1", "http-ish"),
        ("listen", "65536"),
        ("listen", "127.0.0.1", "99999"),
        ("connect", "-z", "127.0.0.1", "1-70000"),
        ("connect", "-p", "70000", "127.0.0.1", "80"),
    ],
)
def test_ports_out_of_range_exit_2(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert "port" in one_line(proc.stderr)


def test_usage_errors_exit_2() -> None:
    assert run("connect", "127.0.0.1").returncode == 2
    assert run("connect", "--udp", "--tls", "127.0.0.1", "1").returncode == 2
    assert run("listen", "--send-only", "--recv-only", "1").returncode == 2


def test_closed_port_exits_4() -> None:
    port = free_port()
    proc = run("connect", "127.0.0.1", str(port))
    assert proc.returncode == 4
    assert "refused" in one_line(proc.stderr)


def test_closed_unix_path_exits_4(tmp_path: Path) -> None:
    proc = run("connect", "-U", str(tmp_path / "nobody-here.sock"))
    assert proc.returncode == 4
    one_line(proc.stderr)


def test_connect_timeout_exits_5() -> None:
    # A listener with a full accept queue drops further SYNs: the connect times out.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    sock.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                fillers.append(sock)
            proc = run("connect", "-w", "0.5", "127.0.0.1", str(port))
        finally:
            for sock in fillers:
                sock.close()
    assert proc.returncode == 5
    assert "timed out" in one_line(proc.stderr)


def test_idle_timeout_exits_5() -> None:
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        argv = [*SK, "connect", "-i", "0.5", "127.0.0.1", str(port)]
        with started(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            peer, _ = server.accept()
            rc = finish(proc, 10)
            err = proc.stderr.read().decode() if proc.stderr else ""
            peer.close()
    assert rc == 5
    assert "idle timeout" in one_line(err)


def _python_for_nobody() -> str | None:
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                candidate,
                "-c",
                "pass",
            ],
            capture_output=True,
        )
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_privileged_port_as_non_root_exits_8(proto: str) -> None:
    require_root()  # to drop to nobody we must start as root
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    python = _python_for_nobody()
    if python is None:
        pytest.fail("no Python interpreter that user nobody may run")
    src = str(Path(socketkit.__file__).resolve().parent.parent)
    udp = ["-u"] if proto == "udp" else []
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m",
            "socketkit", "listen", *udp, "127.0.0.1", "80"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": src}
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env
    )
    assert proc.returncode == 8, proc.stderr
    assert "permission denied" in one_line(proc.stderr)


def test_full_disk_on_output_exits_9() -> None:
    port = free_port()
    with started(
        [*SK, "listen", "127.0.0.1", str(port)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    ):
        wait_bound(port)
        proc = run("connect", "-o", "/dev/full", "127.0.0.1", str(port), stdin=b"x" * 10000)
    assert proc.returncode == 9
    assert "/dev/full" in one_line(proc.stderr)
    assert "No space left" in proc.stderr


def test_full_disk_on_stdout_exits_9() -> None:
    port = free_port()
    with (
        open("/dev/full", "wb") as full,
        started(
            [*SK, "listen", "127.0.0.1", str(port)],
            stdin=subprocess.PIPE,
            stdout=full,
            stderr=subprocess.PIPE,
        ) as listener,  # fmt: skip
    ):
        wait_bound(port)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"y" * 10000)
            rc = finish(listener, 10)
        err = listener.stderr.read().decode() if listener.stderr else ""
    assert rc == 9
    assert "No space left" in one_line(err)


def test_json_error_event() -> None:
    proc = run("connect", "--json", "127.0.0.1", str(free_port()))
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith('{"event":"error"')
    assert '"exit_code":4' in lines[0]
    assert "Traceback" not in proc.stderr


def test_zero_io_scan_reports_open_ports() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        closed = free_port()
        proc = run("connect", "-z", "-v", "127.0.0.1", f"{port},{closed}")
        assert proc.returncode == 0
        assert f"127.0.0.1 {port} port [tcp] succeeded!" in proc.stderr
        assert f"127.0.0.1 {closed} port [tcp] failed: closed" in proc.stderr
        none = run("connect", "-z", "127.0.0.1", str(closed))
        assert none.returncode == 1
        assert none.stderr == ""


def test_interrupt_exits_130() -> None:
    import signal
    import time

    port = free_port()
    argv = [*SK, "listen", "127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_bound(port)
        err = Collector(proc.stderr)
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)
        assert finish(proc, 10) == 130
        assert b"Traceback" not in err.wait_for(1, timeout=1)


def test_numeric_only_refuses_names() -> None:
    proc = run("connect", "-n", "localhost", "80")
    assert proc.returncode == 3
    assert "localhost" in one_line(proc.stderr)


@pytest.mark.parametrize(
    ("command", "udp"), [("listen", []), ("listen", ["-u"]), ("listen", ["-k"]), ("connect", [])]
)
def test_missing_exec_program_fails_before_listening_or_connecting(
    command: str, udp: list[str], tmp_path: Path
) -> None:
    """Checked up front (exit 1, one line): a listener never binds, a client never connects,
    and a -k/-u server does not try (fork) again for every peer."""
    port = free_port("udp" if udp == ["-u"] else "tcp")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        target = server.getsockname()[1] if command == "connect" else port
        not_executable = tmp_path / "data.txt"
        not_executable.write_text("x")
        for program, why in (
            ("/nonexistent/program", "No such file or directory"),
            ("no-such-program-here", "not found in PATH"),
            (str(not_executable), "Permission denied"),
        ):
            proc = run(command, *udp, "-e", program, "127.0.0.1", str(target), timeout=15)
            assert proc.returncode == 1, proc.stderr
            assert one_line(proc.stderr) == f"socketkit {command}: cannot run {program}: {why}"
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # connect never connected


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["connect", "-w", "0", "127.0.0.1", "9"], "-w/--wait"),
        (["connect", "-i", "0", "127.0.0.1", "9"], "-i/--idle-timeout"),
        (["listen", "-i", "0", "9"], "-i/--idle-timeout"),
        (["listen", "-u", "-k", "--udp-session-idle", "0", "9"], "--udp-session-idle"),
    ],
)
def test_a_timeout_of_zero_is_a_usage_error(argv: list[str], option: str) -> None:
    """-w 0 made every connect time out, -i 0 every session, --udp-session-idle 0 ended a
    session before its program answered (ncat refuses 0 as well)."""
    proc = subprocess.run([*SK, *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"socketkit {argv[0]}: argument {option}: a timeout must be more than 0 seconds: '0'",
        f"see 'socketkit {argv[0]} --help'",
    ]


def test_option_combination_errors_end_with_the_help_pointer() -> None:
    proc = subprocess.run(
        [*SK, "listen", "--exec", "", "9"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "socketkit listen: --exec needs a command",
        "see 'socketkit listen --help'",
    ]


def test_numeric_only_says_names_are_not_looked_up() -> None:
    """connect -n localhost said "Name or service not known", as if localhost did not exist."""
    proc = subprocess.run(
        [*SK, "connect", "-n", "localhost", "9"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 3
    assert proc.stderr == (
        "socketkit connect: 'localhost' is not a numeric address, and names are not looked "
        "up (-n)\n"
    )


def test_hex_dump_to_an_empty_name_is_a_usage_error() -> None:
    proc = subprocess.run(
        [*SK, "connect", "--hex-dump", "", "127.0.0.1", "9"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "socketkit connect: argument --hex-dump: needs a FILE ('-' for stderr), not an empty name"
    )
