"""Root-free checks that take seconds by design (a timeout waited for, a large input):
kept out of tests/unit so that the unit layer stays under a minute; CI runs them too."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DATA, tcpdoctor


def test_many_bad_proc_lines_stay_fast(tmp_path: Path) -> None:
    """Every other line broken: bisection keeps the good half vectorized (no quadratic)."""
    lines = (DATA / "proc_net_tcp").read_text().splitlines()
    body = [ln if i % 2 else ln[:30] for i, ln in enumerate(lines[1:] * 2000)]
    path = tmp_path / "tcp"
    path.write_text("\n".join([lines[0], *body]) + "\n")
    proc = tcpdoctor("analyze", "--json", str(path))
    report = json.loads(proc.stdout)
    assert report["total"] == len(body) // 2
    assert any(f"{len(body) // 2} line(s)" in n for n in report["notes"])


def test_named_pipe_without_writer_is_refused_in_time(tmp_path: Path) -> None:
    import os
    import time

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    proc = tcpdoctor("analyze", str(fifo))
    assert proc.returncode == 3 and "named pipe with no data" in proc.stderr
    assert time.monotonic() - t0 < 60
