"""The benchmark runs (issue 6): a smoke test that asserts only that it ran.

Performance claims live in bench/ and README, measured by `python -m bench.run`; no timing
is asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import live


@live
def test_bench_quick_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tcpdoctor states --json" in proc.stdout and "ratios" in proc.stdout
    assert "tcpdoctor exporter scrape" in proc.stdout  # the exporter served and was scraped
