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

from .conftest import small_tmpfs, tcpdoctor_as_nobody

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


@ROOT_ONLY
def test_full_disk_during_record(tmpfs: Path) -> None:
    db = tmpfs / "h.db"
    proc = record(db, 5000)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == f"tcpdoctor: {db}: the disk is full (or failing): the " \
        "sample was not stored; the database is intact up to the previous one"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] > 0


@ROOT_ONLY
def test_history_reads_a_read_only_database(tmpfs: Path) -> None:
    db = tmpfs / "h.db"
    assert record(db, 3).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    proc = run("history", "--db", str(db), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"taken_at"') == 3


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory others may enter (pytest's own tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tdtest-hist-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@ROOT_ONLY
def test_history_as_a_user_who_may_only_read(shared_dir: Path) -> None:
    db = shared_dir / "h.db"
    assert record(db, 2).returncode == 0
    db.chmod(0o644)
    proc = run("history", "--db", str(db), "--json", nobody=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"taken_at"') == 2


@ROOT_ONLY
def test_unreachable_is_not_not_found(tmp_path: Path) -> None:
    db = tmp_path / "h.db"  # inside pytest's 0700 directory: nobody cannot reach it
    assert record(db, 1).returncode == 0
    proc = run("history", "--db", str(db), nobody=True)
    assert proc.returncode == 3 and "Permission denied (cannot reach it)" in proc.stderr


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
