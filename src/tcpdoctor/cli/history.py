"""`record` and `history`: option handling and output; the work is in tcpdoctor.history."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from tcpdoctor.cli.options import SocketOptions, socket_options, threshold_options
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
from tcpdoctor.history.sampler import Point, Sampler
from tcpdoctor.history.store import History, Stored, default_path
from tcpdoctor.render import history as history_text


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
                sys.stdout.write(history_text.sample_line(sid, p) + "\n")
            sys.stdout.flush()

        def pruned(expired: int, thinned: int) -> None:
            if (expired or thinned) and not opts.quiet:
                sys.stderr.write(f"retention: {expired} samples expired, {thinned} merged "
                                 "by downsampling\n")

        record(history, sampler, opts.interval, opts.count, retention, stored, pruned)


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
    from tcpdoctor.history.html import render
    from tcpdoctor.system.atomic import atomic_write

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
        history_text.table(samples[-o.last:], states, len(samples))


def _compare(db: History, o: HistoryOptions) -> None:
    if len(o.compare) != 2:
        raise TcpDoctorError("--compare takes two windows: --compare A..B C..D")
    result = compare(db, [parse_window(w) for w in o.compare], o.limit)
    if o.as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    sys.stdout.write(history_text.compare_text(result))


def sampler(sock: SocketOptions, thresholds: Any, top_n: int) -> Sampler:
    """The sampler of the long-running `watch` and `record` (memory flat over days)."""
    from tcpdoctor.diagnose import Diagnoser
    from tcpdoctor.system.malloc import limit_malloc_arenas

    limit_malloc_arenas()
    return Sampler(Diagnoser(sock.target(), thresholds), top_n)


@click.command()
@click.option("--db", metavar="PATH",
              help="History database [default: /var/lib/tcpdoctor/history.db as root, "
                   "else $XDG_STATE_HOME/tcpdoctor/history.db].")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between samples.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N samples "
              "(default: until stopped).")
@click.option("--keep", default="14d", show_default=True, help="Delete samples older than this.")
@click.option("--downsample-after", default="1d", show_default=True,
              help="Thin samples older than this ...")
@click.option("--downsample-to", "bucket", default="5m", show_default=True,
              help="... to one per period (the one with most non-established sockets).")
@click.option("--top", "top_n", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Groups kept per state for remote IP, service port and process.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@socket_options("record")
@threshold_options
def record_command(sock: SocketOptions, thresholds: Any, db: str | None, interval: float,
                   count: int | None, keep: str, downsample_after: str, bucket: str,
                   top_n: int, quiet: bool) -> None:
    """Sample states, kernel figures, top groups and findings into the history database.

    \b
    SQLite in WAL mode, one transaction per sample: a kill at any moment loses at most the
    sample being written. SIGTERM (systemd stop) and Ctrl-C stop cleanly. Old samples are
    thinned, then deleted (--downsample-after, --keep), at start and hourly. --json prints
    each stored sample as one JSON line.

    \b
    Examples:
      sudo tcpdoctor record                        every 10 s until stopped
      tcpdoctor record --db /tmp/h.db --interval 1 --count 60
      sudo systemctl enable --now tcpdoctor-record  (contrib/systemd)
    """
    run_record(RecordOptions(db, interval, count, keep, downsample_after, bucket,
                             sock.as_json, quiet), sampler(sock, thresholds, top_n))


@click.command()
@click.option("--db", metavar="PATH", help="History database (default as for record).")
@click.option("--since", metavar="WHEN", help="From: 2h (ago), 1d, 2026-11-24T08:00, now.")
@click.option("--until", metavar="WHEN", help="To (same forms as --since).")
@click.option("--state", "states", multiple=True,
              help="Only these states in the table/JSON/CSV (repeatable): close-wait, ...")
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout (spec shape).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
@click.option("--plot", metavar="FILE.png", help="Draw states and findings over time "
              "(needs the plot extra: matplotlib).")
@click.option("--html", metavar="FILE", help="Write a self-contained page with interactive "
              "charts: states, findings timeline, top owners, remotes and ports.")
@click.option("--compare", nargs=2, metavar="A..B C..D",
              help="Compare two windows, e.g. before and after tuning: --compare 2d..1d 1d..now")
@click.option("--last", default=40, show_default=True, type=click.IntRange(min=1),
              help="Table rows shown (the most recent samples).")
@click.option("-n", "limit", default=5, show_default=True, type=click.IntRange(min=1),
              help="Top groups per dimension in --compare.")
def history_command(db: str | None, since: str | None, until: str | None,
                    states: tuple[str, ...], as_json: bool, as_csv: bool, plot: str | None,
                    html: str | None, compare: tuple[str, ...] | None, last: int,
                    limit: int) -> None:
    """Query the history database: table, JSON, CSV, a PNG plot, an HTML report, or
    a before/after comparison of two windows.

    \b
    Examples:
      tcpdoctor history --since 2h
      tcpdoctor history --since 1d --state close-wait --csv > cw.csv
      tcpdoctor history --since 1d --html report.html
      tcpdoctor history --compare 2d..1d 1d..now
    """
    run_history(HistoryOptions(db, since, until, states, as_json, as_csv, plot, html,
                               tuple(compare or ()), last, limit))


record_command.name = "record"
history_command.name = "history"
COMMANDS = (record_command, history_command)
