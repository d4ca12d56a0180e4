"""`conntrack` for people: one section per table (states, who fills it, ghosts, SNAT)."""

from __future__ import annotations

from typing import Any

from tcpdoctor.i18n import _, _f
from tcpdoctor.render.output import console
from tcpdoctor.util.text import visible


def _states(states: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(states.items(), key=lambda kv: -kv[1]))


def table_report(section: dict[str, Any], keys: list[str] | None, list_ghosts: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console()
    size = section.get("max")
    fill = (_f("; the table holds {count:,} of {max:,} ({share:.0f}% full)",
               count=section.get("count") or 0, max=size,
               share=100 * (section.get("count") or 0) / size) if size else "")
    con.print(_f("conntrack table of {netns} ({source}): {entries:,} TCP entries, {other:,} "
                 "other{fill}", netns=escape(visible(str(section["netns"]))),
                 source=section["source"], entries=section["entries"],
                 other=section["other_entries"], fill=fill), soft_wrap=True)
    if section["states"]:
        con.print("  " + _f("states: {states}", states=_states(section["states"])))
    rows = section["groups"] if keys else section["by_namespace"]
    heads = [*(keys or ["namespace"]), "entries", "ghosts" if keys else "states"]
    table = Table(show_edge=False)
    for h in heads:
        table.add_column(_(h), justify="right" if h in ("entries", "ghosts") else "left",
                         overflow="fold")
    for row in rows:
        last = f"{row['ghosts']:,}" if keys else _states(row["states"])
        table.add_row(*(escape(visible(str(row[k]))) for k in (keys or ["namespace"])),
                      f"{row['entries']:,}", last)
    if rows:
        con.print(table)
    _ghosts(section, list_ghosts)
    _snat(section)


def _ghosts(section: dict[str, Any], list_ghosts: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console()
    g = section["ghosts"]
    if not g["count"]:
        con.print("  " + _("ghost entries: none (every open entry's local socket exists)"))
        return
    where = ", ".join(f"{visible(str(r['namespace']))} {r['entries']:,}"
                      for r in g["by_namespace"][:5])
    con.print("  " + _f("ghost entries: {n:,} ({states}); in {where}", n=g["count"],
                        states=_states(g["by_state"]), where=escape(where)), soft_wrap=True)
    if list_ghosts:
        table = Table(show_edge=False)
        for h in ("state", "original", "namespace", "side", "timeout_seconds"):
            table.add_column(_(h), overflow="fold")
        for r in g["entries"]:
            table.add_row(r["state"], r["original"], escape(visible(str(r["namespace"]))),
                          _(r["side"]), f"{r['timeout_seconds']:,}")
        con.print(table)


def _snat(section: dict[str, Any]) -> None:
    con = console()
    for r in section["snat"][:5]:
        con.print("  " + _f("SNAT {source} -> {destination}: {used:,} of {available:,} ports "
                            "in use (range {range}{assumed})", source=r["translated_source"],
                            destination=r["destination"], used=r["ports_used"],
                            available=r["ports_available"], range=r["range"],
                            assumed="" if r["range_known"] else _(", assumed")),
                  soft_wrap=True)
