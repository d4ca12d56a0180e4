"""`record` and `history`: option handling and output; the work is in tcpdoctor.history."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.history.query import (
    busy_states,
    compare,
    history_csv,
    history_json,
    parse_duration,
    parse_states,
    parse_when,
    parse_window,
)
from tcpdoctor.history.recorder import Retention, record
from tcpdoctor.history.sampler import Point, Sampler, iso
from tcpdoctor.history.store import History, Stored, default_path


@dataclass
class RecordOptions:
    db: str | None
    interval: float
    count: int | None
    keep: str
    downsample_after: str
    bucket: str
    as_json: bool
    quiet: bool


def run_record(opts: RecordOptions, sampler: Sampler) -> None:
    retention = Retention(parse_duration(opts.keep, "--keep"),
                          parse_duration(opts.downsample_after, "--downsample-after"),
                          parse_duration(opts.bucket, "--downsample-to"))
    if retention.downsample_after > retention.keep:
        raise TcpDoctorError("--downsample-after must not be longer than --keep")
    path = opts.db or default_path()
    with History(path) as history:
        if not opts.quiet:
            sys.stderr.write(f"recording to {path} every {opts.interval:g} s"
                             f"{'' if opts.count is None else f', {opts.count} samples'}\n")

        def stored(sid: int, p: Point) -> None:
            if opts.as_json:
                sys.stdout.write(json.dumps({"id": sid, **p.as_json()}) + "\n")
            elif not opts.quiet:
                sys.stdout.write(_sample_line(sid, p) + "\n")
            sys.stdout.flush()

        def pruned(expired: int, thinned: int) -> None:
            if (expired or thinned) and not opts.quiet:
                sys.stderr.write(f"retention: {expired} samples expired, {thinned} merged "
                                 "by downsampling\n")

        record(history, sampler, opts.interval, opts.count, retention, stored, pruned)


def _sample_line(sid: int, p: Point) -> str:
    busy = " ".join(f"{k}={v}" for k, v in p.states.items() if v)
    ids = ",".join(f["id"] for f in p.findings) or "-"
    return (f"{p.taken_at} sample {sid}: total={p.total} "
            f"non_established={p.total - p.established} {busy} findings={ids}")


@dataclass
class HistoryOptions:
    db: str | None
    since: str | None
    until: str | None
    states: tuple[str, ...]
    as_json: bool
    as_csv: bool
    plot: str | None
    html: str | None
    compare: tuple[str, ...]
    last: int
    limit: int


def run_history(o: HistoryOptions) -> None:
    path = o.db or default_path()
    with History(path, create=False) as db:
        if o.compare:
            _compare(db, o)
            return
        since = parse_when(o.since, "--since") if o.since else None
        until = parse_when(o.until, "--until") if o.until else None
        samples = db.samples(since, until)
        if not samples and not o.as_json:
            raise TcpDoctorError(f"{path}: no samples in the requested period")
        title = f"TCP sockets on {samples[-1].host}" if samples else "TCP sockets"
        if o.plot:
            from tcpdoctor.history.plot import plot

            plot(samples, o.plot, title)
            sys.stderr.write(f"wrote {o.plot}\n")
        if o.html:
            _write_html(db, samples, o.html, title)
        if o.plot or o.html:
            return
        _print_samples(db, samples, o)


def _write_html(db: History, samples: list[Stored], path: str, title: str) -> None:
    from tcpdoctor.atomic import atomic_write
    from tcpdoctor.history.html import render

    atomic_write(path, render(db, samples, title))
    sys.stderr.write(f"wrote {path} ({len(samples)} samples)\n")


def _print_samples(db: History, samples: list[Stored], o: HistoryOptions) -> None:
    states = parse_states(o.states) if o.states else busy_states(samples)
    if o.as_json:
        out = history_json(db, samples)
        if o.states:
            for s in out["samples"]:
                s["states"] = {k: v for k, v in s["states"].items() if k in states}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    elif o.as_csv:
        sys.stdout.write(history_csv(samples, states))
    else:
        _table(samples[-o.last:], states, len(samples))


def _table(samples: list[Stored], states: list[str], total: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for name in ("time", "total", "non_estab", *states, "findings"):
        table.add_column(name, justify="left" if name in ("time", "findings") else "right",
                         no_wrap=name == "time")
    for s in samples:
        when = iso(s.ts, "seconds")[:19].replace("T", " ")
        table.add_row(when, f"{s.total:,}", f"{s.total - s.established:,}",
                      *(f"{s.states[n]:,}" for n in states),
                      ", ".join(f["id"] for f in s.findings) or "-")
    # Piped output is not cut at 80 columns: rows are records that scripts and tickets keep.
    con = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    con.print(table)
    if total > len(samples):
        con.print(f"(last {len(samples)} of {total} samples; --last N, --since, --json "
                  "or --csv for more)")


def _compare(db: History, o: HistoryOptions) -> None:
    if len(o.compare) != 2:
        raise TcpDoctorError("--compare takes two windows: --compare A..B C..D")
    result = compare(db, [parse_window(w) for w in o.compare], o.limit)
    if o.as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    sys.stdout.write(compare_text(result))


def compare_text(result: dict[str, Any]) -> str:
    a, b = result["windows"]
    lines = [f"before: {a['from']} .. {a['to']} ({a['samples']} samples)",
             f"after:  {b['from']} .. {b['to']} ({b['samples']} samples)", "",
             f"{'':14}{'mean before':>12}{'mean after':>12}{'change':>10}{'max after':>11}"]
    for name, change in result["change_of_mean"].items():
        before = a["total"] if name == "total" else a["states"].get(name, {"mean": 0, "max": 0})
        after = b["total"] if name == "total" else b["states"].get(name, {"mean": 0, "max": 0})
        lines.append(f"{name:14}{before['mean']:>12,.1f}{after['mean']:>12,.1f}"
                     f"{change:>+10,.1f}{after['max']:>11,}")
    for label, key in (("appeared", b), ("resolved", a)):
        other = a if key is b else b
        ids = sorted(set(key["findings"]) - set(other["findings"]))
        lines.append(f"findings {label}: {', '.join(ids) or '-'}")
    both = sorted(set(a["findings"]) & set(b["findings"]))
    lines.append(f"findings in both: {', '.join(both) or '-'}")
    for name, w in (("before", a), ("after", b)):
        for dim, rows in w["top"].items():
            shown = ", ".join(f"{r['key']} {r['state']} ({r['mean']:,.1f})" for r in rows[:3])
            lines.append(f"top {dim} {name}: {shown}")
    return "\n".join(lines) + "\n"
