"""Render a check Report for people: most severe first, readable in 80 columns."""

from __future__ import annotations

import os
from typing import Any

from tcpdoctor.analysis.check import Report
from tcpdoctor.analysis.forecast import sentence_of
from tcpdoctor.analysis.registry import Finding
from tcpdoctor.analysis.relief import relief_command
from tcpdoctor.i18n import _, _f, tr
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.render.cost import cost_evidence, cost_lines
from tcpdoctor.render.output import SEVERITY_STYLE, printer


def evidence_label(key: str) -> str:
    """An evidence key as people read it: the key itself in English (it is the JSON key),
    the catalog's words for it in another language."""
    return _(key)


def _evidence_text(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if value is None or value == {} or value == []:
            continue
        if key == "cost":
            value = cost_evidence(value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {tr(v)}"
                              for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(" ".join(f"{evidence_label(k)}={tr(v)}" for k, v in item.items())
                              if isinstance(item, dict) else str(tr(item)) for item in value)
        elif isinstance(value, int) and not key.endswith("port"):  # port 8000, not 8,000
            value = f"{value:,}"
        parts.append(f"{evidence_label(key)}={tr(value)}")
    return " · ".join(parts)


def _header(report: Report) -> list[str]:
    s = report.snap
    where = f"netns {s.netns}" if s.netns else _("host")
    summary = s.summary()
    states = " · ".join(f"{name} {summary['states'][name]:,}" for name in STATE_NAMES
                        if summary["states"][name])
    command = "check" if report.live else "analyze"
    head = (f"tcpdoctor {command} · {s.host} ({where}) · Linux {s.kernel} · {tr(s.source)} · "
            f"{s.taken_at}" if s.kernel else
            f"tcpdoctor {command} · {tr(s.source)} · {s.taken_at}")
    return [
        head,
        _tally(summary["total"], summary["non_established"], states or _("none")),
    ]


FORECASTS_SHOWN = 6


def _tally(total: int, non_established: int, states: str) -> str:
    if total == 1:
        return _f("1 TCP socket, {non_established:,} not established: {states}",
                  non_established=non_established, states=states)
    return _f("{total:,} TCP sockets, {non_established:,} not established: {states}",
              total=total, non_established=non_established, states=states)


def forecast_lines(forecasts: list[dict[str, Any]] | None, interval: float) -> list[str]:
    """How long until each growing resource runs out; nothing without two readings."""
    if forecasts is None:
        return []
    if not forecasts:
        return [_f("Forecast: nothing grows towards a limit between the two readings ({s:.1f} s "
                   "apart).", s=interval)]
    head = _f("Forecast (two readings {s:.1f} s apart):", s=interval)
    return [head] + ["  " + sentence_of(f) for f in forecasts[:FORECASTS_SHOWN]]


def finding_lines(con: Any, out: Any, f: Finding, where: str | None = None,
                  relief: str | None = None) -> None:
    """One finding: title (and where it was found), summary, evidence, owners, actions,
    and on a live host the dry run of `relieve` where ending sockets can help."""
    from rich.text import Text

    title = Text.assemble((_(f.severity.upper()), SEVERITY_STYLE[f.severity]), " ",
                          (f.id, "bold"),
                          f" — {tr(f.title)}")
    con.print(title)
    if where:
        out(_f("In {where}", where=where), 2, style="bold")
    out(f.summary, 2)
    out(_("Evidence: ") + _evidence_text(f.evidence), 2, 2)
    if f.processes:
        owners = ", ".join(f"{p['name']} (pid {p['pid']}): {p['count']:,}"
                           for p in f.processes)
        out(_("Processes: ") + owners, 2, 2)
    out(_("What to do:"), 2)
    for i, action in enumerate(f.actions, 1):
        out(f"{i}. {tr(action)}", 4, 3)
    for rec in f.sysctl:
        out(f"sysctl {rec['key']}: {rec['current']} -> {rec['recommended']}: {tr(rec['why'])}",
            4, 3)
    if relief:
        out(_f("Relief until the fix is deployed: `{command}` shows which sockets it would "
               "end and how (a dry run; --apply ends them).", command=relief), 2, 2)
    con.print()


def render(report: Report, list_skipped: bool = False) -> None:
    con, out = printer()

    head = _header(report)
    out(head[0], style="bold")
    out(head[1], hang=2)
    for line in cost_lines(report.cost):
        out(line, hang=2)
    for line in forecast_lines(report.forecasts, report.interval):
        out(line, hang=2)
    con.print()
    if report.incomplete:
        out(_f("Incomplete: {unparsed:,} line(s) of the input could not be read (see the note "
               "below); the report covers only the sockets that could.",
               unparsed=report.snap.unparsed), hang=2, style="bold yellow")
    elif not report.findings and report.snap.counts_only:
        out(_("No problem these counts alone can show; the rules that need socket rows did "
              "not run (see the notes)."), style="bold yellow")
    elif not report.findings:
        out(_("No problems found."), style="bold green")
    for f in report.findings:
        finding_lines(con, out, f,
                      relief=relief_command(f.id, report.snap.netns)
                      if report.live and f.relievable else None)
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITY_STYLE}
    out(_f("Result: {critical} critical, {warning} warning, {info} info (exit {code})",
           critical=counts["critical"], warning=counts["warning"], info=counts["info"],
           code=int(report.exit_code())), style="bold")
    _not_checked(out, report, list_skipped)
    for note in report.notes:
        out(_f("Note: {note}", note=note), hang=2, style="dim")


def _not_checked(out: Any, report: Report, list_all: bool) -> None:
    """Rules that could not run: each with its reason on a live host (something can be
    done there), one line for a saved input (nothing can be added to it afterwards)."""
    skipped = report.skipped
    if report.live or list_all or len(skipped) <= 1:
        for skip in skipped:
            out(_f("Not checked: {id}: {reason}", id=skip["id"], reason=skip["reason"]),
                hang=2, style="dim")
        return
    out(_f("Not checked: {n} rules this input has no data for (--list-skipped: which, why)",
           n=len(skipped)), hang=2, style="dim")


def render_tune(result: Any, header: str, dropin: str, values: dict[str, str],
                action: str | None) -> None:
    from rich.text import Text

    con, out = printer()

    out(header, style="bold")
    groups = [
        (_("Needs attention:"),
         [e for e in result.entries if e.severity in ("critical", "warning")]),
        (_("Suggested by the current evidence:"),
         [e for e in result.entries if e.severity == "info" and e.recommended]),
        (_("Explained (harmless, but not what the folklore says):"),
         [e for e in result.entries if e.severity == "info" and not e.recommended]),
    ]
    for title, entries in groups:
        if not entries:
            continue
        con.print()
        out(title, style="bold")
        for e in entries:
            label = _(e.severity.upper())
            now = e.current if e.current is not None else _("not in this kernel")
            cfg = (_f(", configured {value} at {where}", value=e.configured,
                      where=e.configured_at) if e.configured_at else "")
            rec = _f(", recommended {value}", value=e.recommended) if e.recommended else ""
            out(f"{label} {e.key}: " + _f("current {now}", now=now) + f"{cfg}{rec}", 2, 4,
                style=SEVERITY_STYLE.get(e.severity, ""))
            out(e.why, 6)
    fine = [e for e in result.entries if e.severity == "ok"]
    if fine:
        con.print()
        out(_("Fine:") + " " + ", ".join(f"{e.key.split('.')[-1]}={e.current}" for e in fine),
            hang=2, style="dim")
    con.print()
    if values:
        out(action or _("Drop-in (dry run: --write FILE saves it, --apply applies it):"),
            style="bold")
        con.print(Text(dropin.rstrip()), soft_wrap=True)
    else:
        out(_("Nothing to change."), style="bold green")
    for note in result.notes:
        out(_f("Note: {note}", note=note), hang=2, style="dim")


VERDICT_STYLE = {"helps": "bold green", "does not help": "bold yellow", "harmful": "bold red",
                 "not reproduced": "dim"}


def render_proofs(proofs: list[dict[str, Any]], findings: list[str], where: str,
                  recommended: list[dict[str, Any]] | None = None) -> None:
    """tune --prove: each candidate change, measured against the baseline, with a verdict;
    then what `tune` recommends, each with its measured line or the word that it was not."""
    _con, out = printer()
    out(_f("tune --prove · {where} · measured on Linux {kernel} in throwaway namespaces",
           where=where, kernel=os.uname().release), style="bold")
    if not proofs:
        out(_("Nothing to prove: no finding here has a pattern --prove replays."),
            style="bold green")
    for fid in findings:
        mine = [p for p in proofs if p["finding"] == fid]
        if mine:
            out(fid, style="bold")
        for p in mine:
            figures = ", ".join(f"{k} {v:,} (baseline {p['baseline'].get(k, 0):,})"
                                for k, v in p["outcome"].items())
            out(_f("{change}: {verdict}", change=tr(p["change"]), verdict=_verdict(p["verdict"])),
                2, 2,
                style=VERDICT_STYLE.get(p["verdict"], ""))
            out(_f("measured: {figures}; {why}", figures=figures, why=tr(p["why"])), 4, 2)
    for r in recommended or []:
        proof = r["proof"]
        if proof is None:
            out(_f("tune recommends {key} = {value}: not proved (no replay changes this key)",
                   key=r["key"], value=r["value"]), 0, 2)
            continue
        out(_f("tune recommends {key} = {value}: measured on this kernel: {verdict} ({change})",
               key=r["key"], value=r["value"], verdict=_verdict(proof["verdict"]),
               change=tr(proof["change"])), 0, 2)


def _verdict(verdict: str) -> str:
    words = {"helps": _("helps"), "does not help": _("does not help"), "harmful": _("harmful"),
             "not reproduced": _("not reproduced: the baseline showed nothing to remove")}
    return words.get(verdict, verdict)
