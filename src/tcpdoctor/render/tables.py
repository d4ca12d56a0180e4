"""Tables of states and groups, for the terminal (rich) and as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from tcpdoctor.analysis.cost import human_bytes
from tcpdoctor.analysis.groups import owner_label
from tcpdoctor.i18n import _, _f, tr
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.render.output import console, write


def states_table(summary: dict[str, Any], title: str,
                 cost: dict[str, Any] | None = None) -> None:
    """Counts and shares per state; with cost (--cost), kernel memory and fds per state."""
    from rich.table import Table

    table = Table(show_edge=False)
    table.add_column(_("state"))
    table.add_column(_("count"), justify="right")
    table.add_column(_("share"), justify="right")
    if cost is not None:
        table.add_column(_("memory"), justify="right")
        table.add_column(_("fds"), justify="right")
    total = summary["total"] or 1
    for name in STATE_NAMES:
        n = summary["states"][name]
        style = "dim" if n == 0 else ""
        table.add_row(name, f"{n:,}", f"{100 * n / total:.1f}%",
                      *_cost_cells(cost["by_state"].get(name) if cost else None, cost),
                      style=style)
    table.add_section()
    table.add_row(_("total"), f"{summary['total']:,}", "",
                  *_cost_cells(cost["total"] if cost else None, cost))
    table.add_row(_("established"), f"{summary['established']:,}", "")
    table.add_row(_("non_established"), f"{summary['non_established']:,}", "")
    con = console()
    con.print(tr(title), soft_wrap=True)
    con.print(table)


def spaces_table(rows: list[dict[str, Any]], limit: int = 20) -> None:
    """Per namespace (--netns all): its name, pod, container and sockets, largest first."""
    from rich.table import Table

    table = Table(show_edge=False)
    for head in ("namespace", "pod", "container", "total", "non_established"):
        table.add_column(_(head), justify="right" if head in ("total", "non_established")
                         else "left", overflow="fold")
    for row in rows[:limit]:
        table.add_row(str(row["netns"]), row.get("pod") or "", row.get("container") or "",
                      f"{row['total']:,}", f"{row['non_established']:,}")
    if len(rows) > limit:
        table.add_row(_f("{n} more", n=len(rows) - limit), "", "",
                      f"{sum(r['total'] for r in rows[limit:]):,}", "")
    console().print(table)


def _cost_cells(row: dict[str, int] | None, cost: dict[str, Any] | None) -> list[str]:
    if cost is None:
        return []
    if row is None:
        return ["0 B", "0"]
    return [human_bytes(row["memory_bytes"]), f"{row['fds']:,}"]


def states_csv(summary: dict[str, Any], cost: dict[str, Any] | None = None) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["state", "count", *(["memory_bytes", "fds"] if cost else [])])
    for name in STATE_NAMES:
        row = cost["by_state"].get(name, {}) if cost else None
        w.writerow([name, summary["states"][name],
                    *([row.get("memory_bytes", 0), row.get("fds", 0)] if row is not None
                      else [])])
    for k in ("total", "established", "non_established"):
        w.writerow([k, summary[k]])
    write(out.getvalue())


def key_text(key: dict[str, Any]) -> list[str]:
    """A group's key as cells: '10.0.0.7', '8080', 'nginx[1234]' or '(no owner)'."""
    out = []
    for k, v in key.items():
        if k == "pid":
            continue
        if k == "process":
            out.append(owner_label(v, key.get("pid")))
        elif v is None:  # e.g. --by pod for sockets outside any pod
            out.append(_("(none)") if k != "pod" else _("(no pod)"))
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
        table.add_column(_(h), overflow="fold")
    table.add_column(_("count"), justify="right")
    priced = bool(result.groups) and "memory_bytes" in result.groups[0]
    if priced:
        table.add_column(_("memory"), justify="right")
        table.add_column(_("fds"), justify="right")
    if "state" not in result.by:
        table.add_column(_("states"), overflow="fold")
    for g in result.groups:
        row = [*key_text(g["key"]), f"{g['count']:,}"]
        if priced:
            row += [human_bytes(g["memory_bytes"]), f"{g['fds']:,}"]
        if "state" not in result.by:
            row.append(_states_text(g["states"]))
        table.add_row(*row)
    if result.other:
        table.add_section()
        table.add_row(*([_("other")] + [""] * (len(result.by) - 1)), f"{result.other:,}",
                      *([""] * (2 * priced + ("state" not in result.by))))
    con = console()
    con.print(tr(title), soft_wrap=True)
    con.print(table)


def groups_csv(result: Any) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    headers = []
    for b in result.by:
        headers.extend(["process", "pid"] if b == "process" else [b])
    priced = bool(result.groups) and "memory_bytes" in result.groups[0]
    extra = ["memory_bytes", "fds"] if priced else []
    w.writerow([*headers, "count", *extra, *STATE_NAMES])
    for g in result.groups:
        key = [g["key"].get(h) for h in headers]
        w.writerow([*key, g["count"], *(g[k] for k in extra),
                    *(g["states"].get(s, 0) for s in STATE_NAMES)])
    if result.other:
        w.writerow(["other"] + [""] * (len(headers) - 1) + [result.other])
    write(out.getvalue())
