"""One moment of history: states, kernel figures, top groups per state and active findings.

`watch` and `record` take the same samples; a Sampler keeps the previous kernel counters so
that rate-based rules (overflows, drops, cookies) see the increase since the last sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tcpdoctor.analysis.check import Report
from tcpdoctor.analysis.groups import HISTORY_DIMENSIONS, format_key_text, key_columns
from tcpdoctor.diagnose import Diagnoser, Diagnosis
from tcpdoctor.model.columns import factorize
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_NAMES

# Dimensions stored per sample; "process" only when owners were looked up.
DIMENSIONS = HISTORY_DIMENSIONS
# Kernel figures kept per sample: sockstat levels, then counter increases per second.
SOCKSTAT_KEYS = (("TCP", "inuse"), ("TCP", "orphan"), ("TCP", "tw"), ("TCP", "alloc"),
                 ("TCP", "mem"), ("TCP6", "inuse"))
RATE_KEYS = ("TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPTimeWaitOverflow",
             "TcpExt.SyncookiesSent", "TcpExt.TCPReqQFullDrop", "Tcp.ActiveOpens",
             "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.EstabResets", "Tcp.OutRsts",
             "Tcp.RetransSegs", "conntrack.drop")


@dataclass
class Point:
    """What history keeps of one sample (plain values, ready for SQLite or JSON)."""

    ts: float  # seconds since the epoch
    host: str
    netns: str | None
    states: dict[str, int]
    kernel: dict[str, float]
    groups: list[tuple[str, str, str, int]]  # (dimension, key, state, count)
    findings: list[dict[str, Any]]  # id, severity, summary, processes

    @property
    def taken_at(self) -> str:
        return iso(self.ts)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def established(self) -> int:
        return self.states.get("ESTABLISHED", 0)

    def as_json(self) -> dict[str, Any]:
        return {"taken_at": self.taken_at, "total": self.total,
                "established": self.established,
                "non_established": self.total - self.established, "states": self.states,
                "findings": [f["id"] for f in self.findings]}


@dataclass
class Taken:
    point: Point
    snap: Snapshot
    report: Report


def iso(ts: float, timespec: str = "milliseconds") -> str:
    """Local time with its offset; milliseconds, since samples can be 50 ms apart."""
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec=timespec)


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
    if deltas is not None and interval > 0:
        for key in RATE_KEYS:
            if key in deltas:
                out[f"rate.{key}"] = round(deltas[key] / interval, 3)
    return out


@dataclass
class Sampler:
    """Diagnoses of one target, each kept as a Point (rates since the previous one)."""

    diagnoser: Diagnoser
    top_n: int = 5

    @property
    def netns(self) -> str | None:
        return self.diagnoser.target.netns

    def take(self) -> Taken:
        d = self.diagnoser()
        return Taken(self.point(d), d.sample.snap, d.report)

    def close(self) -> None:
        self.diagnoser.close()

    def points(self) -> list[Point]:
        """What record stores per sample (one Point; a sweep stores one per namespace)."""
        return [self.take().point]

    def point(self, d: Diagnosis) -> Point:
        snap, got = d.sample.snap, d.sample
        dims = [dim for dim in DIMENSIONS if dim != "process" or "pid" in snap.columns]
        groups = [g for dim in dims for g in top_per_state(snap, dim, self.top_n)]
        findings = [{"id": f.id, "severity": str(f.severity), "summary": f.summary,
                     "processes": f.processes} for f in d.report.findings]
        figures = kernel_figures(got.kernel, got.deltas, got.interval)
        figures.update(cost_figures(d.report.cost))
        return Point(d.started, snap.host, self.netns, snap.state_counts(), figures, groups,
                     findings)


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
