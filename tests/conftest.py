"""Suite-wide fixtures. Helpers live in tests/support/ (netlab, privilege, procs)."""

from __future__ import annotations

import sys
from pathlib import Path

# Make ``tests.support`` importable as ``support`` from every test directory.
sys.path.insert(0, str(Path(__file__).parent))
