"""Root-only tests: skipped on a developer's non-root machine, a *failure* in CI.

CI runs as root on a clean clone; a skipped raw-socket test there would hide a missing
capability, so under ``CI=true`` the lack of root fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("this test needs root, and CI runs as root: something is wrong with CI")
    pytest.skip("needs root (raw sockets / network namespaces); CI runs it")


def require_tool(name: str) -> str:
    """Path of a peer program; its absence fails the test (scripts/test installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test, which installs the peer tools")
    return path
