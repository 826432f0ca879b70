"""docs/tutorial.md: every ```python block runs and prints the ```text block after it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support.privilege import require_root

from ._run import REPO, env

_BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", re.S)


def _blocks() -> list[tuple[str, str | None]]:
    text = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]


def test_the_tutorial_has_its_sections() -> None:
    text = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    for title in ("TCP with socketkit", "asyncio", "Framing", "Timeouts", "TLS", "UDP", "Raw"):
        assert title in text
    assert len(_blocks()) >= 8


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_block_runs_and_prints_what_the_page_says(index: int) -> None:
    code, expected = _blocks()[index]
    if code.startswith("# needs root"):
        require_root()
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
