"""Issue 8 without a kernel: the history database, retention, queries, plots and bad input.

The samples here are written through the same History.add the recorder uses; the live
tests (test_live_history.py) record real sockets.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.history import query
from tcpdoctor.history.store import MIGRATIONS, SCHEMA_VERSION, History
from tcpdoctor.model.history import Point
from tcpdoctor.model.tcp import STATE_NAMES
from tests.conftest import tcpdoctor

T0 = 1_795_000_000.0  # 2026-11-19, a fixed moment so that windows are reproducible


def point(ts: float, close_wait: int, finding: str | None = None, established: int = 10,
          owner: str = "app (42)") -> Point:
    states = dict.fromkeys(STATE_NAMES, 0)
    states.update({"ESTABLISHED": established, "CLOSE_WAIT": close_wait, "LISTEN": 1})
    groups = [("process", owner, "CLOSE_WAIT", close_wait),
              ("remote-ip", "192.0.2.7", "CLOSE_WAIT", close_wait)] if close_wait else []
    findings = [{"id": finding, "severity": "warning", "summary": f"{close_wait} in CLOSE_WAIT",
                 "processes": [{"pid": 42, "name": "app", "count": close_wait}]}] \
        if finding else []
    return Point(ts, "web1", None, states, {"sockstat.TCP.inuse": 11.0}, groups, findings)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A day of history: CLOSE_WAIT climbs from the 12th hour, a finding from the 18th."""
    path = tmp_path / "h.db"
    with History(str(path)) as h:
        for i in range(24 * 12):  # every 5 minutes
            hour = i / 12
            cw = 0 if hour < 12 else int((hour - 12) * 40)
            h.add(point(T0 + i * 300, cw, "CLOSE_WAIT_LEAK" if hour >= 18 else None))
    return path


def test_schema_versioned_and_reopened(db: Path) -> None:
    with History(str(db)) as h:
        assert h.version() == SCHEMA_VERSION
        assert h.integrity() == "ok"
        assert len(h.samples()) == 288
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_migration_from_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    MIGRATIONS[0](con)
    con.execute("PRAGMA user_version = 1")
    cols = ", ".join(n.lower() for n in STATE_NAMES)
    con.execute(f"INSERT INTO samples (ts, host, total, non_established, {cols}) VALUES "
                f"(1.0, 'old', 5, 0, {', '.join(['5'] + ['0'] * 10)})")
    con.commit()
    con.close()
    with History(str(path)) as h:
        assert h.version() == SCHEMA_VERSION
        (old,) = h.samples()
        assert old.host == "old" and old.covers == 1 and old.established == 5


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(TcpDoctorError, match="newer than this tcpdoctor"):
        History(str(path))
    proc = tcpdoctor("history", "--db", str(path))
    assert proc.returncode == 3 and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_bad_databases_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    for args in (["--db", str(junk)], ["--db", str(tmp_path / "missing.db")]):
        proc = tcpdoctor("history", *args)
        assert proc.returncode == 3, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "missing.db").exists()  # reading never creates a database


def test_history_json_matches_spec_shape(db: Path) -> None:
    since = query.iso_ms(T0 + 23 * 3600)
    proc = tcpdoctor("history", "--db", str(db), "--since", since, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["schema"] == 1 and out["db"] == str(db)
    samples = out["samples"]
    assert len(samples) == 12
    for s in samples:
        assert set(s) >= {"taken_at", "total", "established", "non_established", "states",
                          "findings"}
        assert s["total"] == sum(s["states"].values())
        assert s["non_established"] == s["total"] - s["established"]
        assert s["findings"] == ["CLOSE_WAIT_LEAK"]
    assert [s["taken_at"] for s in samples] == sorted(s["taken_at"] for s in samples)


def test_since_until_state_csv(db: Path) -> None:
    proc = tcpdoctor("history", "--db", str(db), "--since", query.iso_ms(T0 + 12 * 3600),
                     "--until", query.iso_ms(T0 + 13 * 3600 - 1), "--state", "close-wait", "--csv")
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0] == "taken_at,total,established,non_established,CLOSE_WAIT,findings"
    assert len(rows) == 1 + 12
    assert [int(r.split(",")[4]) for r in rows[1:]] == [int(i / 12 * 40) for i in range(12)]


def test_table_and_time_errors(db: Path) -> None:
    proc = tcpdoctor("history", "--db", str(db), "--last", "5")
    assert proc.returncode == 0 and "CLOSE_WAIT_LEAK" in proc.stdout
    assert "last 5 of 288 samples" in proc.stdout
    for bad in (["--since", "yesterdayish"], ["--compare", "1d", "2d"],
                ["--compare", "2d..1d", "nonsense"]):
        proc = tcpdoctor("history", "--db", str(db), *bad)
        assert proc.returncode == 3 and len(proc.stderr.splitlines()) == 1, (bad, proc.stderr)


def test_compare_windows(db: Path) -> None:
    before = f"{query.iso_ms(T0)}..{query.iso_ms(T0 + 6 * 3600)}"
    after = f"{query.iso_ms(T0 + 18 * 3600)}..{query.iso_ms(T0 + 24 * 3600)}"
    proc = tcpdoctor("history", "--db", str(db), "--compare", before, after, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    a, b = out["windows"]
    assert a["samples"] == 73 and b["samples"] == 72
    assert "CLOSE_WAIT" not in a["states"] and b["states"]["CLOSE_WAIT"]["max"] == 476
    assert b["findings"] == {"CLOSE_WAIT_LEAK": 72} and a["findings"] == {}
    assert out["change_of_mean"]["CLOSE_WAIT"] == b["states"]["CLOSE_WAIT"]["mean"]
    assert b["top"]["process"][0]["key"] == "app (42)"
    text = tcpdoctor("history", "--db", str(db), "--compare", before, after).stdout
    assert "findings appeared: CLOSE_WAIT_LEAK" in text and "app (42)" in text


def test_retention_and_downsampling(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    now = T0 + 20 * 86400
    with History(path) as h:
        for day in (15, 2, 0.5):  # 15 days old, 2 days old, 12 hours old
            base = now - day * 86400
            for i in range(30):  # every 10 s for 5 minutes: one 5-minute bucket or two
                h.add(point(base + i * 10, i, "CLOSE_WAIT_LEAK" if i == 3 else None))
        expired, thinned = h.prune(keep=14 * 86400, downsample_after=86400, bucket=300,
                                   now=now)
        left = h.samples()
        assert expired == 30
        two_days = [s for s in left if s.ts < now - 86400]
        assert len(two_days) <= 2 and thinned == 30 - len(two_days)
        assert sum(s.covers for s in two_days) == 30
        assert max(s.states["CLOSE_WAIT"] for s in two_days) == 29  # the peak is kept
        assert any(f["id"] == "CLOSE_WAIT_LEAK" for s in two_days for f in s.findings)
        assert len([s for s in left if s.ts >= now - 86400]) == 30  # recent: untouched
        assert h.integrity() == "ok"
        orphans = h.db.execute("SELECT count(*) FROM groups WHERE sample_id NOT IN "
                               "(SELECT id FROM samples)").fetchone()[0]
        assert orphans == 0


def test_parse_when_forms() -> None:
    now = T0
    assert query.parse_when("2h", "--since", now) == now - 7200
    assert query.parse_when("now", "--since", now) == now
    assert query.parse_when("2026-11-19T00:00:00+00:00", "--since", now) == 1795046400.0
    assert query.parse_window("2d..1d", now) == (now - 2 * 86400, now - 86400)
    with pytest.raises(TcpDoctorError, match="ends before it starts"):
        query.parse_window("1d..2d", now)


def test_plot_png(db: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = tmp_path / "h.png"
    proc = tcpdoctor("history", "--db", str(db), "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    proc = tcpdoctor("history", "--db", str(db), "--plot", str(tmp_path / "h.svg"))
    assert proc.returncode == 3 and "expected a file name ending in .png" in proc.stderr
