"""Helpers for the raw-socket tests: run socketkit as a program, as root or as nobody."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def sk(*args: str) -> list[str]:
    """argv that runs the socketkit CLI with this interpreter."""
    return [sys.executable, "-m", "socketkit", *args]


@functools.cache
def _nobody_interpreter() -> str:
    """An interpreter user nobody may execute (root's pyenv may sit under a 0700 /root)."""
    for candidate in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        if not candidate:
            continue
        probe = subprocess.run(
            [*NOBODY, "env", candidate, "-c", "import sys; assert sys.version_info >= (3, 11)"],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode == 0:
            return candidate
    raise RuntimeError("no Python >= 3.11 that user nobody can run")


def sk_as_nobody(*args: str) -> list[str]:
    """argv that runs the socketkit CLI as uid/gid 65534 with no capabilities."""
    return [*NOBODY, "env", f"PYTHONPATH={SRC}", _nobody_interpreter(), "-m", "socketkit", *args]
