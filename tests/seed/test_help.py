"""``socketkit help TOPIC``: the docs reach a pip-installed user; --help texts point there,
not to a checkout's docs/ folder."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from socketkit.cli.main import COMMANDS

from ._run import REPO, env, socketkit_cli

PAGES = sorted(path.stem for path in (REPO / "docs").glob("*.md"))


def test_help_prints_a_page() -> None:
    proc = socketkit_cli("help", "cli")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (REPO / "docs" / "cli.md").read_text(encoding="utf-8")


def test_help_lists_every_page() -> None:
    proc = socketkit_cli("help")
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert listed == PAGES


def test_unknown_topic_is_one_line_exit_2() -> None:
    proc = socketkit_cli("help", "nope")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("socketkit help: no topic 'nope'; topics: bench, ")


@pytest.mark.slow
def test_a_built_wheel_carries_the_pages(tmp_path: Path) -> None:
    """What pip installs: the wheel has socketkit/_docs, and ``help`` reads it from there."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("socketkit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {f"socketkit/_docs/{page}.md" for page in PAGES} <= names
        zf.extractall(tmp_path / "site")
    child_env = env()
    child_env["PYTHONPATH"] = str(tmp_path / "site")
    proc = subprocess.run(
        [sys.executable, "-m", "socketkit", "help", "listen"],
        capture_output=True,
        text=True,
        env=child_env,
        cwd="/",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (REPO / "docs" / "listen.md").read_text(encoding="utf-8")


def _help_texts() -> list[tuple[str, str]]:
    texts = [("socketkit", socketkit_cli("--help").stdout)]
    for name in COMMANDS:
        texts.append((name, socketkit_cli(name, "--help").stdout))
    for sub in ("server", "client"):
        texts.append((f"bench {sub}", socketkit_cli("bench", sub, "--help").stdout))
    return texts


def test_help_texts_point_to_what_an_installed_user_has() -> None:
    for name, text in _help_texts():
        assert text, name
        pointer = re.search(r"docs/[\w-]+\.md|[Ss]ee [\w/-]+\.md", text)
        assert not pointer, f"{name} --help points into a checkout ({pointer}): 'socketkit help'"


def test_missing_pages_are_one_line_exit_9(tmp_path: Path) -> None:
    """A copy of the package with neither socketkit/_docs nor a checkout's docs/ beside it."""
    import shutil

    site = tmp_path / "a" / "b"
    shutil.copytree(REPO / "src" / "socketkit", site / "socketkit",
                    ignore=shutil.ignore_patterns("_docs", "__pycache__", "*.so"))  # fmt: skip
    child_env = env()
    child_env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-m", "socketkit", "help", "cli"],
        capture_output=True, text=True, env=child_env, cwd="/", timeout=60,
    )  # fmt: skip
    assert proc.returncode == 9
    assert proc.stderr == (
        "socketkit help: the documentation pages are not installed with this copy of "
        "socketkit; reinstall it with pip, or read docs/ in the source repository\n"
    )
