"""The fuzzer's findings stay fixed (tests/slow/test_fuzz_run.py runs the fuzzer briefly;
python -m tests.fuzz runs it long; see tests/fuzz.py)."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import pytest

from tests import fuzz

REGRESSIONS = sorted(fuzz.REGRESSIONS.glob("*.bin"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_crasher_stays_fixed(path: Path) -> None:
    signal.signal(signal.SIGALRM, fuzz._alarm)
    with tempfile.NamedTemporaryFile(suffix=".fuzz") as tmp:
        kind = path.name.split("-")[0]
        assert fuzz.run_one(path.read_bytes(), tmp.name, kind) in ("ok", "refused")
