"""README.md's Python examples that run on their own (no server left running) print what
their comments say."""

from __future__ import annotations

import re
import subprocess
import sys

from seed._run import REPO, env

README = REPO / "README.md"


def _udp_example() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if "socketkit.udp(" in b]
    assert len(found) == 1
    return found[0]


def test_readme_datagram_example_prints_what_it_says() -> None:
    code = _udp_example()
    promised = re.search(r"print\(.*\)\s+# (.+)", code)
    assert promised is not None
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
    assert proc.stdout.strip() == promised.group(1).strip()
