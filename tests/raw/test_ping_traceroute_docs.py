"""The iputils ping and Linux traceroute habits are in ``--help`` (each with its default) and in
the "coming from" tables of docs/ping.md and docs/traceroute.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from rawkit import sk

DOCS = Path(__file__).resolve().parents[2] / "docs"

PING_FLAGS = ["-c", "-i", "-w", "-W", "-s", "-t", "-p", "-I", "-q", "-n", "-D", "-O", "-a", "-f"]
TRACE_FLAGS = ["-I", "-U", "-T", "-m", "-f", "-q", "-w", "-N", "-z", "-p", "-s", "-i", "-n"]


def _help_blocks(command: str) -> dict[str, str]:
    """Each option of ``socketkit COMMAND --help`` with its whole description."""
    res = subprocess.run(sk(command, "--help"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    options = res.stdout.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    blocks: dict[str, str] = {}
    flag = ""
    for line in options.splitlines():
        found = re.match(r"^  (-[\w-]+)", line)
        if found:
            flag = found.group(1)
            blocks[flag] = line
        elif flag:
            blocks[flag] += " " + line.strip()
    return blocks


@pytest.mark.parametrize(("command", "flags"), [("ping", PING_FLAGS), ("traceroute", TRACE_FLAGS)])
def test_help_lists_every_habit_with_its_default(command: str, flags: list[str]) -> None:
    blocks = _help_blocks(command)
    for flag in flags:
        assert flag in blocks, f"{command} --help has no {flag}"
        assert "default" in blocks[flag], f"{command} {flag}: no default in {blocks[flag]!r}"


@pytest.mark.parametrize(
    ("page", "title", "flags"),
    [
        ("ping.md", "## Coming from iputils ping", PING_FLAGS),
        ("traceroute.md", "## Coming from Linux traceroute", TRACE_FLAGS),
    ],
)
def test_docs_coming_from_table_names_every_habit(page: str, title: str, flags: list[str]) -> None:
    text = (DOCS / page).read_text()
    assert title in text
    table = text.split(title, 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ")]
    firsts = [row.split(" | ", 1)[0] for row in rows]
    for flag in flags:
        pattern = re.compile(rf"`{re.escape(flag)}(?:[ `,\\]|$)")
        assert any(pattern.search(first) for first in firsts), f"{page}: no row for {flag}"
    for row in rows[2:]:  # past the header and the rule: flag | socketkit | same or not
        assert row.count(" | ") == 2, row
        assert re.search(r"\| (same|different|not offered|socketkit's)", row), row
