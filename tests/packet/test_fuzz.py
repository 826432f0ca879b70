"""Fuzz the decoders (benchmarks/fuzz_decoders.py): only DecodeError may escape.

The normal suite runs 20,000 packets and 1,000 capture files; the 1,000,000-packet run is
marked slow (``pytest -m slow tests/packet/test_fuzz.py``, about a minute) and is also
``python benchmarks/fuzz_decoders.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_decoders.py"


def _fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_decoders", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_decoders", module)
    spec.loader.exec_module(module)
    return module


def _run(packets: int, files: int, seed: int) -> None:
    fuzz = _fuzzer()
    stats = fuzz.Stats()
    fuzz.fuzz_packets(packets, seed, stats)
    fuzz.fuzz_files(files, seed, stats)
    assert stats.failures == []
    assert stats.inputs == packets and stats.files == files
    assert stats.clean > packets // 4 and stats.decode_errors > 0  # both paths exercised
    assert stats.slowest_s < 2.0  # bounded work per input (generous for a loaded CI box)


def test_fuzz_quick() -> None:
    _run(20_000, 1_000, seed=1)


@pytest.mark.slow
def test_fuzz_one_million() -> None:
    _run(1_000_000, 20_000, seed=2)
