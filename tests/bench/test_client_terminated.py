"""A server that ends the test (iperf3 -s on SIGINT sends SERVER_TERMINATE): one plain line
on stderr, exit 1 as docs/bench.md says for a terminated test; no protocol object repr."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from socketkit._errors import SocketkitError
from socketkit.bench.control import unexpected
from socketkit.cli.exit_codes import status_for
from socketkit.proto.iperf3 import (
    CookieReceived,
    ExchangeResults,
    JsonReceived,
    ServerErrorReceived,
    State,
    StateReceived,
)
from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, wait_listening


def _wait_first_interval(client: subprocess.Popen[str], timeout: float = 20.0) -> None:
    """Block until the client printed its first interval line (the test is running)."""
    assert client.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = client.stdout.readline()
        if not line:
            break
        if " sec " in line:
            return
    raise AssertionError("the client never reported an interval")


def test_server_terminate_is_one_line_exit_1() -> None:
    iperf3 = require_tool("iperf3")
    port = free_port()
    with running([iperf3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL) as server:
        wait_listening(port)
        with running(
            [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "8", "-i", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as client:
            _wait_first_interval(client)  # type: ignore[arg-type]
            server.send_signal(signal.SIGINT)
            _, err = client.communicate(timeout=30)
            rc = client.returncode
    assert rc == 1, err
    lines = err.splitlines()
    assert lines == ["socketkit bench: the server terminated the test"], err


@pytest.mark.parametrize("state", list(State))
def test_unexpected_event_messages_are_words_not_reprs(state: State) -> None:
    err = unexpected(StateReceived(state), "the end of the test")
    text = str(err)
    assert "StateReceived" not in text and "<State." not in text, text
    if state in (State.SERVER_TERMINATE, State.CLIENT_TERMINATE):
        assert type(err) is SocketkitError and status_for(err) == 1, text
    elif state is State.ACCESS_DENIED:
        assert status_for(err) == 7, text
    else:
        assert text == (
            f"iperf3 control: got {state.name} ({int(state)}) while waiting for the end of the test"
        )


def test_unexpected_json_and_error_are_words() -> None:
    for event in (
        JsonReceived(ExchangeResults(streams=())),
        ServerErrorReceived(1, 0),
        CookieReceived(b"x" * 37),
    ):
        text = str(unexpected(event, "a state"))
        assert "Received(" not in text and "ExchangeResults(" not in text, text
