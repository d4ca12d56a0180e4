"""A short fuzz run finds nothing new (python -m tests.fuzz runs it long)."""

from __future__ import annotations

from tests import fuzz


def test_short_fuzz_run_finds_nothing() -> None:
    """5,000 inputs over every format (about 90 s here with bundles and trace batches;
    bounded by count, not by time, so
    that a busy machine cannot fail it): no exception but tcpdoctor's own one-line errors,
    no input over 30 s, no run over 1 GB. Anything found is kept for the replay above."""
    result = fuzz.fuzz(count=5000, seconds=600, seed=20261126, quiet=True)
    assert result["inputs"] == 5000
    assert result["crashers"] == [], result
    assert result["peak_rss_mb"] < fuzz.MEMORY_LIMIT_MB
