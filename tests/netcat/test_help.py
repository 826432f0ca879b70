"""``connect --help`` and ``listen --help`` (issue 10, item 17): every option is described
and shows its default; the exit codes listed are those the docs' tables list; the texts point
to ``socketkit help TOPIC`` (what a pip-installed user has), never to a checkout's docs/."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
from pathlib import Path

import pytest

from socketkit.cli.main import _Parser

from .nctools import SK

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"socketkit.cli.{command}")
    parser = _Parser(prog=f"socketkit {command}", epilog=module.EPILOG)
    module.add_arguments(parser)
    return parser


def _help(command: str) -> str:
    return subprocess.run(
        [*SK, command, "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


@pytest.mark.parametrize("command", ["connect", "listen"])
def test_every_option_is_described_and_shows_its_default(command: str) -> None:
    parser = _parser(command)
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or len(action.help) < 10:
            missing.append(f"{name}: no description")
            continue
        takes_value = action.nargs != 0
        if action.option_strings and takes_value and "default" not in action.help:
            missing.append(f"{name}: no default shown")
    assert missing == []


def _codes_in_docs(command: str) -> set[int]:
    text = (DOCS / f"{command}.md").read_text()
    table = text.split("## Exit codes", 1)[1]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}


@pytest.mark.parametrize("command", ["connect", "listen"])
def test_help_lists_the_documented_exit_codes(command: str) -> None:
    text = _help(command)
    section = text.split("exit codes:", 1)[1].split("examples:", 1)[0]
    listed = {int(code) for code in re.findall(r"(?<![\w-])(\d{1,3}) ", section)}
    assert listed == _codes_in_docs(command)
    for code in (141, 143):
        assert str(code) in section


@pytest.mark.parametrize("command", ["connect", "listen"])
def test_help_points_to_what_an_installed_user_has(command: str) -> None:
    text = _help(command)
    assert "docs/" not in text
    assert f"socketkit help {command}" in text
