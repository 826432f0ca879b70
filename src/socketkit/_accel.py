"""The optional C fast paths (``_speedups.c``): which methods they take over, and the switch.

Each fast path replaces one Python method with a ``FastMethod`` that does that method's common
case in C and calls the Python method for everything else, so the Python code remains the
definition (and the fallback where the extension did not build). ``SOCKETKIT_PURE=1`` in the
environment runs pure Python; the tests run both ways (``tests/stream/test_speedups.py``).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ENABLED", "accelerate", "speedups"]


def _load() -> Any:
    if os.environ.get("SOCKETKIT_PURE"):
        return None
    try:
        from . import _speedups
    except ImportError:  # not built here (no C compiler, another platform)
        return None
    return _speedups


#: The extension module, or None.
speedups: Any = _load()

#: True when the C fast paths are in use.
ENABLED = speedups is not None


def accelerate(cls: type, name: str, kind: str) -> None:
    """Put the fast path ``kind`` (a ``_speedups`` constant's name) in front of ``cls.name``."""
    if speedups is not None:
        setattr(cls, name, speedups.FastMethod(getattr(speedups, kind), vars(cls)[name]))
