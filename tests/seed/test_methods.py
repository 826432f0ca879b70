"""``socketkit methods``: the method table, generated from the code."""

from __future__ import annotations

import inspect
import json
import socket
from typing import Any

import pytest

import socketkit
from socketkit.cli.methods import _count_params, collect, first_sentence

from ._run import REPO, socketkit_cli


@pytest.fixture(scope="module")
def table() -> dict[tuple[str, str], dict[str, Any]]:
    proc = socketkit_cli("methods", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    return {(row["owner"], row["name"]): row for row in rows}


@pytest.mark.parametrize(
    ("name", "params", "returns"),
    [
        ("recv", "1-2", "data"),
        ("send", "1-2", "count"),
        ("sendto", "2-3", "count"),
        ("accept", "0", "(socket object, address info)"),
        ("bind", "1", "None"),
        ("listen", "0-1", "None"),
        ("connect", "1", "None"),
        ("close", "0", "None"),
        ("setsockopt", "3-4", "None"),
        ("recv_into", "1-3", "nbytes_read"),
        ("getblocking", "0", "bool"),
    ],
)
def test_socket_methods(
    table: dict[tuple[str, str], dict[str, Any]], name: str, params: str, returns: str
) -> None:
    row = table["socket.socket", name]
    assert (row["params"], row["returns"]) == (params, returns)
    assert row["description"] and row["description"] != "(no docstring)"


def test_every_public_socket_method_is_listed(table: dict[tuple[str, str], Any]) -> None:
    public = {n for n in dir(socket.socket) if not n.startswith("_")}
    methods = {n for n in public if callable(getattr(socket.socket, n))}
    assert methods == {name for owner, name in table if owner == "socket.socket"}


@pytest.mark.parametrize("owner", ["socketkit.Stream", "socketkit.aio.Stream"])
def test_stream_methods(table: dict[tuple[str, str], dict[str, Any]], owner: str) -> None:
    exactly = table[owner, "receive_exactly"]
    assert (exactly["min_params"], exactly["returns"]) == (1, "bytes")
    send_all = table[owner, "send_all"]
    assert (send_all["min_params"], send_all["returns"]) == (1, "None")
    assert send_all["signature"].startswith("send_all(data, *, timeout")
    assert table[owner, "receive_some"]["returns"] == "bytes"
    if owner.endswith("aio.Stream"):
        assert exactly["kind"] == send_all["kind"] == "async method"


def test_top_level_functions(table: dict[tuple[str, str], dict[str, Any]]) -> None:
    connect = table["socketkit", "connect"]
    assert connect["returns"] == "Stream" and connect["min_params"] == 1
    assert connect["description"].startswith("Connect to `address`")
    assert table["socketkit", "serve"]["min_params"] == 2
    assert table["socketkit.aio", "connect"]["kind"] == "async function"
    for name in ("connect", "serve", "parse_address"):
        assert ("socketkit", name) in table
    assert ("socketkit.Server", "serve_forever") in table
    assert ("socketkit.aio.Server", "serve_forever") in table
    exported = {name: getattr(socketkit, name) for name in socketkit._EXPORTS}
    functions = {name for name, obj in exported.items() if inspect.isfunction(obj)}
    assert functions <= {name for owner, name in table if owner == "socketkit"}
    for name in ("Stream", "Server", "LineFramer", "LengthPrefixFramer"):
        assert any(owner == f"socketkit.{name}" for owner, _name in table)


def test_text_fits_100_columns_and_lists_the_basics() -> None:
    proc = socketkit_cli("methods")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    names = {line.split()[0] for line in lines if line.startswith("  ") and line.split()}
    names |= {line.split()[1] for line in lines if line.startswith("  async ")}
    assert {"recv", "send", "accept", "bind", "listen", "connect"} <= names
    assert {"receive_exactly", "send_all"} <= names


def test_filter_and_markdown() -> None:
    proc = socketkit_cli("methods", "--filter", "RECV", "--json")
    rows = json.loads(proc.stdout)
    assert rows and all("recv" in (r["owner"] + r["name"] + r["description"]).lower() for r in rows)
    assert ("socket.socket", "recv") in {(r["owner"], r["name"]) for r in rows}
    md = socketkit_cli("methods", "--markdown", "--filter", "receive_exactly").stdout
    assert "| Method | Returns | Params | Description |" in md
    assert "| `receive_exactly` |" in md
    empty = socketkit_cli("methods", "--filter", "no-such-word-anywhere")
    assert empty.returncode == 0 and empty.stdout == ""


def test_docstring_signature_parsing() -> None:
    assert _count_params("buffersize[, flags]") == (1, 2)
    assert _count_params("data[, flags], address") == (2, 3)
    assert _count_params("buffer, [nbytes[, flags]]") == (1, 3)
    assert _count_params("[msg], *, op[, iv[, assoclen[, flags=MSG_MORE]]]") == (1, 5)
    assert _count_params("level, option, value: int") == (3, 3)
    assert _count_params("") == (0, 0)
    assert first_sentence("Return :meth:`close` e.g. now. More.") == "Return close e.g. now."
    assert first_sentence(None) == "(no docstring)"


def test_collect_is_deterministic() -> None:
    assert collect() == collect()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/nonexistent-dir/ref.md",
            "cannot write /nonexistent-dir/ref.md: no such directory /nonexistent-dir",
        ),
        ("/dev/full", "cannot write /dev/full: no space left on device"),
        ("/", "cannot write /: it is a directory"),
        ("", "cannot write an empty file name: name a file, or - for stdout"),
    ],
)
def test_write_errors_are_one_line_exit_9(path: str, message: str) -> None:
    proc = socketkit_cli("methods", "--write", path)
    assert proc.returncode == 9
    assert proc.stderr == f"socketkit methods: {message}\n"
    assert proc.stdout == ""


def test_usage_error_is_one_line_then_help_pointer() -> None:
    proc = socketkit_cli("methods", "--no-such-option")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "socketkit methods: unrecognized arguments: --no-such-option",
        "see 'socketkit methods --help'",
    ]


def test_write_dash_is_stdout() -> None:
    proc = socketkit_cli("methods", "--write", "-")
    assert proc.returncode == 0
    assert proc.stdout == (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
