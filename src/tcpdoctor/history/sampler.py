"""One moment of history: states, kernel figures, top groups per state and active findings.

`watch` and `record` take the same samples; a Sampler keeps the previous kernel counters so
that rate-based rules (overflows, drops, cookies) see the increase since the last sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tcpdoctor.analysis.check import Report, run_rules
from tcpdoctor.analysis.findings import Context
from tcpdoctor.analysis.groups import format_key_text, key_columns
from tcpdoctor.kernel import STATE_NAMES
from tcpdoctor.model import Snapshot, factorize
from tcpdoctor.sources import kstate
from tcpdoctor.sources.live import sample as live_sample

# Dimensions stored per sample; "process" only when owners were looked up.
DIMENSIONS = ("remote-ip", "service-port", "process")
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


def kernel_figures(kernel: kstate.KernelState, deltas: dict[str, int] | None,
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
    netns: str | None = None
    source: str = "auto"
    with_owners: bool = True
    top_n: int = 5
    thresholds: dict[str, dict[str, float]] | None = None
    _prev: kstate.KernelState | None = field(default=None, repr=False)

    def take(self) -> Taken:
        started = time.time()  # the sample's time is when the sockets were read
        got = live_sample(self.netns, 0.0, self.source, with_owners=self.with_owners)
        deltas, interval = None, 0.0
        if self._prev is not None:
            deltas = kstate.deltas(self._prev, got.kernel)
            interval = got.kernel.taken - self._prev.taken
        self._prev = got.kernel
        ctx = Context(got.snap, got.kernel, deltas, interval,
                      got.owners.fd_counts if got.owners else None, kstate.nofile_limit)
        report = run_rules(ctx, self.thresholds)
        return Taken(self.point(started, got.snap, got.kernel, deltas, interval, report),
                     got.snap, report)

    def point(self, ts: float, snap: Snapshot, kernel: kstate.KernelState,
              deltas: dict[str, int] | None, interval: float, report: Report) -> Point:
        dims = [d for d in DIMENSIONS if d != "process" or "pid" in snap.columns]
        groups = [g for d in dims for g in top_per_state(snap, d, self.top_n)]
        findings = [{"id": f.id, "severity": f.severity, "summary": f.summary,
                     "processes": f.processes} for f in report.findings]
        return Point(ts, snap.host, self.netns, snap.state_counts(),
                     kernel_figures(kernel, deltas, interval), groups, findings)
