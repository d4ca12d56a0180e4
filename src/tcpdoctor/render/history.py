"""History for people: the sample line `record` prints, the `history` table and the text
of `history --compare`."""

from __future__ import annotations

import sys
from typing import Any

from tcpdoctor.i18n import _, _f
from tcpdoctor.i18n.width import pad
from tcpdoctor.model.history import Point, Stored
from tcpdoctor.model.times import iso


def sample_line(sid: int, p: Point) -> str:
    busy = " ".join(f"{k}={v}" for k, v in p.states.items() if v)
    ids = ",".join(f["id"] for f in p.findings) or "-"
    where = f" netns={p.netns}" if p.netns else ""
    return (f"{p.taken_at} sample {sid}{where}: total={p.total} "
            f"non_established={p.total - p.established} {busy} findings={ids}")


def table(samples: list[Stored], states: list[str], total: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for name in ("time", "total", "non_estab", *states, "findings"):
        table.add_column(_(name) if name not in states else name,
                         justify="left" if name in ("time", "findings") else "right",
                         no_wrap=name == "time")
    for s in samples:
        when = iso(s.ts, "seconds")[:19].replace("T", " ")
        table.add_row(when, f"{s.total:,}", f"{s.total - s.established:,}",
                      *(f"{s.states[n]:,}" for n in states),
                      ", ".join(f["id"] for f in s.findings) or "-")
    # Piped output is not cut at 80 columns: rows are records that scripts and tickets keep.
    con = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    con.print(table)
    if total > len(samples):
        con.print(_f("(last {n} of {total} samples; --last N, --since, --json or --csv for "
                     "more)", n=len(samples), total=total))


def trend_lines(forecasts: list[dict[str, Any]]) -> None:
    """What runs out at the stored trend (only the resources that do)."""
    from tcpdoctor.analysis.forecast import sentence_of
    from tcpdoctor.render.output import write_lines

    ending = [f for f in forecasts if f["seconds_left"] is not None]
    if ending:
        write_lines([_("Trend forecast (a line fitted to these samples):") + "\n"]
                    + ["  " + sentence_of(f) + "\n" for f in ending])


def compare_text(result: dict[str, Any]) -> str:
    a, b = result["windows"]
    lines = [_f("before: {start} .. {end} ({n} samples)", start=a["from"], end=a["to"],
                n=a["samples"]),
             _f("after:  {start} .. {end} ({n} samples)", start=b["from"], end=b["to"],
                n=b["samples"]), "",
             " " * 14 + "".join(pad(_(h), w, True) for h, w in (
                 ("mean before", 12), ("mean after", 12), ("change", 10), ("max after", 11)))]
    for name, change in result["change_of_mean"].items():
        before = a["total"] if name == "total" else a["states"].get(name, {"mean": 0, "max": 0})
        after = b["total"] if name == "total" else b["states"].get(name, {"mean": 0, "max": 0})
        label = pad(_(name) if name == "total" else name, 14)
        lines.append(f"{label}{before['mean']:>12,.1f}{after['mean']:>12,.1f}"
                     f"{change:>+10,.1f}{after['max']:>11,}")
    appeared = sorted(set(b["findings"]) - set(a["findings"]))
    resolved = sorted(set(a["findings"]) - set(b["findings"]))
    lines.append(_f("findings appeared: {ids}", ids=", ".join(appeared) or "-"))
    lines.append(_f("findings resolved: {ids}", ids=", ".join(resolved) or "-"))
    both = sorted(set(a["findings"]) & set(b["findings"]))
    lines.append(_f("findings in both: {ids}", ids=", ".join(both) or "-"))
    for name, w in (("before", a), ("after", b)):
        for dim, rows in w["top"].items():
            shown = ", ".join(f"{r['key']} {r['state']} ({r['mean']:,.1f})" for r in rows[:3])
            lines.append(_f("top {dim} {when}: {shown}", dim=_(dim), when=_(name),
                            shown=shown))
    return "\n".join(lines) + "\n"
