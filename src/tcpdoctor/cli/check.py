"""`check` (this host now) and `analyze` (saved captures): the same report either way."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from tcpdoctor.cli.options import (
    SocketOptions,
    alertmanager_client,
    alertmanager_options,
    can_trace,
    default_scope,
    socket_options,
    threshold_options,
)
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, _f, tr
from tcpdoctor.render.output import emit_json, write
from tcpdoctor.status import ExitCode


@click.command()
@socket_options("check")
@threshold_options
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between the two counter samples (0: one sample, no rates).")
@click.option("--trace", "trace_seconds", default=0.0, type=click.FloatRange(min=0),
              metavar="SECONDS", help="Also read the kernel's TCP tracepoints for SECONDS "
              "(root): who opens and closes, lifetimes, resets, failed connects.")
@click.option("--format", "out_format", type=click.Choice(["text", "json", "npd"]),
              default="text", show_default=True,
              help="npd: node-problem-detector's custom plugin protocol (one line of at most "
                   "80 bytes; exit 0 OK, 1 a problem, 2 unknown). json = --json.")
@alertmanager_options("Also post the findings to this Alertmanager (v2 API); they resolve "
                      "after 5 minutes unless posted again (run it from cron or a timer).")
def check(sock: SocketOptions, thresholds: Any, interval: float,
          trace_seconds: float, out_format: str, alertmanager_url: str | None,
          alertmanager_config: str | None) -> ExitCode:
    """Diagnose this host: every rule, with evidence, owners and fixes. The main job.

    \b
    Exit codes: 0 healthy, 1 warning, 2 critical, 3 could not run.

    \b
    Examples:
      tcpdoctor                          same as `tcpdoctor check`: as root in the
                                         host's namespace, every namespace it has
      tcpdoctor check --netns self       only the namespace tcpdoctor runs in
      tcpdoctor check --json | jq '.findings[].id'
      tcpdoctor check --netns blue --interval 5
      tcpdoctor check --threshold CLOSE_WAIT_LEAK.warning=20
      tcpdoctor check --netns all        every namespace: containers and pods included
      tcpdoctor check --netns pod:shop/cart-7d9f
      sudo tcpdoctor check --trace 5     names the processes behind TIME_WAIT, resets
      tcpdoctor check --format npd       one line for node-problem-detector
    """
    poster = _alert_poster(alertmanager_url, alertmanager_config)
    if out_format == "npd":
        return _npd(sock, thresholds, interval)
    if out_format == "json":
        sock = replace(sock, as_json=True)
    notes: list[str] = []
    if trace_seconds:
        can_trace(sock)
    else:
        sock, notes = default_scope(sock)
    if sock.all_netns:
        return _check_all(sock, thresholds, interval, poster)
    from tcpdoctor.diagnose import diagnose

    report = diagnose(sock.target(), thresholds, interval, trace=trace_seconds).report
    report.notes.extend(notes)
    code = emit_report(report, sock.as_json)
    _post(poster, [({"netns": report.snap.netns or "host"}, f) for f in report.findings])
    return code


def _alert_poster(url: str | None, config: str | None) -> Any:
    client = alertmanager_client(url, config)
    if client is None:
        return None
    from tcpdoctor.exporter.alertmanager import Poster

    return Poster(client)


def _post(poster: Any, findings: list[tuple[dict[str, Any], Any]]) -> None:
    """Findings to Alertmanager once; a failed post is a note, the report stands."""
    if poster is None:
        return
    import sys

    try:
        poster.round(findings)
    except TcpDoctorError as exc:
        sys.stderr.write("tcpdoctor: " + str(tr(exc.args[0])) + "\n")


def _npd(sock: SocketOptions, thresholds: Any, interval: float) -> ExitCode:
    """check for node-problem-detector: every outcome, errors included, is one line."""
    from tcpdoctor.render.npd import UNKNOWN, emit_npd, npd_line, unknown

    try:
        sock, _notes = default_scope(sock)
        if sock.all_netns:
            from tcpdoctor.diagnose import diagnose_all

            every, _ = diagnose_all(sock.target(every_netns=True), "all", thresholds, interval)
            found: list[tuple[str | None, Any]] = [(str(w["netns"]), f)
                                                   for w, f in every.findings()]
            sockets = int(every.totals()["total"])
        else:
            from tcpdoctor.diagnose import diagnose

            report = diagnose(sock.target(), thresholds, interval).report
            found = [(report.snap.netns, f) for f in report.findings]
            sockets = report.snap.count()
    except TcpDoctorError as exc:
        emit_npd(unknown(str(tr(exc.args[0]) if exc.args else exc)))
        return ExitCode(UNKNOWN)
    line, code = npd_line(found, sockets)
    emit_npd(line)
    return ExitCode(code)


def _check_all(sock: SocketOptions, thresholds: Any, interval: float,
               poster: Any = None) -> ExitCode:
    """check --netns all: every namespace sampled together, one host report."""
    import os
    import socket

    from tcpdoctor.diagnose import diagnose_all
    from tcpdoctor.model.times import iso

    taken = iso()
    report, _ = diagnose_all(sock.target(every_netns=True), "all", thresholds, interval)
    host, kernel = socket.gethostname(), os.uname().release
    code = _emit_host(report, sock.as_json, host, kernel, taken,
                      _f("tcpdoctor check · {host} (every network namespace) · Linux {kernel} · "
                         "{taken}", host=host, kernel=kernel, taken=taken))
    _post(poster, report.findings())
    return code


def _emit_host(report: Any, as_json: bool, host: str, kernel: str, taken: str,
               header: str) -> ExitCode:
    if as_json:

        emit_json(report.as_json(host, kernel, taken))
    else:
        from tcpdoctor.render.every_netns import render_every_netns

        render_every_netns(report, header)
    return ExitCode(report.exit_code())


@click.command()
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
@click.option("--netns", "netns", metavar="NAME",
              help="With a collect bundle gathered with --all-netns: analyse this "
                   "namespace instead of the host's.")
@click.option("--list-skipped", is_flag=True,
              help="List each rule the input has no data for, with the reason (by default "
                   "they are named on one line).")
@threshold_options
def analyze(files: tuple[str, ...], as_json: bool, proc_dir: str | None, strict: bool,
            reduce_above: int, netns: str | None, list_skipped: bool,
            thresholds: Any) -> ExitCode:
    """The check report from saved output, format auto-detected ('-' reads stdin).

    \b
    Reads ss -tan[poime] (with or without -H), netstat -an[tpo], Windows netstat -ano,
    /proc/net/tcp and tcp6, raw `ss -D FILE` netlink dumps, tcpdoctor snapshots
    (gzip-compressed or not) and `tcpdoctor collect` bundles (every rule a live check
    runs, rates included). Several files are analysed together.

    \b
    Examples:
      tcpdoctor analyze ticket-netstat.txt
      ssh web1 ss -tanpi | tcpdoctor analyze -
      tcpdoctor analyze tcp.txt tcp6.txt --proc-dir saved-proc/ --json
      tcpdoctor analyze huge-netstat.txt.gz     (streamed: memory follows distinct kinds)
      tcpdoctor analyze tcpdoctor-web1-20261126T101500Z.tar.gz   a `collect` bundle
    """
    from tcpdoctor.analysis.check import run_rules
    from tcpdoctor.analysis.context import Context
    from tcpdoctor.sources import offline

    saved = offline.proc_dir_state(proc_dir) if proc_dir else None
    ports = saved.sysctl_ints("net.ipv4.ip_local_port_range") if saved else None
    port_range = (ports[0], ports[1]) if ports and len(ports) == 2 else None
    if len(files) == 1:  # read once (it may be stdin)
        loaded = offline.load_captures(files[0], strict, reduce_above, port_range, netns)
        if len(loaded) > 1:  # pasted one after the other: before and after, not a sum
            return _emit_captures(loaded, saved, thresholds, as_json)
    else:
        loaded = [offline.load(f, strict, reduce_above, port_range, netns) for f in files]
    snap = require_sockets(offline.merge([s for s, _, _ in loaded]))
    kernel = saved or next((k for _, k, _ in loaded if k is not None), None)
    if snap.spaces and len(loaded) == 1:  # a `snapshot --netns all` file
        from tcpdoctor.analysis.every_netns import split

        return _emit_host(split(snap, kernel, thresholds), as_json, snap.host, snap.kernel,
                          snap.taken_at, _f("tcpdoctor analyze · {file} (every network "
                                            "namespace)", file=files[0]))
    return emit_report(run_rules(Context.saved(snap, kernel), thresholds), as_json,
                       list_skipped)


def _emit_captures(captures: list[Any], saved: Any, thresholds: Any,
                   as_json: bool) -> ExitCode:
    """A file of several captures: the report of the last, and how it differs from the
    first (as `diff` would say)."""
    from tcpdoctor.analysis.check import run_rules
    from tcpdoctor.analysis.compare import compare
    from tcpdoctor.analysis.context import Context

    for snap, _, _ in captures:
        require_sockets(snap)
    (first, k1, _), (last, k2, _) = captures[0], captures[-1]
    report = run_rules(Context.saved(last, saved or k2), thresholds)
    report.notes.insert(0, Msg("the file holds {n} captures, one after the other: this "
                               "report is of the last; it is compared with the first below",
                               n=len(captures)))
    change = compare((first, saved or k1), (last, saved or k2))
    code = report.exit_code()
    if any(s.unparsed for s, _, _ in captures):
        code = max(code, ExitCode.WARNING)
    if as_json:

        emit_json({**report.as_json(), "captures": [
            {"source": s.source, "total": s.count(), "lines_unparsed": s.unparsed}
            for s, _, _ in captures], "comparison": change})
    else:

        from tcpdoctor.render.diff import render_text
        from tcpdoctor.render.report import render

        render(report)
        write("\n" + _f("First capture against the last ({n} in the file):",
                                   n=len(captures)) + "\n")
        write(render_text(change))
    return code


def require_sockets(snap: Any) -> Any:
    """A saved input of which no line could be read is exit 3, not an empty report."""
    if snap.unparsed and not snap.count():
        raise TcpDoctorError(Msg("no TCP socket could be read: {n:,} line(s) not "
                                 "understood ({notes})", n=snap.unparsed,
                                 notes='; '.join(snap.notes)))
    return snap


def emit_report(report: Any, as_json: bool, list_skipped: bool = False) -> ExitCode:
    """The check/analyze report as JSON or text; the exit code follows the worst finding."""
    if as_json:

        emit_json(report.as_json())
    else:
        from tcpdoctor.render.report import render

        render(report, list_skipped)
    return report.exit_code()


COMMANDS = (check, analyze)
