"""What socketkit advises users to run must be safe: never a capability on the system python3,
which would give raw sockets to every Python program on the host (docs/tutorial.md,
"Privileges for raw sockets")."""

from __future__ import annotations

import re

from ._run import REPO

# setcap on the interpreter found on PATH or installed by the system.
UNSAFE = re.compile(r"setcap[^\n]*(which python|/usr/(local/)?bin/python)")


def _texts() -> list[tuple[str, str]]:
    paths = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    paths += sorted((REPO / "src" / "socketkit").rglob("*.py"))
    return [(str(p.relative_to(REPO)), p.read_text(encoding="utf-8")) for p in paths]


def test_no_setcap_on_the_system_python() -> None:
    bad = [
        f"{name}: {match.group(0)}" for name, text in _texts() for match in UNSAFE.finditer(text)
    ]
    assert not bad, "unsafe capability advice:\n" + "\n".join(bad)


def test_the_safe_ways_are_documented() -> None:
    text = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    section = text[text.index("### Privileges for raw sockets") :]
    assert "sudo socketkit" in section
    assert "python3 -m venv --copies" in section
    assert "ping_group_range" in section
