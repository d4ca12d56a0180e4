"""Tables of states and groups, for the terminal (rich) and as CSV."""

from __future__ import annotations

import csv
import io
import sys
from typing import Any

from tcpdoctor.analysis.groups import owner_label
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.render.output import console


def states_table(summary: dict[str, Any], title: str) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    table.add_column("state")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    total = summary["total"] or 1
    for name in STATE_NAMES:
        n = summary["states"][name]
        style = "dim" if n == 0 else ""
        table.add_row(name, f"{n:,}", f"{100 * n / total:.1f}%", style=style)
    table.add_section()
    table.add_row("total", f"{summary['total']:,}", "")
    table.add_row("established", f"{summary['established']:,}", "")
    table.add_row("non_established", f"{summary['non_established']:,}", "")
    con = console()
    con.print(title, soft_wrap=True)
    con.print(table)


def states_csv(summary: dict[str, Any]) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["state", "count"])
    for name in STATE_NAMES:
        w.writerow([name, summary["states"][name]])
    for k in ("total", "established", "non_established"):
        w.writerow([k, summary[k]])
    sys.stdout.write(out.getvalue())


def key_text(key: dict[str, Any]) -> list[str]:
    """A group's key as cells: '10.0.0.7', '8080', 'nginx[1234]' or '(no owner)'."""
    out = []
    for k, v in key.items():
        if k == "pid":
            continue
        if k == "process":
            out.append(owner_label(v, key.get("pid")))
        else:
            out.append(str(v))
    return out


def _key_headers(by: list[str]) -> list[str]:
    return ["process" if b == "process" else b for b in by]


def _states_text(states: dict[str, int], limit: int = 3) -> str:
    top = sorted(states.items(), key=lambda kv: -kv[1])[:limit]
    return " ".join(f"{k}={v}" for k, v in top)


def groups_table(result: Any, title: str) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    for h in _key_headers(result.by):
        table.add_column(h, overflow="fold")
    table.add_column("count", justify="right")
    if "state" not in result.by:
        table.add_column("states", overflow="fold")
    for g in result.groups:
        row = [*key_text(g["key"]), f"{g['count']:,}"]
        if "state" not in result.by:
            row.append(_states_text(g["states"]))
        table.add_row(*row)
    if result.other:
        table.add_section()
        table.add_row(*(["other"] + [""] * (len(result.by) - 1)), f"{result.other:,}",
                      *([""] if "state" not in result.by else []))
    con = console()
    con.print(title, soft_wrap=True)
    con.print(table)


def groups_csv(result: Any) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    headers = []
    for b in result.by:
        headers.extend(["process", "pid"] if b == "process" else [b])
    w.writerow([*headers, "count", *STATE_NAMES])
    for g in result.groups:
        key = [g["key"].get(h) for h in headers]
        w.writerow([*key, g["count"], *(g["states"].get(s, 0) for s in STATE_NAMES)])
    if result.other:
        w.writerow(["other"] + [""] * (len(headers) - 1) + [result.other])
    sys.stdout.write(out.getvalue())
