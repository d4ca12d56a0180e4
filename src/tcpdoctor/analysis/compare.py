"""`tcpdoctor diff`: what changed between two snapshots."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis import groups
from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.findings import Context
from tcpdoctor.kernel import STATE_NAMES
from tcpdoctor.model import Snapshot
from tcpdoctor.sources import offline

DIMENSIONS = ("remote-ip", "service-port", "process")


def _counts(snap: Snapshot, key: str) -> dict[str, int]:
    if key == "process" and "pid" not in snap.columns:
        return {}
    res = groups.group(snap, [key], None)
    out: dict[str, int] = {}
    for g in res.groups:
        k = g["key"]
        label = f"{k['process']}[{k['pid']}]" if key == "process" else str(k[key])
        out[label] = out.get(label, 0) + g["count"]
    return out


def _movers(a: dict[str, int], b: dict[str, int], limit: int) -> list[dict[str, Any]]:
    keys = set(a) | set(b)
    changed = sorted((k for k in keys if a.get(k, 0) != b.get(k, 0)),
                     key=lambda k: (-abs(b.get(k, 0) - a.get(k, 0)), k))
    return [{"key": k, "before": a.get(k, 0), "after": b.get(k, 0),
             "change": b.get(k, 0) - a.get(k, 0)} for k in changed[:limit]]


def compare(before: str, after: str, limit: int = 5) -> dict[str, Any]:
    (sa, ka, _), (sb, kb, _) = offline.load(before), offline.load(after)
    fa = {f.id: f.severity for f in run_rules(Context(sa, ka)).findings}
    fb = {f.id: f.severity for f in run_rules(Context(sb, kb)).findings}
    xa, xb = sa.summary(), sb.summary()
    sysctl_changes = {}
    if ka is not None and kb is not None:
        for key in sorted(set(ka.sysctls) | set(kb.sysctls)):
            if ka.sysctls.get(key) != kb.sysctls.get(key):
                sysctl_changes[key] = {"before": ka.sysctls.get(key), "after": kb.sysctls.get(key)}
    return {
        "schema": 1, "before": {"source": sa.source, "taken_at": sa.taken_at},
        "after": {"source": sb.source, "taken_at": sb.taken_at},
        "totals": {k: {"before": xa[k], "after": xb[k], "change": xb[k] - xa[k]}
                   for k in ("total", "established", "non_established")},
        "states": {s: {"before": xa["states"][s], "after": xb["states"][s],
                       "change": xb["states"][s] - xa["states"][s]} for s in STATE_NAMES},
        "movers": {d: _movers(_counts(sa, d), _counts(sb, d), limit) for d in DIMENSIONS},
        "findings": {"appeared": sorted(set(fb) - set(fa)), "resolved": sorted(set(fa) - set(fb)),
                     "remaining": sorted(set(fa) & set(fb))},
        "sysctls": sysctl_changes,
    }


def render_text(r: dict[str, Any]) -> str:
    out = [f"before: {r['before']['source']} {r['before']['taken_at']}",
           f"after:  {r['after']['source']} {r['after']['taken_at']}", "",
           f"{'':18}{'before':>10}{'after':>10}{'change':>10}"]
    rows = [(k, v) for k, v in r["totals"].items()]
    rows += [(s, v) for s, v in r["states"].items() if v["before"] or v["after"]]
    for name, v in rows:
        out.append(f"{name:18}{v['before']:>10,}{v['after']:>10,}{v['change']:>+10,}")
    for dim, moved in r["movers"].items():
        if moved:
            out += ["", f"largest changes by {dim}:"]
            out += [f"  {m['key']:30}{m['before']:>10,}{m['after']:>10,}{m['change']:>+10,}"
                    for m in moved]
    f = r["findings"]
    out += ["", f"findings appeared: {', '.join(f['appeared']) or 'none'}",
            f"findings resolved: {', '.join(f['resolved']) or 'none'}",
            f"findings remaining: {', '.join(f['remaining']) or 'none'}"]
    if r["sysctls"]:
        out += ["", "sysctls changed:"]
        out += [f"  {k}: {v['before']} -> {v['after']}" for k, v in r["sysctls"].items()]
    return "\n".join(out) + "\n"
