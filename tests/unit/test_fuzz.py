"""The fuzzer's findings stay fixed, and a short fuzz run finds nothing new (python -m
tests.fuzz runs it long; see tests/fuzz.py)."""

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
        assert fuzz.run_one(path.read_bytes(), tmp.name) in ("ok", "refused")


def test_short_fuzz_run_finds_nothing() -> None:
    """About 25 s over every format: no exception but tcpdoctor's own one-line errors,
    no input over 30 s, no run over 1 GB. Anything found is kept for the replay above."""
    result = fuzz.fuzz(count=None, seconds=25, seed=20261126, quiet=True)
    assert result["inputs"] > 5000
    assert result["crashers"] == [], result
    assert result["peak_rss_mb"] < fuzz.MEMORY_LIMIT_MB
