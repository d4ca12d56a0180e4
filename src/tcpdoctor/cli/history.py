"""`record` and `history`: the commands (bodies in history_run.py); the work is in
tcpdoctor.history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tcpdoctor.cli.options import SocketOptions, socket_options, threshold_options

if TYPE_CHECKING:
    from tcpdoctor.history.series import Series


def series(sock: SocketOptions, thresholds: Any, top_n: int,
           namespaces: int = 10, trace: bool = False) -> Series:
    """The readings of the long-running `watch` and `record` (memory flat over days); with
    --netns all, every namespace per reading; with trace, the kernel's tracepoints read all
    along (one namespace)."""
    from tcpdoctor.diagnose.repeat import Repeated
    from tcpdoctor.history.series import Series
    from tcpdoctor.util.malloc import limit_malloc_arenas

    limit_malloc_arenas(long_running=True)
    repeat = Repeated(sock.target(every_netns=sock.all_netns), thresholds,
                      every_netns=sock.all_netns, trace=trace)
    return Series(repeat, top_n, namespaces)


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
@click.option("-n", "--top", "top_n", default=5, show_default=True,
              type=click.IntRange(1, 100),
              help="Groups kept per state for remote IP, service port and process.")
@click.option("--namespaces", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="With --netns all: the namespaces with the most sockets stored per sample.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@socket_options("record")
@threshold_options
def record_command(sock: SocketOptions, thresholds: Any, db: str | None, interval: float,
                   count: int | None, keep: str, downsample_after: str, bucket: str,
                   top_n: int, namespaces: int, quiet: bool) -> None:
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
      sudo tcpdoctor record --netns all --namespaces 20   one sample per namespace
    """
    from tcpdoctor.cli.history_run import RecordOptions, run_record

    run_record(RecordOptions(db, interval, count, keep, downsample_after, bucket,
                             sock.as_json, quiet), series(sock, thresholds, top_n, namespaces))


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
@click.option("-n", "--top", "limit", default=5, show_default=True,
              type=click.IntRange(min=1),
              help="Top groups per dimension in --compare.")
@click.option("--netns", metavar="NAME",
              help="The samples of this namespace (`host` for the host's), when the "
                   "history holds several (record --netns all); default: the host's.")
def history_command(db: str | None, since: str | None, until: str | None,
                    states: tuple[str, ...], as_json: bool, as_csv: bool, plot: str | None,
                    html: str | None, compare: tuple[str, ...] | None, last: int,
                    limit: int, netns: str | None) -> None:
    """Query the history database: table, JSON, CSV, a PNG plot, an HTML report, or
    a before/after comparison of two windows.

    \b
    Examples:
      tcpdoctor history --since 2h
      tcpdoctor history --since 1d --state close-wait --csv > cw.csv
      tcpdoctor history --since 1d --html report.html
      tcpdoctor history --compare 2d..1d 1d..now
      tcpdoctor history --netns 'pod:shop/cart-7d9f (app)' --since 1h
    """
    from tcpdoctor.cli.history_run import HistoryOptions, run_history

    run_history(HistoryOptions(db, since, until, states, as_json, as_csv, plot, html,
                               tuple(compare or ()), last, limit, netns))


record_command.name = "record"
history_command.name = "history"
COMMANDS = (record_command, history_command)
