"""The bodies of `record` and `history`: recording with retention, and querying as table,
JSON, CSV, plot, page or comparison (what they print goes through render)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

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
    trend_forecasts,
)
from tcpdoctor.history.recorder import Retention, record
from tcpdoctor.history.series import Series
from tcpdoctor.history.store import History, default_path
from tcpdoctor.i18n import Msg, _, _f
from tcpdoctor.model.history import Point, Stored
from tcpdoctor.render import history as history_text
from tcpdoctor.render.output import emit_json, emit_ndjson, write


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


def run_record(opts: RecordOptions, series: Series) -> None:
    retention = Retention(parse_duration(opts.keep, "--keep"),
                          parse_duration(opts.downsample_after, "--downsample-after"),
                          parse_duration(opts.bucket, "--downsample-to"))
    if retention.downsample_after > retention.keep:
        raise TcpDoctorError(Msg("--downsample-after must not be longer than --keep"))
    path = opts.db or default_path()
    with History(path) as history:
        if not opts.quiet:
            sys.stderr.write(_f("recording to {path} every {s:g} s", path=path, s=opts.interval)
                             + ("" if opts.count is None else
                                _f(", {n} samples", n=opts.count)) + "\n")

        def stored(sid: int, p: Point) -> None:
            if opts.as_json:
                emit_ndjson({"id": sid, **p.as_json()})
            elif not opts.quiet:
                write(history_text.sample_line(sid, p) + "\n")

        def pruned(expired: int, thinned: int) -> None:
            if (expired or thinned) and not opts.quiet:
                sys.stderr.write(_f("retention: {expired} samples expired, {thinned} merged "
                                    "by downsampling", expired=expired, thinned=thinned)
                                 + "\n")

        record(history, series, opts.interval, opts.count, retention, stored, pruned)


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
    netns: str | None = None


def _focus(db: History, o: HistoryOptions) -> None:
    """One namespace's samples: --netns NAME ("host" for the host's), or the host's when
    the database holds several (record --netns all) and none was named."""
    recorded = db.namespaces()
    if o.netns is not None:
        want = None if o.netns == "host" else o.netns
        if want not in recorded:
            names = ", ".join(n or "host" for n in recorded) or "none"
            raise TcpDoctorError(Msg("--netns {netns}: no samples of it in {database} "
                                     "(recorded: {names})", netns=o.netns, database=db.path,
                                     names=names))
        db.focus(want)
    elif len(recorded) > 1:
        want = None if None in recorded else recorded[0]
        db.focus(want)
        others = [n or "host" for n in recorded if n != want]
        sys.stderr.write(_f("note: showing {shown}; the history also holds {n} other "
                            "namespace(s) ({names}): pick one with --netns NAME",
                            shown=want or "host", n=len(others), names=", ".join(others[:5]))
                         + "\n")


def run_history(o: HistoryOptions) -> None:
    parse_states(o.states)  # a bad --state is said before the database is opened
    path = o.db or default_path()
    with History(path, create=False) as db:
        for note in db.notes:
            sys.stderr.write(_f("note: {note}", note=note) + "\n")
        _focus(db, o)
        if o.compare:
            _compare(db, o)
            return
        since = parse_when(o.since, "--since") if o.since else None
        until = parse_when(o.until, "--until") if o.until else None
        samples = db.samples(since, until)
        if not samples and not o.as_json:
            raise TcpDoctorError(Msg("{path}: no samples in the requested period", path=path))
        title = _f("TCP sockets on {host}", host=samples[-1].host) if samples else _("TCP sockets")
        if o.plot:
            from tcpdoctor.history.plot import plot

            plot(samples, o.plot, title)
            sys.stderr.write(_f("wrote {path}", path=o.plot) + "\n")
        if o.html:
            _write_html(db, samples, o.html, title)
        if o.plot or o.html:
            return
        _print_samples(db, samples, o)


def _write_html(db: History, samples: list[Stored], path: str, title: str) -> None:
    from tcpdoctor.history.html import render
    from tcpdoctor.util.atomic import atomic_write

    atomic_write(path, render(db, samples, title))
    sys.stderr.write(_f("wrote {path} ({n} samples)", path=path, n=len(samples)) + "\n")


def _print_samples(db: History, samples: list[Stored], o: HistoryOptions) -> None:
    states = parse_states(o.states) if o.states else busy_states(samples)
    if o.as_json:
        out = history_json(db, samples)
        if o.states:
            for s in out["samples"]:
                s["states"] = {k: v for k, v in s["states"].items() if k in states}
        emit_json(out)
    elif o.as_csv:
        write(history_csv(samples, states))
    else:
        history_text.table(samples[-o.last:], states, len(samples))
        history_text.trend_lines([f.as_json() for f in trend_forecasts(samples)])


def _compare(db: History, o: HistoryOptions) -> None:
    if len(o.compare) != 2:
        raise TcpDoctorError(Msg("--compare takes two windows: --compare A..B C..D"))
    result = compare(db, [parse_window(w) for w in o.compare], o.limit)
    if o.as_json:
        emit_json(result)
        return
    write(history_text.compare_text(result))


