"""The history database: SQLite in WAL mode, one transaction per sample.

A sample is written in one transaction, so a process killed at any moment (SIGKILL included)
leaves the database as it was before that sample: SQLite's journal makes the commit atomic,
and WAL with synchronous=NORMAL is durable against a crashed process (a power loss may lose
the last commits, never the database's integrity).

The schema is versioned with PRAGMA user_version and upgraded by MIGRATIONS, in order, each
in its own transaction; a database newer than this tcpdoctor is refused, never altered.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.history import Point, Stored
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.util.atomic import SLOW_ENV

STATE_COLUMNS = tuple(name.lower() for name in STATE_NAMES)


def _v1(db: sqlite3.Connection) -> None:
    # One column per state, named as the state in lower case (`established` is also the
    # SPEC's established total), so that plain SQL reads the history: SELECT ts, close_wait.
    cols = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in STATE_COLUMNS)
    db.execute(f"""CREATE TABLE samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        host TEXT NOT NULL,
        netns TEXT,
        total INTEGER NOT NULL,
        non_established INTEGER NOT NULL,
        {cols},
        kernel TEXT NOT NULL DEFAULT '{{}}')""")
    db.execute("""CREATE TABLE groups (
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        dim TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, count INTEGER NOT NULL)""")
    db.execute("""CREATE TABLE findings (
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        id TEXT NOT NULL, severity TEXT NOT NULL, summary TEXT NOT NULL,
        processes TEXT NOT NULL DEFAULT '[]')""")
    db.execute("CREATE INDEX samples_ts ON samples(ts)")
    db.execute("CREATE INDEX groups_sample ON groups(sample_id)")
    db.execute("CREATE INDEX findings_sample ON findings(sample_id)")


def _v2(db: sqlite3.Connection) -> None:
    # Downsampling keeps one sample per bucket; `covers` says how many it stands for.
    db.execute("ALTER TABLE samples ADD COLUMN covers INTEGER NOT NULL DEFAULT 1")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)


def _reachable(path: str) -> None:
    """'Not found' only when it is not there; a path we may not reach says so."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise TcpDoctorError(Msg("{path}: no history database (run `tcpdoctor record` first)",
                                 path=path)) from None
    except OSError as exc:
        raise TcpDoctorError(Msg("{path}: {error} (cannot reach it)", path=path,
                                 error=exc.strerror)) from None


def _known(path: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise TcpDoctorError(Msg("{path}: schema version {version} is newer than this tcpdoctor "
                                 "understands ({want}); upgrade tcpdoctor", path=path,
                                 version=version, want=SCHEMA_VERSION))
    if version < 0:
        raise TcpDoctorError(Msg("{path}: schema version {version} is not one tcpdoctor wrote",
                                 path=path, version=version))


def _why(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "disk is full" in text or "disk I/O error" in text:
        return "the disk is full (or failing): the sample was not stored; the database is " \
               "intact up to the previous one"
    if "readonly" in text or "read-only" in text:
        return "the database or its directory is read-only"
    if "locked" in text:
        return "the database stayed locked (another recorder?)"
    return f"not a usable history database ({text})"


def default_path() -> str:
    """/var/lib/tcpdoctor/history.db for root, else $XDG_STATE_HOME/tcpdoctor/history.db."""
    if os.geteuid() == 0:
        return "/var/lib/tcpdoctor/history.db"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "tcpdoctor", "history.db")


class History:
    """create=True: `record` (writes; creates and migrates). create=False: `history`, which
    only reads: the database is opened read-only, so that a read-only mount or a user who
    may only read it can still query it."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        self.notes: list[str] = []
        self._focus: tuple[str | None, ...] = ()  # (netns,) once focus() was called
        if not create:
            _reachable(path)
        try:
            if create:
                os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
                self._open_for_writing(path)
            else:
                self.db = self._open_read_only(path)
        except sqlite3.Error as exc:
            raise TcpDoctorError(f"{path}: {_why(exc)}") from None
        except OSError as exc:
            raise TcpDoctorError(f"{path}: {exc.strerror}") from None
        self._slow = float(os.environ.get(SLOW_ENV, "0") or 0)

    def _open_for_writing(self, path: str, patience: float = 30.0) -> None:
        """Connect, switch to WAL and migrate. Recorders starting together on a new file can
        get SQLITE_BUSY at once (switching the journal mode, or a WAL recovery, does not
        always wait for the busy timeout): try again, for `patience` seconds."""
        deadline = time.monotonic() + patience
        for attempt in itertools.count():
            self.db = sqlite3.connect(path, timeout=patience, isolation_level=None)
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self._migrate()
                return
            except (sqlite3.OperationalError, TcpDoctorError) as exc:
                self.db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(min(0.5, 0.02 * (attempt + 1)))

    def _open_read_only(self, path: str) -> sqlite3.Connection:
        uri = "file:" + quote(os.path.abspath(path))
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
            self._check_version(db)
        except sqlite3.OperationalError:
            # A WAL database in a directory we may not write to (no -shm file can be made):
            # read it as it is on disk.
            db = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
            self.notes.append(Msg("{path} read as an immutable file (no write access beside "
                                  "it): samples being recorded right now may be missing",
                                  path=path))
            self._check_version(db)
        return db

    def _check_version(self, db: sqlite3.Connection) -> None:
        have = int(db.execute("PRAGMA user_version").fetchone()[0])
        _known(self.path, have)
        if have < SCHEMA_VERSION:
            raise TcpDoctorError(Msg("{path}: schema version {have}; reading it needs "
                                     "version {want}: run `tcpdoctor record --count 1 "
                                     "--db` on it once with write access to upgrade it",
                                     path=self.path, have=have, want=SCHEMA_VERSION))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing; a database error (a full disk, a read-only file) is one line."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise TcpDoctorError(f"{self.path}: {_why(exc)}") from None

    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        _known(self.path, self.version())
        for number in range(self.version(), SCHEMA_VERSION):
            with self.transaction() as db:
                # Another recorder may have created or upgraded it meanwhile: look again
                # inside the (exclusive) transaction.
                if int(db.execute("PRAGMA user_version").fetchone()[0]) > number:
                    continue
                MIGRATIONS[number](db)
                db.execute(f"PRAGMA user_version = {number + 1}")

    def _pause(self) -> None:
        # Test-only fault injection (TCPDOCTOR_SLOW_WRITE): widen the window in which a
        # SIGKILL lands inside the transaction.
        if self._slow:
            time.sleep(self._slow)

    def add(self, p: Point) -> int:
        """Store one sample in one transaction; returns its id."""
        cols = ", ".join(STATE_COLUMNS)
        marks = ", ".join("?" for _ in STATE_COLUMNS)
        with self.transaction() as db:
            cur = db.execute(
                f"INSERT INTO samples (ts, host, netns, total, non_established, "
                f"{cols}, kernel) VALUES (?, ?, ?, ?, ?, {marks}, ?)",
                (p.ts, p.host, p.netns, p.total, p.total - p.established,
                 *(p.states[s] for s in STATE_NAMES), json.dumps(p.kernel)))
            sid = int(cur.lastrowid or 0)
            self._pause()
            db.executemany("INSERT INTO groups VALUES (?, ?, ?, ?, ?)",
                           [(sid, *g) for g in p.groups])
            self._pause()
            db.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?)",
                           [(sid, f["id"], f["severity"], f["summary"],
                             json.dumps(f["processes"])) for f in p.findings])
            self._pause()
        return sid

    def last_ts(self) -> float | None:
        row = self.db.execute("SELECT max(ts) FROM samples").fetchone()
        return None if row[0] is None else float(row[0])

    def focus(self, netns: str | None) -> None:
        """Read only the samples of one namespace (None: the host's) from now on."""
        self._focus = (netns,)

    def _netns_sql(self, column: str = "netns") -> tuple[str, tuple[str | None, ...]]:
        if not self._focus:
            return "", ()
        if column == "netns":
            return " AND netns IS ?", self._focus
        return f" AND {column} IN (SELECT id FROM samples WHERE netns IS ?)", self._focus

    def namespaces(self, since: float | None = None,
                   until: float | None = None) -> list[str | None]:
        """The namespaces recorded in a period (None: the host's), in first-seen order."""
        return [r[0] for r in self.db.execute(
            "SELECT netns FROM samples WHERE ts >= ? AND ts <= ? GROUP BY netns "
            "ORDER BY min(id)", (since if since is not None else float("-inf"),
                                 until if until is not None else float("inf")))]

    def samples(self, since: float | None = None, until: float | None = None) -> list[Stored]:
        cols = ", ".join(STATE_COLUMNS)
        only, args = self._netns_sql()
        rows = self.db.execute(
            f"SELECT id, ts, host, netns, kernel, covers, {cols} FROM samples "
            f"WHERE ts >= ? AND ts <= ?{only} ORDER BY ts, id",
            (since if since is not None else float("-inf"),
             until if until is not None else float("inf"), *args)).fetchall()
        found: dict[int, list[dict[str, Any]]] = {}
        if rows:
            for sid, fid, sev, summary, procs in self.db.execute(
                    "SELECT sample_id, id, severity, summary, processes FROM findings "
                    "WHERE sample_id BETWEEN ? AND ?", (rows[0][0], rows[-1][0])):
                found.setdefault(sid, []).append({"id": fid, "severity": sev, "summary": summary,
                                                  "processes": json.loads(procs)})
        return [Stored(r[0], r[1], r[2], r[3], dict(zip(STATE_NAMES, r[6:], strict=True)),
                       json.loads(r[4]), r[5], found.get(r[0], [])) for r in rows]

    def group_totals(self, first_id: int, last_id: int, states: tuple[str, ...],
                     limit: int) -> list[tuple[str, str, str, int]]:
        """(dimension, key, state, summed count) of the largest groups between two sample ids,
        `limit` per dimension."""
        marks = ", ".join("?" for _ in states)
        only, args = self._netns_sql("sample_id")
        rows = self.db.execute(
            f"SELECT dim, key, state, sum(count) AS n FROM groups WHERE sample_id BETWEEN ? "
            f"AND ? AND state IN ({marks}){only} GROUP BY dim, key, state "
            "ORDER BY n DESC, dim, key", (first_id, last_id, *states, *args)).fetchall()
        seen: dict[str, int] = {}
        out = []
        for dim, key, state, n in rows:
            if seen.get(dim, 0) < limit:
                seen[dim] = seen.get(dim, 0) + 1
                out.append((dim, key, state, int(n)))
        return out

    def group_series(self, first_id: int, last_id: int, dim: str, key: str,
                     state: str) -> dict[int, int]:
        """Sample id -> count of one group (absent = not among that sample's top groups)."""
        only, args = self._netns_sql("sample_id")
        return {int(sid): int(n) for sid, n in self.db.execute(
            "SELECT sample_id, count FROM groups WHERE sample_id BETWEEN ? AND ? AND dim = ? "
            f"AND key = ? AND state = ?{only}", (first_id, last_id, dim, key, state, *args))}

    def prune(self, keep: float, downsample_after: float, bucket: float,
              now: float | None = None) -> tuple[int, int]:
        """Drop samples older than `keep` seconds; thin those older than `downsample_after`
        to one per `bucket` seconds, keeping the one with most non-established sockets (the
        peak an SRE looks for) and the union of the findings seen in the bucket.
        Returns (deleted as expired, deleted by downsampling)."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            expired = db.execute("DELETE FROM samples WHERE ts < ?", (now - keep,)).rowcount
            rows = db.execute(
                "SELECT id, CAST(ts / ? AS INTEGER) AS b, non_established, covers FROM samples "
                "WHERE ts < ? ORDER BY b, non_established DESC, ts DESC",
                (bucket, now - downsample_after)).fetchall()
            thinned = 0
            by_bucket: dict[int, list[tuple[int, int]]] = {}
            for sid, b, _, covers in rows:
                by_bucket.setdefault(b, []).append((sid, covers))
            for members in by_bucket.values():
                if len(members) > 1:
                    thinned += self._merge(db, members)
        return expired, thinned

    @staticmethod
    def _merge(db: sqlite3.Connection, members: list[tuple[int, int]]) -> int:
        keep_id = members[0][0]
        drop = [sid for sid, _ in members[1:]]
        marks = ", ".join("?" for _ in drop)
        have = {r[0] for r in db.execute("SELECT id FROM findings WHERE sample_id = ?",
                                         (keep_id,))}
        for fid, sev, summary, procs in db.execute(
                f"SELECT id, severity, summary, processes FROM findings WHERE sample_id IN "
                f"({marks}) ORDER BY sample_id DESC", drop).fetchall():
            if fid not in have:
                have.add(fid)
                db.execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?)",
                           (keep_id, fid, sev, summary, procs))
        db.execute("UPDATE samples SET covers = ? WHERE id = ?",
                   (sum(c for _, c in members), keep_id))
        db.execute(f"DELETE FROM samples WHERE id IN ({marks})", drop)
        return len(drop)

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])
