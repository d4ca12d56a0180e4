"""Whole files or a clear failure: the one writer on a file-size limit, a full filesystem

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_writes.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, tcpdoctor_as_nobody
from tests.unit.test_writes import ROOT_ONLY, tiny_fs  # noqa: F401


@ROOT_ONLY
def test_full_filesystem(tiny_fs: Path) -> None:
    out = tiny_fs / "s.json"
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "snapshot", "-o", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().endswith(f"cannot write {out}: no space left on the device")
    assert "wrote" not in proc.stderr and list(tiny_fs.iterdir()) == []


@ROOT_ONLY
def test_read_only_filesystem(tiny_fs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    out = tiny_fs / "report.prom"
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "snapshot", "-o", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 3 and "read-only file system" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming nobody needs root")
@pytest.mark.parametrize("args", [
    ["snapshot", "-o", "/root/tdtest-snapshot.json"],
    ["tune", "--interval", "0", "--audit-file", str(DATA / "seed_sysctl.conf"), "--write",
     "/etc/sysctl.d/tdtest-x.conf"],
])
def test_permission_problems_are_one_line(args: list[str]) -> None:
    proc = tcpdoctor_as_nobody(*args)
    assert proc.returncode == 3, proc.stderr
    assert "permission denied" in proc.stderr and "internal error" not in proc.stderr
    # One error line; notes about the rest of the host (other namespaces) are not ours.
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("note:")]
    assert len(errors) == 1, proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming nobody needs root")
def test_record_without_home_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_STATE_HOME")}
    proc = tcpdoctor_as_nobody("record", "--count", "1", "--no-processes", env=env)
    assert proc.returncode in (0, 3), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
