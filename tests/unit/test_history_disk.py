"""The history database on unlucky disks: full, read-only, shared by racing recorders,
damaged. One line and exit 3, or it works; never an internal error."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import small_tmpfs, tcpdoctor_as_nobody

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def run(*args: str, nobody: bool = False) -> subprocess.CompletedProcess[str]:
    if nobody:
        return tcpdoctor_as_nobody(*args)
    return subprocess.run([sys.executable, "-m", "tcpdoctor", *args], capture_output=True,
                          text=True, check=False, timeout=300)


def record(db: Path, count: int = 2) -> subprocess.CompletedProcess[str]:
    return run("record", "--db", str(db), "--interval", "0.05", "--count", str(count), "-q",
               "--no-processes")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "160k") as mnt:
        yield mnt


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory others may enter (pytest's own tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tdtest-hist-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_recorders_creating_one_database_at_once(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    procs = [subprocess.Popen([sys.executable, "-m", "tcpdoctor", "record", "--db", str(db),
                               "--count", "1", "-q", "--no-processes"],
                              stderr=subprocess.PIPE, text=True) for _ in range(12)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, errors
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 12


@pytest.mark.parametrize("version", [-5, 99])
def test_unknown_schema_version_is_refused(tmp_path: Path, version: int) -> None:
    db = tmp_path / "h.db"
    assert record(db, 1).returncode == 0
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {version}")
    con.close()
    for proc in (run("history", "--db", str(db)), record(db, 1)):
        assert proc.returncode == 3 and "schema version" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
