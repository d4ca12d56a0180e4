"""`tcpdoctor watch`: the view model (counts, rates, findings as they come and go) and
its rendering; the terminal loop is in cli/watch.py.

On a terminal: a full-screen rich view (states with rates and sparklines, top groups of the
growing states, findings as they appear and clear); keys g (grouping), p (pause), q (quit).
Otherwise one plain line per sample plus a line per finding that appears or clears, so that
`watch ... | tee log` and systemd journals stay readable. Memory is bounded: only the last
SPARK_POINTS counts and the last snapshot are kept, however long it runs.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis.forecast import sentence_of
from tcpdoctor.analysis.groups import filter_mask, group
from tcpdoctor.i18n import Cat, Msg, _, _f, tr
from tcpdoctor.model.history import Taken
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.model.times import iso
from tcpdoctor.render.output import SEVERITY_STYLE
from tcpdoctor.render.tables import key_text

SPARK_POINTS = 40
BARS = "▁▂▃▄▅▆▇█"
CLEARED_KEPT = 5


def sparkline(values: list[int]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return BARS[0] * len(values)
    return "".join(BARS[(v - lo) * (len(BARS) - 1) // (hi - lo)] for v in values)


@dataclass
class Active:
    severity: str
    since: float
    summary: str


@dataclass
class View:
    """Everything the screen shows, updated per sample; bounded whatever the run time."""

    dims: tuple[str, ...]
    dim: int = 0
    paused: bool = False
    last: Taken | None = None
    times: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))
    counts: dict[str, deque[int]] = field(default_factory=dict)
    active: dict[str, Active] = field(default_factory=dict)
    cleared: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=CLEARED_KEPT))

    def update(self, taken: Taken) -> list[str]:
        """Take in one sample; returns the finding events ('+ ID ...', '- ID ...')."""
        p = taken.point
        self.last = taken
        self.times.append(p.ts)
        for name in STATE_NAMES:
            self.counts.setdefault(name, deque(maxlen=SPARK_POINTS)).append(p.states[name])
        events: list[str] = []
        # Keyed by id, or by id and namespace when watching every namespace.
        now = {f.get("key", f["id"]): f for f in p.findings}
        for fid, f in now.items():
            if fid not in self.active:
                self.active[fid] = Active(f["severity"], p.ts, f["summary"])
                events.append(Cat(f"+ {fid} ({f['severity']}): ", f["summary"]))
            else:
                self.active[fid].severity = f["severity"]
                self.active[fid].summary = f["summary"]
        for fid in [k for k in self.active if k not in now]:
            del self.active[fid]
            self.cleared.append((fid, p.ts))
            events.append(Cat(f"- {fid} ", Msg("cleared")))
        return events

    def rate(self, name: str) -> float | None:
        """Change per second over the last two samples."""
        if len(self.times) < 2:
            return None
        dt = self.times[-1] - self.times[-2]
        values = self.counts[name]
        return (values[-1] - values[-2]) / dt if dt > 0 else None

    def growing(self) -> list[str]:
        """Non-ESTABLISHED states that grew over the sparkline window (else all of them that
        are present): the states whose owners the top table shows."""
        skip = ("ESTABLISHED", "LISTEN")
        up = [n for n in STATE_NAMES if n not in skip and len(self.counts[n]) > 1
              and self.counts[n][-1] > self.counts[n][0]]
        return up or [n for n in STATE_NAMES if n not in skip and self.counts[n][-1]]


def line(view: View) -> str:
    assert view.last is not None
    p = view.last.point
    parts = [f"{p.taken_at} total={p.total} established={p.established} "
             f"non_established={p.total - p.established}"]
    for name in STATE_NAMES:
        if name == "ESTABLISHED" or not p.states[name]:
            continue
        r = view.rate(name)
        parts.append(f"{name}={p.states[name]}" + (f"({r:+.1f}/s)" if r else ""))
    parts.append("findings=" + (",".join(view.active) or "-"))
    soon = _nearest(p.forecasts)
    if soon is not None:
        parts.append(f"runs_out={soon['resource']}({soon['scope']})@{soon['seconds_left']:.0f}s")
    return " ".join(parts)


def _nearest(forecasts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The forecast that runs out first (they come nearest first)."""
    return next((f for f in forecasts if f["seconds_left"] is not None), None)


def json_line(view: View, events: list[str]) -> str:
    assert view.last is not None
    p = view.last.point
    rates = {n: round(r, 3) for n in STATE_NAMES if (r := view.rate(n)) is not None}
    # Summaries change while a finding stays (counts, and with --trace the processes and
    # rates of the last interval): each line carries the current ones.
    summaries = {fid: a.summary for fid, a in view.active.items()}
    return json.dumps({**p.as_json(), "rates_per_second": rates, "events": events,
                       "summaries": summaries, "forecasts": p.forecasts})


def screen(view: View, where: str, interval: float) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    assert view.last is not None
    p = view.last.point
    status = _("PAUSED — p resumes") if view.paused else _f("every {s:g} s", s=interval)
    head = Text(f"tcpdoctor watch · {tr(where)} · {iso(p.ts, 'seconds')[11:19]} · {status} · "
                + _("g grouping · p pause · q quit"), style="bold")
    states = Table(show_edge=False, expand=False)
    span = len(view.times)
    for name, justify in ((_("state"), "left"), (_("count"), "right"), ("Δ/s", "right"),
                          (_f("Δ {n} samples", n=span), "right"),
                          (_("last samples"), "left")):
        states.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in STATE_NAMES:
        n = p.states[name]
        if not n and not any(view.counts[name]):
            continue
        r = view.rate(name)
        window = view.counts[name]
        states.add_row(name, f"{n:,}", "" if r is None else f"{r:+,.1f}",
                       f"{window[-1] - window[0]:+,}", sparkline(list(window)))
    states.add_section()
    states.add_row(_("total"), f"{p.total:,}")
    states.add_row(_("established"), f"{p.established:,}")
    states.add_row(_("non_established"), f"{p.total - p.established:,}")
    parts: list[Any] = [head, Text(""), states, Text("")]
    soon = _nearest(p.forecasts)
    if soon is not None:
        parts.extend([Text(_("Nearest exhaustion: ") + sentence_of(soon), style="bold red"),
                      Text("")])
    parts.extend(_top_table(view))
    parts.append(Text(""))
    parts.extend(_findings(view))
    return Group(*parts)


def _top_table(view: View) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    assert view.last is not None
    focus = view.growing()
    dim = view.dims[view.dim]
    if not focus:
        return [Text(_f("Top {dim}: no non-established sockets", dim=_(dim)))]
    snap = view.last.snap
    result = group(snap.select(filter_mask(snap, states=focus)), [dim], limit=8)
    title = Text(_f("Top {dim} in {states} (g: next grouping)", dim=_(dim),
                    states=", ".join(focus)), style="bold")
    table = Table(show_edge=False)
    table.add_column(_(dim))
    table.add_column(_("sockets"), justify="right")
    table.add_column(_("states"))
    for g in result.groups:
        table.add_row(" ".join(key_text(g["key"])), f"{g['count']:,}",
                      ", ".join(f"{s} {n:,}" for s, n in g["states"].items()))
    if result.other:
        table.add_row(_("other"), f"{result.other:,}", "")
    return [title, table]


def _findings(view: View) -> list[Any]:
    from rich.text import Text

    out: list[Any] = [Text(_("Findings"), style="bold")]
    if not view.active:
        out.append(Text("  " + _("none active")))
    for fid, a in view.active.items():
        out.append(Text(f"  {a.severity:8} " + _f("{id} since {time}: {summary}", id=fid,
                                                  time=iso(a.since)[11:19], summary=a.summary),
                        style=SEVERITY_STYLE.get(a.severity, "")))
    for fid, when in view.cleared:
        out.append(Text("  " + _f("cleared  {id} at {time}", id=fid, time=iso(when)[11:19]),
                        style="dim"))
    return out
