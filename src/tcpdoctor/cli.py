"""Command-line interface. Parses options, calls sources and analysis, hands results to render."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from tcpdoctor import __version__
from tcpdoctor.errors import TcpDoctorError

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3

F = Callable[..., Any]


def snapshot_options(fn: F) -> F:
    """Options every live command shares (SPEC.md: common options)."""
    opts = [
        click.option("--json", "as_json", is_flag=True,
                     help="Machine output on stdout (nothing else there)."),
        click.option("--netns", metavar="NAME|PATH",
                     help="Inspect another network namespace (/run/netns/NAME or "
                          "/proc/PID/ns/net)."),
        click.option("-4", "ipv4_only", is_flag=True, help="IPv4 sockets only."),
        click.option("-6", "ipv6_only", is_flag=True, help="IPv6 sockets only."),
        click.option("--source", type=click.Choice(["auto", "netlink", "procfs"]),
                     default="auto", show_default=True,
                     help="Where to read sockets from (auto = netlink, else /proc/net/tcp)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def families(ipv4_only: bool, ipv6_only: bool) -> tuple[bool, bool]:
    if ipv4_only and ipv6_only:
        return True, True
    return (not ipv6_only, not ipv4_only)


class DefaultGroup(click.Group):
    """`tcpdoctor` alone (or with only options) runs `check`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h",
                                                                      "--version")):
            args = ["check", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tcpdoctor")
def cli() -> None:
    """Find out why this server's TCP connections are exploding, and how to fix it.

    \b
    Examples:
      tcpdoctor                          diagnose this host (same as `tcpdoctor check`)
      tcpdoctor states                   counts per TCP state
      tcpdoctor top --by remote-ip,state -n 5
      tcpdoctor check --netns blue --json
      tcpdoctor watch                    live view, q quits
      tcpdoctor record --interval 10 &   history; then: tcpdoctor history --html report.html
    """


@cli.command()
@snapshot_options
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
def states(as_json: bool, netns: str | None, ipv4_only: bool, ipv6_only: bool, source: str,
           as_csv: bool) -> None:
    """Counts per TCP state, plus total, established and non_established.

    \b
    All 11 kernel states are listed, zeros included; request sockets (NEW_SYN_RECV) count
    as SYN_RECV and LISTEN counts in total, as `ss -tan` lists them.

    \b
    Examples:
      tcpdoctor states
      tcpdoctor states --json | jq .non_established
      tcpdoctor states --netns blue -4 --csv
    """
    from tcpdoctor.sources.collect import take_snapshot

    v4, v6 = families(ipv4_only, ipv6_only)
    snap = take_snapshot(source, netns, v4, v6, want=frozenset({"state"}))
    summary = snap.summary()
    if as_json:
        from tcpdoctor.render import emit_json

        emit_json({"schema": 1, "source": snap.source, **summary})
        render_notes(snap.notes)
        return
    from tcpdoctor import render

    if as_csv:
        render.states_csv(summary)
    else:
        where = f" in netns {netns}" if netns else ""
        render.states_table(summary, f"TCP sockets on {snap.host}{where} ({snap.source})")
    render.notes(snap.notes)


@cli.command()
@snapshot_options
@click.option("--by", "by", default="remote-ip", show_default=True,
              help="Grouping, comma-separated: remote-ip, remote-net, local-port, remote-port, "
                   "service-port (listening port, else remote port), process, state.")
@click.option("--state", "state_filter", multiple=True,
              help="Only these states (repeatable): time-wait, close-wait, ..., non-established.")
@click.option("--port", "ports", multiple=True, type=int,
              help="Only sockets with this local or remote port (repeatable).")
@click.option("--ip", "ips", multiple=True,
              help="Only sockets whose remote address is in ADDR[/PREFIX] (repeatable).")
@click.option("--pid", "pids", multiple=True, type=int, help="Only sockets of this pid.")
@click.option("-n", "limit", default=10, show_default=True, type=click.IntRange(min=1),
              help="Show the N largest groups; the rest is counted in 'other'.")
@click.option("--prefix", "prefix", default="24,64", show_default=True,
              help="Prefix lengths for remote-net: IPv4,IPv6.")
@click.option("--no-processes", is_flag=True, help="Skip the owner lookup.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
def top(as_json: bool, netns: str | None, ipv4_only: bool, ipv6_only: bool, source: str,
        by: str, state_filter: tuple[str, ...], ports: tuple[int, ...], ips: tuple[str, ...],
        pids: tuple[int, ...], limit: int, prefix: str, no_processes: bool,
        as_csv: bool) -> None:
    """The largest groups of sockets, by remote IP, network, port, process or state.

    \b
    Examples:
      tcpdoctor top --by remote-ip,state -n 5     who holds the most connections, per state
      tcpdoctor top --by process --state close-wait   which process leaks CLOSE_WAIT
      tcpdoctor top --by local-port --state time-wait
      tcpdoctor top --ip 203.0.113.7 --by state   every connection of one client
      tcpdoctor top --by remote-net --prefix 16,48
    """
    from tcpdoctor.analysis import groups
    from tcpdoctor.sources.collect import take_snapshot

    keys = groups.parse_by(by)
    p4, p6 = _parse_prefix(prefix)
    want_owner = ("process" in keys or bool(pids)) and not no_processes
    v4, v6 = families(ipv4_only, ipv6_only)
    snap = take_snapshot(source, netns, v4, v6, with_owners=want_owner)
    if "process" in keys and not want_owner:
        raise TcpDoctorError("--by process needs owner lookup (drop --no-processes)")
    snap = snap.select(groups.filter_mask(snap, list(state_filter), list(ports), list(ips),
                                          list(pids)))
    result = groups.group(snap, keys, limit, p4, p6)
    if as_json:
        from tcpdoctor.render import emit_json

        emit_json(result.as_json())
        render_notes(snap.notes)
        return
    from tcpdoctor import render

    if as_csv:
        render.groups_csv(result)
    else:
        render.groups_table(result, f"Top {limit} by {', '.join(keys)} "
                                    f"({result.total:,} sockets matched)")
    render.notes(snap.notes)


def render_notes(lines: list[str]) -> None:
    for line in lines:
        sys.stderr.write(f"note: {line}\n")


def check_options(fn: F) -> F:
    opts = [
        click.option("--config", type=click.Path(dir_okay=False),
                     help="TOML file of thresholds: [thresholds.RULE_ID] key = value."),
        click.option("--threshold", "thresholds", multiple=True, metavar="ID.KEY=VALUE",
                     help="Override one threshold, e.g. CLOSE_WAIT_LEAK.warning=50."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@cli.command()
@snapshot_options
@check_options
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between the two counter samples (0: one sample, no rates).")
@click.option("--no-processes", is_flag=True, help="Skip the owner lookup.")
def check(as_json: bool, netns: str | None, ipv4_only: bool, ipv6_only: bool, source: str,
          config: str | None, thresholds: tuple[str, ...], interval: float,
          no_processes: bool) -> int:
    """Diagnose this host: every rule, with evidence, owners and fixes. The main job.

    \b
    Exit codes: 0 healthy, 1 warning, 2 critical, 3 could not run.

    \b
    Examples:
      tcpdoctor                          same as `tcpdoctor check`
      tcpdoctor check --json | jq '.findings[].id'
      tcpdoctor check --netns blue --interval 5
      tcpdoctor check --threshold CLOSE_WAIT_LEAK.warning=20
    """
    from tcpdoctor.analysis.check import load_thresholds, run_rules
    from tcpdoctor.analysis.findings import Context
    from tcpdoctor.sources import kstate
    from tcpdoctor.sources.live import sample

    th = load_thresholds(config, list(thresholds))
    v4, v6 = families(ipv4_only, ipv6_only)
    got = sample(netns, interval, source, v4, v6, with_owners=not no_processes)
    ctx = Context(got.snap, got.kernel, got.deltas, got.interval,
                  got.owners.fd_counts if got.owners else None, kstate.nofile_limit)
    report = run_rules(ctx, th)
    return _emit_report(report, as_json)


@cli.command()
@click.argument("scenario", required=False)
@click.option("--n", "count", type=click.IntRange(min=1), help="How many sockets to build.")
@click.option("--hold", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to hold the pathology before tearing it down.")
@click.option("--list", "list_all", is_flag=True, help="List the scenarios.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab's details as JSON.")
def lab(scenario: str | None, count: int | None, hold: float, list_all: bool,
        as_json: bool) -> None:
    """Build a pathology in a throwaway network namespace and hold it (root only).

    \b
    Traffic stays inside two namespaces the lab creates (198.18.0.0/15, RFC 2544);
    everything is removed on exit, Ctrl-C or SIGTERM.

    \b
    Examples:
      tcpdoctor lab --list
      sudo tcpdoctor lab close-wait --hold 60 &
      sudo tcpdoctor check --netns <printed name>
    """
    from tcpdoctor.lab import runner

    if list_all or scenario is None:
        runner.list_scenarios()
        return
    runner.run(scenario, count, hold, as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout.")
@click.option("--netns", metavar="NAME|PATH", help="Audit/apply in another network namespace.")
@click.option("--audit-file", "audit_files", multiple=True, type=click.Path(dir_okay=False),
              help="Audit this file instead of the system's sysctl configuration "
                   "(repeatable, applied in order).")
@click.option("--write", "write_path", type=click.Path(dir_okay=False),
              help="Write the drop-in to FILE (atomically). With --apply: put it there "
                   "instead of /etc/sysctl.d/99-tcpdoctor.conf.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Write the drop-in and apply its values now, saving every previous value.")
@click.option("--rollback", "do_rollback", is_flag=True,
              help="Restore the values saved by --apply and remove (or restore) the drop-in.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Add a value to the drop-in (validated like the rest).")
@click.option("--explain", metavar="KEY", help="Explain one key in plain words and exit.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between counter samples for the evidence (0: no rates).")
@click.option("--state-dir", default="/var/lib/tcpdoctor", show_default=True,
              help="Where --apply keeps its backups.")
def tune(as_json: bool, netns: str | None, audit_files: tuple[str, ...],
         write_path: str | None, do_apply: bool, do_rollback: bool, sets: tuple[str, ...],
         explain: str | None, interval: float, state_dir: str) -> int:
    """Audit sysctls against the running kernel; print, write, apply or roll back a drop-in.

    \b
    Dry run by default. Obsolete or harmful settings (tcp_tw_recycle, a tiny
    tcp_max_tw_buckets, syncookies off, ...) are flagged where they are configured;
    values are recommended only with evidence (e.g. somaxconn after accept-queue
    overflows) and never outside the key's valid range.

    \b
    Examples:
      tcpdoctor tune                             audit this host
      tcpdoctor tune --audit-file /etc/sysctl.conf --json
      tcpdoctor tune --explain net.ipv4.tcp_fin_timeout
      sudo tcpdoctor tune --apply                write /etc/sysctl.d/99-tcpdoctor.conf, apply
      sudo tcpdoctor tune --rollback             restore the saved values
    """
    from tcpdoctor.tune_cli import run_tune

    return run_tune(as_json, netns, list(audit_files), write_path, do_apply, do_rollback,
                    list(sets), explain, interval, state_dir)


@cli.command()
@click.option("--listen", default="127.0.0.1:9816", show_default=True, metavar="HOST:PORT",
              help="Address to serve /metrics on (loopback by default).")
@click.option("--netns", "netns_list", multiple=True, metavar="NAME|PATH",
              help="Export this network namespace (repeatable) instead of the host's.")
@click.option("--all-netns", is_flag=True,
              help="Export the host and every namespace under /run/netns.")
@click.option("--top", "top_n", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Per-port and per-remote series: the N largest, the rest as 'other'.")
@click.option("--max-scrape-seconds", default=10.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Slower samples are answered with the previous one, flagged stale.")
@click.option("--processes", is_flag=True,
              help="Look up owners each scrape (enables FD_LIMIT; costs a /proc scan).")
@click.option("--textfile", "textfile_dir", type=click.Path(file_okay=False),
              help="Write DIR/tcpdoctor.prom for node_exporter's textfile collector instead "
                   "of serving HTTP.")
@click.option("--interval", default=15.0, show_default=True, type=click.FloatRange(min=0),
              help="With --textfile: seconds between writes.")
@click.option("--once", is_flag=True, help="With --textfile: write once and exit.")
@click.option("--web-config-file", type=click.Path(dir_okay=False),
              help="TLS and basic auth, in the Prometheus exporter-toolkit format.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
def exporter(listen: str, netns_list: tuple[str, ...], all_netns: bool, top_n: int,
             max_scrape_seconds: float, processes: bool, textfile_dir: str | None,
             interval: float, once: bool, web_config_file: str | None, verbose: bool) -> None:
    """Prometheus metrics: states, top ports and remotes, findings, kernel limits.

    \b
    Examples:
      tcpdoctor exporter                          serve http://127.0.0.1:9816/metrics
      tcpdoctor exporter --listen 0.0.0.0:9816 --web-config-file web.yml
      tcpdoctor exporter --all-netns
      tcpdoctor exporter --textfile /var/lib/node_exporter/textfile --once
    """
    from tcpdoctor.exporter_run import run_exporter

    run_exporter(listen, list(netns_list), all_netns, top_n, max_scrape_seconds, processes,
                 textfile_dir, interval, once, web_config_file, verbose)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout.")
@click.option("--proc-dir", type=click.Path(file_okay=False),
              help="Saved /proc files (sockstat, netstat, snmp; or a /proc-like tree) to "
                   "analyse with the sockets.")
@click.option("--strict", is_flag=True, help="Lines that cannot be parsed are an error.")
@click.option("--reduce-above", default=1_000_000, show_default=True, metavar="SOCKETS",
              type=click.IntRange(min=1),
              help="Bigger text dumps are folded into one row per distinct kind of socket "
                   "(exact counts and findings, bounded memory; ephemeral ports folded).")
@check_options
def analyze(files: tuple[str, ...], as_json: bool, proc_dir: str | None, strict: bool,
            reduce_above: int, config: str | None, thresholds: tuple[str, ...]) -> int:
    """The check report from saved output, format auto-detected ('-' reads stdin).

    \b
    Reads ss -tan[poime] (with or without -H), netstat -an[tpo], Windows netstat -ano,
    /proc/net/tcp and tcp6, raw `ss -D FILE` netlink dumps and tcpdoctor snapshots
    (gzip-compressed or not). Several files are analysed together.

    \b
    Examples:
      tcpdoctor analyze ticket-netstat.txt
      ssh web1 ss -tanpi | tcpdoctor analyze -
      tcpdoctor analyze tcp.txt tcp6.txt --proc-dir saved-proc/ --json
      tcpdoctor analyze huge-netstat.txt.gz     (streamed: memory follows distinct kinds)
    """
    from tcpdoctor.analysis.check import load_thresholds, run_rules
    from tcpdoctor.analysis.findings import Context
    from tcpdoctor.sources import offline

    th = load_thresholds(config, list(thresholds))
    saved = offline.proc_dir_state(proc_dir) if proc_dir else None
    ports = saved.sysctl_ints("net.ipv4.ip_local_port_range") if saved else None
    port_range = (ports[0], ports[1]) if ports and len(ports) == 2 else None
    loaded = [offline.load(f, strict, reduce_above, port_range) for f in files]
    snap = offline.merge([s for s, _, _ in loaded])
    kernel = saved or next((k for _, k, _ in loaded if k is not None), None)
    report = run_rules(Context(snap, kernel), th)
    return _emit_report(report, as_json)


@cli.command()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write (gzip-compressed when it ends in .gz).")
@click.option("--netns", metavar="NAME|PATH", help="Snapshot another network namespace.")
@click.option("--no-processes", is_flag=True, help="Skip the owner lookup.")
def snapshot(output: str, netns: str | None, no_processes: bool) -> None:
    """Save every socket, owners, sysctls and counters to a versioned JSON file.

    \b
    Examples:
      tcpdoctor snapshot -o before.json.gz
      tcpdoctor analyze before.json.gz
      tcpdoctor diff before.json.gz after.json.gz
    """
    from tcpdoctor import snapshot_file
    from tcpdoctor.sources.live import sample

    got = sample(netns, 0.0, with_owners=not no_processes)
    snapshot_file.write(output, got.snap, got.kernel)
    sys.stderr.write(f"wrote {len(got.snap):,} sockets to {output}\n")


@cli.command()
@click.argument("before")
@click.argument("after")
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout.")
@click.option("-n", "limit", default=5, show_default=True, type=click.IntRange(min=1),
              help="Groups to show per dimension.")
def diff(before: str, after: str, as_json: bool, limit: int) -> None:
    """Compare two snapshots (or any inputs `analyze` reads): states, top movers, findings,
    sysctls.

    \b
    Examples:
      tcpdoctor snapshot -o before.json.gz; (tune, deploy...); tcpdoctor snapshot -o after.json.gz
      tcpdoctor diff before.json.gz after.json.gz
    """
    from tcpdoctor.analysis.compare import compare, render_text

    result = compare(before, after, limit)
    if as_json:
        from tcpdoctor.render import emit_json

        emit_json(result)
    else:
        sys.stdout.write(render_text(result))


def _sampler(netns: str | None, source: str, no_processes: bool, top_n: int,
             config: str | None, thresholds: tuple[str, ...]) -> Any:
    """The sampler of the long-running `watch` and `record` (memory flat over days)."""
    from tcpdoctor.analysis.check import load_thresholds
    from tcpdoctor.history.sampler import Sampler
    from tcpdoctor.malloc import limit_malloc_arenas

    limit_malloc_arenas()

    th = load_thresholds(config, list(thresholds))
    return Sampler(netns, source, not no_processes, top_n, th)


@cli.command()
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between samples.")
@click.option("--netns", metavar="NAME|PATH", help="Watch another network namespace.")
@click.option("--source", type=click.Choice(["auto", "netlink", "procfs"]), default="auto",
              show_default=True, help="Where to read sockets from.")
@click.option("--by", "by", default="remote-ip", show_default=True,
              type=click.Choice(["remote-ip", "service-port", "process", "remote-net"]),
              help="First grouping of the top table (g cycles through them).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N samples.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per sample (with rates and finding events).")
@click.option("--no-processes", is_flag=True, help="Skip the owner lookup.")
@check_options
def watch(interval: float, netns: str | None, source: str, by: str, count: int | None,
          as_json: bool, no_processes: bool, config: str | None,
          thresholds: tuple[str, ...]) -> None:
    """Live view: states with rates and sparklines, top groups of the growing states,
    findings as they appear and clear.

    \b
    Keys: g switch grouping (remote IP, service port, process, remote /24), p pause, q quit.
    When stdout is not a terminal, prints one line per sample (and per finding event).

    \b
    Examples:
      tcpdoctor watch
      tcpdoctor watch --netns blue --interval 1 --by process
      tcpdoctor watch --count 30 > watch.log
      tcpdoctor watch --json | jq -c '{t: .taken_at, cw: .states.CLOSE_WAIT}'
    """
    from tcpdoctor import watch as w

    sampler = _sampler(netns, source, no_processes, 5, config, thresholds)
    dims = tuple(d for d in w.DIMS if d != "process" or not no_processes)
    view = w.View(dims, dims.index(by) if by in dims else 0)
    if sys.stdout.isatty() and sys.stdin.isatty() and not as_json:
        w.run_terminal(sampler, view, interval, netns or "host", count)
    else:
        w.run_lines(sampler, view, interval, count, as_json)


@cli.command()
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
@click.option("--netns", metavar="NAME|PATH", help="Record another network namespace.")
@click.option("--source", type=click.Choice(["auto", "netlink", "procfs"]), default="auto",
              show_default=True, help="Where to read sockets from.")
@click.option("--no-processes", is_flag=True, help="Skip the owner lookup.")
@click.option("--json", "as_json", is_flag=True, help="Print each stored sample as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@check_options
def record(db: str | None, interval: float, count: int | None, keep: str,
           downsample_after: str, bucket: str, top_n: int, netns: str | None, source: str,
           no_processes: bool, as_json: bool, quiet: bool, config: str | None,
           thresholds: tuple[str, ...]) -> None:
    """Sample states, kernel figures, top groups and findings into the history database.

    \b
    SQLite in WAL mode, one transaction per sample: a kill at any moment loses at most the
    sample being written. SIGTERM (systemd stop) and Ctrl-C stop cleanly. Old samples are
    thinned, then deleted (--downsample-after, --keep), at start and hourly.

    \b
    Examples:
      sudo tcpdoctor record                        every 10 s until stopped
      tcpdoctor record --db /tmp/h.db --interval 1 --count 60
      sudo systemctl enable --now tcpdoctor-record  (contrib/systemd)
    """
    from tcpdoctor.history_cli import RecordOptions, run_record

    run_record(RecordOptions(db, interval, count, keep, downsample_after, bucket, as_json,
                             quiet),
               _sampler(netns, source, no_processes, top_n, config, thresholds))


@cli.command()
@click.option("--db", metavar="PATH", help="History database (default as for record).")
@click.option("--since", metavar="WHEN", help="From: 2h (ago), 1d, 2026-11-24T08:00, now.")
@click.option("--until", metavar="WHEN", help="To (same forms as --since).")
@click.option("--state", "states", multiple=True,
              help="Only these states in the table/JSON/CSV (repeatable): close-wait, ...")
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout (SPEC shape).")
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
def history(db: str | None, since: str | None, until: str | None, states: tuple[str, ...],
            as_json: bool, as_csv: bool, plot: str | None, html: str | None,
            compare: tuple[str, ...] | None, last: int, limit: int) -> None:
    """Query the history database: table, JSON, CSV, a PNG plot, an HTML report, or
    a before/after comparison of two windows.

    \b
    Examples:
      tcpdoctor history --since 2h
      tcpdoctor history --since 1d --state close-wait --csv > cw.csv
      tcpdoctor history --since 1d --html report.html
      tcpdoctor history --compare 2d..1d 1d..now
    """
    from tcpdoctor.history_cli import HistoryOptions, run_history

    run_history(HistoryOptions(db, since, until, states, as_json, as_csv, plot, html,
                               tuple(compare or ()), last, limit))


def _emit_report(report: Any, as_json: bool) -> int:
    """The check/analyze report as JSON or text; returns the exit code (SPEC.md)."""
    if as_json:
        from tcpdoctor.render import emit_json

        emit_json(report.as_json())
    else:
        from tcpdoctor.report import render

        render(report)
    return int(report.exit_code())


def _parse_prefix(text: str) -> tuple[int, int]:
    try:
        p4, p6 = (int(x) for x in text.split(","))
    except ValueError:
        raise TcpDoctorError(f"--prefix: expected IPV4,IPV6 prefix lengths, got {text!r}") from None
    if not (0 <= p4 <= 32 and 0 <= p6 <= 128):
        raise TcpDoctorError(f"--prefix: lengths out of range in {text!r} (0-32, 0-128)")
    return p4, p6


def _run(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except TcpDoctorError as exc:
        sys.stderr.write(f"tcpdoctor: {exc}\n")
        return EXIT_UNKNOWN
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_UNKNOWN
    except click.exceptions.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tcpdoctor top | head`: stop quietly, as coreutils do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("TCPDOCTOR_DEBUG"):
            raise
        sys.stderr.write(f"tcpdoctor: internal error: {type(exc).__name__}: {exc} "
                         "(set TCPDOCTOR_DEBUG=1 for a traceback)\n")
        return EXIT_UNKNOWN
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit codes follow SPEC.md (0/1/2 health, 3 = could not run)."""
    result: list[int] = []

    def invoke() -> None:
        rc = cli.main(args=argv, prog_name="tcpdoctor", standalone_mode=False)
        result.append(rc if isinstance(rc, int) else 0)

    code = _run(invoke)
    sys.exit(code if code != EXIT_OK else (result[0] if result else 0))

