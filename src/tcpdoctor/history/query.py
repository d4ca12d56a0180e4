"""Reading history back: time arguments, the SPEC's JSON shape, CSV, before/after windows."""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from tcpdoctor.analysis.forecast import trend
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.history.store import History
from tcpdoctor.i18n import Msg
from tcpdoctor.model.history import Stored
from tcpdoctor.model.tcp import STATE_NAMES, parse_state_option
from tcpdoctor.model.times import iso_ms

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_duration(text: str, what: str) -> float:
    """'90s', '15m', '2h', '14d', '1w' -> seconds."""
    m = DURATION.match(text.strip().lower())
    if not m:
        raise TcpDoctorError(Msg("{what}: expected a duration like 90s, 15m, 2h, 14d or 1w, got "
                                 "{text!r}", what=what, text=text))
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_when(text: str, what: str, now: float | None = None) -> float:
    """A moment: 'now', a duration ago ('2h'), or an ISO 8601 date/time (local time if no
    offset is given)."""
    now = time.time() if now is None else now
    text = text.strip()
    if text.lower() == "now":
        return now
    if DURATION.match(text.lower()):
        return now - parse_duration(text, what)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise TcpDoctorError(Msg("{what}: expected 'now', a duration ago (2h, 1d) or an ISO "
                                 "date/time (2026-11-24T09:00), got {text!r}", what=what,
                                 text=text)) from None


def parse_window(text: str, now: float | None = None) -> tuple[float, float]:
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise TcpDoctorError(Msg("--compare: expected a window FROM..TO (e.g. 2d..1d or "
                                 "2026-11-23T08:00..2026-11-23T12:00), got {text!r}", text=text))
    a, b = parse_when(start, "--compare", now), parse_when(end, "--compare", now)
    if b <= a:
        raise TcpDoctorError(Msg("--compare: window {text!r} ends before it starts", text=text))
    return a, b


def parse_states(values: tuple[str, ...]) -> list[str]:
    return [STATE_NAMES[n - 1] for n in parse_state_option(values)]


def sample_json(s: Stored) -> dict[str, Any]:
    return {"taken_at": iso_ms(s.ts), "total": s.total, "established": s.established,
            "non_established": s.total - s.established, "states": s.states,
            "findings": [f["id"] for f in s.findings], "covers": s.covers}


def history_json(db: History, samples: list[Stored]) -> dict[str, Any]:
    """SPEC.md's `history --json` shape (oldest first), plus `covers` per sample and the
    forecasts of the stored trend."""
    return {"schema": 1, "db": db.path, "samples": [sample_json(s) for s in samples],
            "forecasts": [f.as_json() for f in trend_forecasts(samples)]}


def trend_forecasts(samples: list[Stored]) -> list[Any]:
    """What runs out at the trend of these samples (one namespace's)."""
    if not samples:
        return []
    times = np.array([s.ts for s in samples], dtype=np.float64)
    return trend(times, [s.kernel for s in samples], samples[-1].netns or "host")


def history_csv(samples: list[Stored], states: list[str]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["taken_at", "total", "established", "non_established", *states, "findings"])
    for s in samples:
        w.writerow([iso_ms(s.ts), s.total, s.established, s.total - s.established,
                    *(s.states[n] for n in states), " ".join(f["id"] for f in s.findings)])
    return out.getvalue()


def busy_states(samples: list[Stored]) -> list[str]:
    """States that were ever non-zero, in kernel order (what a table or chart should show)."""
    return [n for n in STATE_NAMES if any(s.states[n] for s in samples)]


@dataclass
class Window:
    start: float
    end: float
    samples: list[Stored]

    def summary(self, db: History, limit: int) -> dict[str, Any]:
        n = len(self.samples)
        states = {}
        for name in STATE_NAMES:
            values = [s.states[name] for s in self.samples]
            if any(values):
                states[name] = {"mean": round(sum(values) / n, 1), "max": max(values)}
        totals = [s.total for s in self.samples]
        findings: dict[str, int] = {}
        for s in self.samples:
            for f in s.findings:
                findings[f["id"]] = findings.get(f["id"], 0) + 1
        return {
            "from": iso_ms(self.start), "to": iso_ms(self.end), "samples": n,
            "total": {"mean": round(sum(totals) / n, 1) if n else 0,
                      "max": max(totals, default=0)},
            "states": states, "findings": findings,
            "top": top_over(db, self.samples, limit),
        }


NON_ESTABLISHED = tuple(n for n in STATE_NAMES if n not in ("ESTABLISHED", "LISTEN"))


def top_over(db: History, samples: list[Stored], limit: int) -> dict[str, list[dict[str, Any]]]:
    """Largest non-ESTABLISHED groups over a span: mean count per sample, per dimension."""
    if not samples:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for dim, key, state, total in db.group_totals(samples[0].id, samples[-1].id,
                                                  NON_ESTABLISHED, limit):
        out.setdefault(dim, []).append({"key": key, "state": state,
                                        "mean": round(total / len(samples), 1)})
    return out


def compare(db: History, windows: list[tuple[float, float]], limit: int) -> dict[str, Any]:
    parts = []
    for start, end in windows:
        w = Window(start, end, db.samples(start, end))
        if not w.samples:
            raise TcpDoctorError(Msg("--compare: no samples between {start} and {end} "
                                     "in {database}", start=iso_ms(start), end=iso_ms(end),
                                     database=db.path))
        parts.append(w.summary(db, limit))
    first, last = parts[0], parts[-1]
    names = [n for n in STATE_NAMES if n in first["states"] or n in last["states"]]
    change = {n: round(last["states"].get(n, {"mean": 0})["mean"]
                       - first["states"].get(n, {"mean": 0})["mean"], 1) for n in names}
    change["total"] = round(last["total"]["mean"] - first["total"]["mean"], 1)
    return {"schema": 1, "db": db.path, "windows": parts, "change_of_mean": change}
