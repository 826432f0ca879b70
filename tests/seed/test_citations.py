"""The code and docs cite only what a reader of the repository has: its own files, RFCs,
upstream issue numbers — not notes kept outside it."""

from __future__ import annotations

import re

from ._run import REPO

OUTSIDE = re.compile(r"ANCHORS(\.md)?|PERF-NOTES|STYLE\.md|shared/")


def test_no_citation_of_files_outside_the_repository() -> None:
    paths = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for folder in ("src", "benchmarks", "examples", "scripts"):
        paths += sorted(
            p
            for p in (REPO / folder).rglob("*")
            if p.suffix in {".py", ".c", ".pyi", ".md", ""} and p.is_file()
        )
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "cites files outside the repository:\n" + "\n".join(found)
