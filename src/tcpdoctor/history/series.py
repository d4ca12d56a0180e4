"""A series of readings kept as history points: what `record` stores (a point per sample,
or per namespace with --netns all) and what `watch` shows (the host's namespaces as one).

Every point is built by point_of() from a diagnosis of diagnose.repeat, the one owner of
"diagnose again with the rates since last time".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.groups import HISTORY_DIMENSIONS, format_key_text, key_columns
from tcpdoctor.diagnose.repeat import Repeated, Seen
from tcpdoctor.model.columns import factorize
from tcpdoctor.model.history import Point, Taken
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.sources.every_netns import combine

# Dimensions stored per sample; "process" only when owners were looked up.
DIMENSIONS = HISTORY_DIMENSIONS
# Kernel figures kept per sample: sockstat levels, then counter increases per second.
SOCKSTAT_KEYS = (("TCP", "inuse"), ("TCP", "orphan"), ("TCP", "tw"), ("TCP", "alloc"),
                 ("TCP", "mem"), ("TCP6", "inuse"))
RATE_KEYS = ("TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPTimeWaitOverflow",
             "TcpExt.SyncookiesSent", "TcpExt.TCPReqQFullDrop", "Tcp.ActiveOpens",
             "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.EstabResets", "Tcp.OutRsts",
             "Tcp.RetransSegs", "conntrack.drop")


class Series:
    """Readings of one namespace or of every namespace (repeat.every_netns), each with the
    rates since the one before. record keeps a point per namespace for the `namespaces`
    with the most sockets; watch sees them as one sample."""

    def __init__(self, repeat: Repeated, top_n: int = 5, namespaces: int = 10) -> None:
        self.repeat = repeat
        self.top_n = top_n  # groups kept per state and dimension
        self.namespaces = namespaces

    def close(self) -> None:
        self.repeat.close()

    def points(self) -> list[Point]:
        """record: a point per namespace read, the largest `namespaces` of them."""
        seen = sorted(self.repeat(), key=lambda s: -s.report.snap.count())
        return [point_of(s, self.top_n) for s in seen[:self.namespaces]]

    def take(self) -> Taken:
        """watch: one sample (with every namespace: states summed, findings keyed by id
        and namespace, top groups over all of them)."""
        seen = self.repeat()
        if not self.repeat.every_netns:
            return Taken(point_of(seen[0], self.top_n), seen[0].report.snap)
        snap = combine([s.where for s in seen], [s.sample for s in seen], self.repeat.notes)
        mine = next((s for s in seen if s.netns is None), None)
        findings = [{**finding_of(f), "netns": s.where["netns"],
                     "key": f"{f.id} in {s.where['netns']}"}
                    for s in seen for f in s.report.findings]
        started = seen[0].started if seen else 0.0
        point = Point(started, snap.host, "all", snap.state_counts(),
                      _figures(mine) if mine else {}, groups_of(snap, self.top_n), findings)
        return Taken(point, snap)


def point_of(seen: Seen, top_n: int) -> Point:
    """The one way a diagnosis becomes a history point."""
    snap = seen.report.snap
    return Point(seen.started, snap.host, seen.netns, snap.state_counts(), _figures(seen),
                 groups_of(snap, top_n), [finding_of(f) for f in seen.report.findings],
                 seen.report.forecasts or [])


def _figures(seen: Seen) -> dict[str, float]:
    live = seen.sample
    figures = kernel_figures(live.kernel, live.deltas, live.interval)
    figures.update(cost_figures(seen.report.cost))
    return figures


def groups_of(snap: Snapshot, top_n: int) -> list[tuple[str, str, str, int]]:
    dims = [d for d in DIMENSIONS if d != "process" or "pid" in snap.columns]
    return [g for dim in dims for g in top_per_state(snap, dim, top_n)]


def finding_of(f: Any) -> dict[str, Any]:
    return {"id": f.id, "severity": str(f.severity), "summary": f.summary,
            "processes": f.processes}


def top_per_state(snap: Snapshot, dim: str, limit: int) -> list[tuple[str, str, str, int]]:
    """The `limit` largest groups of `dim` within each state (so that a few thousand
    ESTABLISHED cannot push a growing CLOSE_WAIT owner out of the record)."""
    if len(snap) == 0:
        return []
    state = snap.columns["state"]
    cols = key_columns(snap, dim, 24, 64)
    uniq, _, counts = factorize([*cols, state])
    group_state = uniq[-1]
    out: list[tuple[str, str, str, int]] = []
    for s in np.unique(group_state):
        idx = np.flatnonzero(group_state == s)
        best = idx[np.argsort(-counts[idx], kind="stable")[:limit]]
        for g in best:
            text = format_key_text(snap, dim, [u[g] for u in uniq[:-1]])
            out.append((dim, text, STATE_NAMES[int(s) - 1], int(counts[g])))
    return out


def kernel_figures(kernel: KernelState, deltas: dict[str, int] | None,
                   interval: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for proto, key in SOCKSTAT_KEYS:
        value = kernel.sockstat.get(proto, {}).get(key)
        if value is not None:
            out[f"sockstat.{proto}.{key}"] = value
    # The limits the trend forecasts compare with (history: analysis.forecast.trend).
    out.update(limit_figures(kernel))
    if deltas is not None and interval > 0:
        for key in RATE_KEYS:
            if key in deltas:
                out[f"rate.{key}"] = round(deltas[key] / interval, 3)
    return out


def limit_figures(kernel: KernelState) -> dict[str, float]:
    mem = kernel.sysctl_ints("net.ipv4.tcp_mem")
    figures = {"limit.tw_buckets": kernel.sysctl_int("net.ipv4.tcp_max_tw_buckets"),
               "limit.orphans": kernel.sysctl_int("net.ipv4.tcp_max_orphans"),
               "limit.tcp_mem": mem[2] if mem and len(mem) == 3 else None,
               "conntrack.count": kernel.sysctl_int("net.netfilter.nf_conntrack_count"),
               "limit.conntrack": kernel.sysctl_int("net.netfilter.nf_conntrack_max")}
    return {k: float(v) for k, v in figures.items() if v is not None}


def cost_figures(cost: dict[str, Any]) -> dict[str, float]:
    """What the sockets cost, kept per sample: bytes in all, in buffers, per state, fds."""
    if not cost:
        return {}
    total = cost["total"]
    out: dict[str, float] = {
        "cost.memory_bytes": total["memory_bytes"], "cost.fds": total["fds"],
        "cost.buffer_bytes": total["memory_bytes"] - total["object_bytes"]}
    if "tcp_mem_bytes" in cost.get("host", {}):
        out["cost.tcp_mem_bytes"] = cost["host"]["tcp_mem_bytes"]
    for state, row in cost.get("by_state", {}).items():
        out[f"cost.state.{state}"] = row["memory_bytes"]
    return out
