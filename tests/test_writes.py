"""Whole files or a clear failure: the one writer on a file-size limit, a full filesystem
and a read-only one. Never exit 0 with a partial file, never an internal error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import DATA, small_tmpfs, tcpdoctor_as_nobody

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def tcpdoctor_limited(shell_prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    quoted = " ".join(f"'{a}'" for a in args)
    return subprocess.run(["bash", "-c", f"{shell_prefix}; exec {sys.executable} -m "
                           f"tcpdoctor {quoted}"], capture_output=True, text=True, check=False)


def test_file_size_limit_is_an_error_not_a_truncated_file(tmp_path: Path) -> None:
    out = tmp_path / "dropin.conf"
    proc = tcpdoctor_limited("ulimit -f 1", "tune", "--interval", "0", "--audit-file",
                             str(DATA / "seed_sysctl.conf"), "--write", str(out))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == f"tcpdoctor: cannot write {out}: file too large (a " \
        "file-size limit, ulimit -f?)"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "8k") as mnt:
        yield mnt


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
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming nobody needs root")
def test_record_without_home_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_STATE_HOME")}
    proc = tcpdoctor_as_nobody("record", "--count", "1", "--no-processes", env=env)
    assert proc.returncode in (0, 3), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
