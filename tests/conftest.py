"""Suite-wide fixtures. Helpers live in tests/support/ (netlab, privilege, procs)."""

from __future__ import annotations

import sys
from pathlib import Path

# Make ``tests.support`` importable as ``support`` from every test directory.
sys.path.insert(0, str(Path(__file__).parent))

# hypothesis's per-example deadline (200 ms) is a timing check, and timing is not what these
# property tests assert: on a loaded 2-core machine an example of a correct test can take
# longer, and a deadline failure there is a flake, not a finding. Every other hypothesis
# health check stays on.
from hypothesis import settings

settings.register_profile("socketkit", deadline=None)
settings.load_profile("socketkit")
