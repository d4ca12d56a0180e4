"""The history database on unlucky disks: full, read-only, shared by racing recorders,

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_history_disk.py."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from tests.unit.test_history_disk import ROOT_ONLY, record, run, shared_dir, tmpfs  # noqa: F401


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
