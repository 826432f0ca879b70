"""docs/udp.md's examples run and print what the page says; the tour's UDP part and
``socketkit methods`` show the datagram API."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from seed._run import REPO, env, socketkit_cli

_BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", re.S)
PAGE = REPO / "docs" / "udp.md"


def _blocks() -> list[tuple[str, str | None]]:
    text = PAGE.read_text(encoding="utf-8")
    # signature sketches (``socketkit.udp(local=None, ...)``) are not programs
    return [
        (m.group(1), m.group(2))
        for m in _BLOCK.finditer(text)
        if m.group(1).startswith(("import", "#"))
    ]


def test_the_page_has_its_examples() -> None:
    assert len(_blocks()) >= 6


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_example_runs_and_prints_what_the_page_says(index: int) -> None:
    code, expected = _blocks()[index]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (expected or ""), proc.stderr


def test_page_names_every_public_method() -> None:
    import socketkit
    import socketkit.aio as skio

    text = PAGE.read_text(encoding="utf-8")
    for cls in (socketkit.DatagramSocket, skio.DatagramSocket):
        for name in dir(cls):
            if not name.startswith("_"):
                assert f"`{name}" in text or f".{name}(" in text, name


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tour_shows_the_same_with_socketkit_udp(host: str) -> None:
    proc = socketkit_cli("tour", "--json", "--host", host)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    (line,) = [r for r in records if r["part"] == "udp" and r["kind"] == "socketkit"]
    assert (line["data"], line["reply"], line["bytes"], line["truncated"]) == (
        "ping",
        "pong",
        512,
        True,
    )
    shown = f"[{host}]" if ":" in host else host
    assert re.fullmatch(rf"{re.escape(shown)}:\d+", line["address"])
    assert not line["address"].endswith(":0")
    assert f"udp('{shown}:0', max_size=512) -> {line['address']}" in line["text"]
    assert "not built yet" not in proc.stdout


def test_methods_lists_the_datagram_api() -> None:
    proc = socketkit_cli("methods", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {(r["owner"], r["name"]): r for r in json.loads(proc.stdout)}
    assert rows["socketkit", "udp"]["returns"] == "DatagramSocket"
    assert rows["socketkit.aio", "udp"]["kind"] == "async function"
    for owner in ("socketkit.DatagramSocket", "socketkit.aio.DatagramSocket"):
        for name in ("send", "receive", "receive_into", "send_many", "receive_many", "join",
                     "leave", "set_multicast", "close"):  # fmt: skip
            assert rows[owner, name]["description"] != "(no docstring)", (owner, name)
    assert rows["socketkit.DatagramSocket", "receive"]["returns"] == "Datagram"
    assert rows["socketkit.aio.DatagramSocket", "receive"]["kind"] == "async method"
    assert ("socketkit.Datagram", "peer") in rows
