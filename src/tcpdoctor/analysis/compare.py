"""`tcpdoctor diff`: what changed between two inputs (snapshots, dumps, bundles)."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis import groups
from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.groups import HISTORY_DIMENSIONS as DIMENSIONS
from tcpdoctor.analysis.groups import owner_label
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_NAMES


def _counts(snap: Snapshot, key: str) -> dict[str, int]:
    if key == "process" and "pid" not in snap.columns:
        return {}
    res = groups.group(snap, [key], None)
    out: dict[str, int] = {}
    for g in res.groups:
        k = g["key"]
        label = owner_label(k["process"], k["pid"]) if key == "process" else str(k[key])
        out[label] = out.get(label, 0) + g["count"]
    return out


def _movers(a: dict[str, int], b: dict[str, int], limit: int) -> list[dict[str, Any]]:
    keys = set(a) | set(b)
    changed = sorted((k for k in keys if a.get(k, 0) != b.get(k, 0)),
                     key=lambda k: (-abs(b.get(k, 0) - a.get(k, 0)), k))
    return [{"key": k, "before": a.get(k, 0), "after": b.get(k, 0),
             "change": b.get(k, 0) - a.get(k, 0)} for k in changed[:limit]]


Loaded = tuple[Snapshot, KernelState | None]


def compare(before: Loaded, after: Loaded, limit: int = 5) -> dict[str, Any]:
    (sa, ka), (sb, kb) = before, after
    ra, rb = run_rules(Context.saved(sa, ka)), run_rules(Context.saved(sb, kb))
    fa = {f.id: f.severity for f in ra.findings}
    fb = {f.id: f.severity for f in rb.findings}
    xa, xb = sa.summary(), sb.summary()
    sysctl_changes = {}
    if ka is not None and kb is not None:
        for key in sorted(set(ka.sysctls) | set(kb.sysctls)):
            if ka.sysctls.get(key) != kb.sysctls.get(key):
                sysctl_changes[key] = {"before": ka.sysctls.get(key), "after": kb.sysctls.get(key)}
    return {
        "schema": 1,
        "before": {"source": sa.source, "taken_at": sa.taken_at,
                   "lines_unparsed": sa.unparsed},
        "after": {"source": sb.source, "taken_at": sb.taken_at, "lines_unparsed": sb.unparsed},
        "totals": {k: {"before": xa[k], "after": xb[k], "change": xb[k] - xa[k]}
                   for k in ("total", "established", "non_established")},
        "states": {s: {"before": xa["states"][s], "after": xb["states"][s],
                       "change": xb["states"][s] - xa["states"][s]} for s in STATE_NAMES},
        "movers": {d: _movers(_counts(sa, d), _counts(sb, d), limit) for d in DIMENSIONS},
        "findings": {"appeared": sorted(set(fb) - set(fa)), "resolved": sorted(set(fa) - set(fb)),
                     "remaining": sorted(set(fa) & set(fb))},
        "sysctls": sysctl_changes,
        "cost": _cost_change(ra.cost, rb.cost),
    }


def _cost_change(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Kernel memory and fds before and after, in all and per state; 'measured' says
    which parts both inputs carry (a pasted netstat has no buffers and no slab sizes)."""
    def row(x: dict[str, int] | None, y: dict[str, int] | None) -> dict[str, dict[str, int]]:
        return {k: {"before": (x or {}).get(k, 0), "after": (y or {}).get(k, 0),
                    "change": (y or {}).get(k, 0) - (x or {}).get(k, 0)}
                for k in ("memory_bytes", "fds")}
    states = [s for s in STATE_NAMES if s in a["by_state"] or s in b["by_state"]]
    return {
        "objects_priced": a["objects_priced"] and b["objects_priced"],
        "buffers_measured": a["buffers_measured"] and b["buffers_measured"],
        "total": row(a["total"], b["total"]),
        "by_state": {s: row(a["by_state"].get(s), b["by_state"].get(s)) for s in states},
    }
