"""`tcpdoctor diff` for people: totals, states, largest movers, findings, sysctls."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.cost import human_bytes
from tcpdoctor.i18n import _, _f
from tcpdoctor.i18n.width import pad


def render_text(r: dict[str, Any]) -> str:
    out = []
    for side in ("before", "after"):
        s = r[side]
        lost = (_f(" (incomplete: {n:,} line(s) could not be read)", n=s["lines_unparsed"])
                if s["lines_unparsed"] else "")
        out.append(f"{pad(_(side) + _(':'), 8)}{s['source']} {s['taken_at']}{lost}")
    out += ["", " " * 18 + "".join(pad(_(h), 10, True) for h in ("before", "after", "change"))]
    rows = [(k, v) for k, v in r["totals"].items()]
    rows += [(s, v) for s, v in r["states"].items() if v["before"] or v["after"]]
    for name, v in rows:
        out.append(f"{name:18}{v['before']:>10,}{v['after']:>10,}{v['change']:>+10,}")
    for dim, moved in r["movers"].items():
        if moved:
            out += ["", _f("largest changes by {dim}:", dim=_(dim))]
            out += [f"  {m['key']:30}{m['before']:>10,}{m['after']:>10,}{m['change']:>+10,}"
                    for m in moved]
    out += _cost_text(r.get("cost"))
    f = r["findings"]
    out += ["", _f("findings appeared: {ids}", ids=", ".join(f["appeared"]) or _("none")),
            _f("findings resolved: {ids}", ids=", ".join(f["resolved"]) or _("none")),
            _f("findings remaining: {ids}", ids=", ".join(f["remaining"]) or _("none"))]
    if r["sysctls"]:
        out += ["", _("sysctls changed:")]
        out += [f"  {k}: {v['before']} -> {v['after']}" for k, v in r["sysctls"].items()]
    return "\n".join(out) + "\n"


def _cost_text(cost: dict[str, Any] | None) -> list[str]:
    """Kernel memory before/after, in all and per state, when either input priced it."""
    if not cost or not (cost["objects_priced"] or cost["buffers_measured"]):
        return []
    parts = [p for p, on in ((_("socket objects"), cost["objects_priced"]),
                             (_("buffers"), cost["buffers_measured"])) if on]
    out = ["", _f("kernel memory ({parts}):", parts=_(" and ").join(parts))]
    rows = [(_("all sockets"), cost["total"]), *cost["by_state"].items()]
    for name, v in rows:
        m = v["memory_bytes"]
        sign = "+" if m["change"] >= 0 else "-"
        out.append(f"  {pad(name, 16)}{human_bytes(m['before']):>10}"
                   f"{human_bytes(m['after']):>10}{sign + human_bytes(abs(m['change'])):>11}")
    fds = cost["total"]["fds"]
    out.append(f"  {pad(_('file descriptors'), 16)}{fds['before']:>10,}{fds['after']:>10,}"
               f"{fds['change']:>+11,}")
    return out
