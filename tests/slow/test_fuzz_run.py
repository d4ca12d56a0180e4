"""A short fuzz run finds nothing new (python -m tests.fuzz runs it long)."""

from __future__ import annotations

from tests import fuzz


def test_short_fuzz_run_finds_nothing() -> None:
    """About 25 s over every format: no exception but tcpdoctor's own one-line errors,
    no input over 30 s, no run over 1 GB. Anything found is kept for the replay above."""
    result = fuzz.fuzz(count=None, seconds=25, seed=20261126, quiet=True)
    assert result["inputs"] > 5000
    assert result["crashers"] == [], result
    assert result["peak_rss_mb"] < fuzz.MEMORY_LIMIT_MB
