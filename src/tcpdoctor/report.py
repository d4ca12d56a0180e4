"""Render a check Report for people: most severe first, readable in 80 columns."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.check import Report
from tcpdoctor.kernel import STATE_NAMES

STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}
LABEL = {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"}


def _evidence_text(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if value is None or value == {} or value == []:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                              for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, int):
            value = f"{value:,}"
        parts.append(f"{key}={value}")
    return " · ".join(parts)


def _header(report: Report) -> list[str]:
    s = report.snap
    where = f"netns {s.netns}" if s.netns else "host"
    summary = s.summary()
    states = " · ".join(f"{name} {summary['states'][name]:,}" for name in STATE_NAMES
                        if summary["states"][name])
    return [
        f"[bold]tcpdoctor check[/] · {s.host} ({where}) · Linux {s.kernel} · {s.source} · "
        f"{s.taken_at}",
        f"{summary['total']:,} TCP sockets, {summary['non_established']:,} not established: "
        f"{states or 'none'}",
    ]


def render(report: Report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding

    con = Console(highlight=False)

    def out(markup: str, indent: int = 0) -> None:
        # Padding keeps wrapped lines aligned under their first line at any width.
        con.print(Padding(markup, (0, 0, 0, indent), expand=False))

    for line in _header(report):
        out(line)
    con.print()
    if not report.findings:
        out("[bold green]No problems found.[/]")
    for f in report.findings:
        out(f"[{STYLE[f.severity]}]{LABEL[f.severity]}[/] [bold]{f.id}[/] — {escape(f.title)}")
        out(escape(f.summary), 2)
        out(f"[dim]Evidence:[/] {escape(_evidence_text(f.evidence))}", 2)
        if f.processes:
            owners = ", ".join(f"{p['name']} (pid {p['pid']}): {p['count']:,}"
                               for p in f.processes)
            out(f"[dim]Processes:[/] {escape(owners)}", 2)
        out("[dim]What to do:[/]", 2)
        for i, action in enumerate(f.actions, 1):
            out(f"{i}. {escape(action)}", 4)
        for rec in f.sysctl:
            out(f"sysctl {rec['key']}: {rec['current']} → {rec['recommended']} "
                f"— {escape(rec['why'])}", 4)
        con.print()
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in LABEL}
    con.print(f"Result: {counts['critical']} critical, {counts['warning']} warning, "
              f"{counts['info']} info (exit {report.exit_code()})")
    for skip in report.skipped:
        con.print(f"[dim]Not checked: {skip['id']}: {escape(skip['reason'])}[/]")
    for note in report.notes:
        con.print(f"[dim]Note: {escape(note)}[/]")
