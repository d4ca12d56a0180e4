"""`tcpdoctor diff` for people: totals, states, largest movers, findings, sysctls."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.cost import human_bytes


def render_text(r: dict[str, Any]) -> str:
    out = []
    for side in ("before", "after"):
        s = r[side]
        lost = (f" (incomplete: {s['lines_unparsed']:,} line(s) could not be read)"
                if s["lines_unparsed"] else "")
        out.append(f"{side + ':':8}{s['source']} {s['taken_at']}{lost}")
    out += ["", f"{'':18}{'before':>10}{'after':>10}{'change':>10}"]
    rows = [(k, v) for k, v in r["totals"].items()]
    rows += [(s, v) for s, v in r["states"].items() if v["before"] or v["after"]]
    for name, v in rows:
        out.append(f"{name:18}{v['before']:>10,}{v['after']:>10,}{v['change']:>+10,}")
    for dim, moved in r["movers"].items():
        if moved:
            out += ["", f"largest changes by {dim}:"]
            out += [f"  {m['key']:30}{m['before']:>10,}{m['after']:>10,}{m['change']:>+10,}"
                    for m in moved]
    out += _cost_text(r.get("cost"))
    f = r["findings"]
    out += ["", f"findings appeared: {', '.join(f['appeared']) or 'none'}",
            f"findings resolved: {', '.join(f['resolved']) or 'none'}",
            f"findings remaining: {', '.join(f['remaining']) or 'none'}"]
    if r["sysctls"]:
        out += ["", "sysctls changed:"]
        out += [f"  {k}: {v['before']} -> {v['after']}" for k, v in r["sysctls"].items()]
    return "\n".join(out) + "\n"


def _cost_text(cost: dict[str, Any] | None) -> list[str]:
    """Kernel memory before/after, in all and per state, when either input priced it."""
    if not cost or not (cost["objects_priced"] or cost["buffers_measured"]):
        return []
    parts = [p for p, on in (("socket objects", cost["objects_priced"]),
                             ("buffers", cost["buffers_measured"])) if on]
    out = ["", f"kernel memory ({' and '.join(parts)}):"]
    rows = [("all sockets", cost["total"]), *cost["by_state"].items()]
    for name, v in rows:
        m = v["memory_bytes"]
        sign = "+" if m["change"] >= 0 else "-"
        out.append(f"  {name:16}{human_bytes(m['before']):>10}{human_bytes(m['after']):>10}"
                   f"{sign + human_bytes(abs(m['change'])):>11}")
    fds = cost["total"]["fds"]
    out.append(f"  {'file descriptors':16}{fds['before']:>10,}{fds['after']:>10,}"
               f"{fds['change']:>+11,}")
    return out
