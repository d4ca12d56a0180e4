"""`check --netns all` for people: the namespaces holding the most sockets, then every
finding under the name of the namespace (pod, container) it was found in."""

from __future__ import annotations

from tcpdoctor.analysis.every_netns import EveryNetnsReport
from tcpdoctor.analysis.relief import relief_command
from tcpdoctor.i18n import _, _f
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.render.output import SEVERITY_STYLE, printer
from tcpdoctor.render.report import finding_lines

SHOWN = 10  # namespaces listed by name in the summary


def _where(w: dict[str, object]) -> str:
    extra = [(_("pod"), w.get("pod")), (_("container"), w.get("container"))]
    label = str(w["netns"])
    more = ", ".join(f"{kind} {name}" for kind, name in extra
                     if name and label.find(str(name)) < 0)
    return f"{label} ({more})" if more else label


def render_every_netns(report: EveryNetnsReport, header: str) -> None:
    con, out = printer()
    out(header, style="bold")
    totals = report.totals()
    states = " · ".join(f"{n} {totals['states'][n]:,}" for n in STATE_NAMES
                        if totals["states"][n])
    summary = report.summary()
    out(_f("{namespaces} network namespaces, {busy} with TCP sockets: {total:,} sockets, "
           "{non_established:,} not established: {states}", namespaces=len(report.where),
           busy=len(summary), total=totals["total"],
           non_established=totals["non_established"], states=states or _("none")), hang=2)
    for row in summary[:SHOWN]:
        busy = " · ".join(f"{n} {row['states'][n]:,}" for n in STATE_NAMES if row["states"][n])
        flag = f" — {', '.join(row['findings'])}" if row["findings"] else ""
        out(f"{row['total']:>9,}  {_where(row)}: {busy}{flag}", 2, 13)
    if len(summary) > SHOWN:
        rest = sum(r["total"] for r in summary[SHOWN:])
        out(f"{rest:>9,}  " + _f("in {n} more namespaces", n=len(summary) - SHOWN), 2)
    con.print()
    findings = report.findings()
    if not findings:
        out(_("No problems found."), style="bold green")
    live = any(r.live for _w, r in report.rows())
    for w, f in findings:
        finding_lines(con, out, f, where=_where(w),
                      relief=relief_command(f.id, str(w["netns"]))
                      if live and f.relievable else None)
    counts = {s: sum(1 for _, f in findings if f.severity == s) for s in SEVERITY_STYLE}
    out(_f("Result: {critical} critical, {warning} warning, {info} info in {n} namespaces "
           "(exit {code})", critical=counts["critical"], warning=counts["warning"],
           info=counts["info"], n=len(summary), code=int(report.exit_code())), style="bold")
    for note in report.notes:
        out(_f("Note: {note}", note=note), hang=2, style="dim")
