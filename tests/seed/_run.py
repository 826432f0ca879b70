"""Running ``socketkit`` and the examples as child processes, for the seed's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import socketkit

SRC = Path(socketkit.__file__).resolve().parent.parent
REPO = SRC.parent
EXAMPLES = REPO / "examples"


def env() -> dict[str, str]:
    """The environment for a child: socketkit importable from this checkout, no colours."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), out.get("PYTHONPATH")]))
    out.pop("SOCKETKIT_DEBUG", None)
    return out


def socketkit_cli(
    *args: str, user: int | None = None, caps: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m socketkit ARGS``, output captured; as uid/gid ``user`` when given, keeping
    the capabilities ``caps`` (e.g. ``"+net_raw"``) as ambient ones."""
    argv = [sys.executable, "-m", "socketkit", *args]
    if user is not None:
        keep = [f"--inh-caps={caps}", f"--ambient-caps={caps}"] if caps else []
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *keep, *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=env(), cwd="/", check=False
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
