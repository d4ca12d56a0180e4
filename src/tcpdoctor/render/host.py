"""`check --netns all` for people: the namespaces holding the most sockets, then every
finding under the name of the namespace (pod, container) it was found in."""

from __future__ import annotations

from tcpdoctor.analysis.host import HostReport
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.render.output import SEVERITY_STYLE, printer
from tcpdoctor.render.report import finding_lines

SHOWN = 10  # namespaces listed by name in the summary


def _where(w: dict[str, object]) -> str:
    extra = [f"pod {w['pod']}" if w.get("pod") else "",
             f"container {w['container']}" if w.get("container") else ""]
    label = str(w["netns"])
    more = ", ".join(x for x in extra if x and str(w["netns"]).find(x.split()[1]) < 0)
    return f"{label} ({more})" if more else label


def render_host(report: HostReport, header: str) -> None:
    con, out = printer()
    out(header, style="bold")
    totals = report.totals()
    states = " · ".join(f"{n} {totals['states'][n]:,}" for n in STATE_NAMES
                        if totals["states"][n])
    summary = report.summary()
    out(f"{len(report.where)} network namespaces, {len(summary)} with TCP sockets: "
        f"{totals['total']:,} sockets, {totals['non_established']:,} not established: "
        f"{states or 'none'}", hang=2)
    for row in summary[:SHOWN]:
        busy = " · ".join(f"{n} {row['states'][n]:,}" for n in STATE_NAMES if row["states"][n])
        flag = f" — {', '.join(row['findings'])}" if row["findings"] else ""
        out(f"{row['total']:>9,}  {_where(row)}: {busy}{flag}", 2, 13)
    if len(summary) > SHOWN:
        rest = sum(r["total"] for r in summary[SHOWN:])
        out(f"{rest:>9,}  in {len(summary) - SHOWN} more namespaces", 2)
    con.print()
    findings = report.findings()
    if not findings:
        out("No problems found.", style="bold green")
    for w, f in findings:
        finding_lines(con, out, f, where=_where(w))
    counts = {s: sum(1 for _, f in findings if f.severity == s) for s in SEVERITY_STYLE}
    out(f"Result: {counts['critical']} critical, {counts['warning']} warning, "
        f"{counts['info']} info in {len(summary)} namespaces (exit {report.exit_code()})",
        style="bold")
    for note in report.notes:
        out(f"Note: {note}", hang=2, style="dim")
