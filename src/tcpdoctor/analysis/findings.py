"""Findings and the rule registry: each rule is a small function registered with its id,
title, default thresholds (documented in docs/rules.md, overridable) and what it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.model import Snapshot, factorize, format_addr
from tcpdoctor.sources.kstate import KernelState

SEVERITIES = ("info", "warning", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Inputs a rule may need; a rule whose needs are not met is skipped with the reason.
NEEDS_REASONS = {
    "owners": "process owners were not looked up (--no-processes or unavailable)",
    "info": "no tcp_info (procfs source or a text dump without it)",
    "kernel": "no kernel figures (sockstat, counters, sysctls) for this input",
    "sysctls": "sysctl values unavailable for this input",
    "fds": "per-process open-file counts unavailable (owner scan skipped, or offline input)",
}


@dataclass
class Finding:
    id: str
    severity: str
    title: str
    summary: str
    evidence: dict[str, Any]
    actions: list[str]
    processes: list[dict[str, Any]] = field(default_factory=list)
    sysctl: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = {"id": self.id, "severity": self.severity, "title": self.title,
               "summary": self.summary, "evidence": self.evidence,
               "processes": self.processes, "actions": self.actions}
        if self.sysctl:
            out["sysctl"] = self.sysctl
        return out


@dataclass
class Context:
    """Everything a rule may look at. kernel/deltas are None for inputs that lack them."""

    snap: Snapshot
    kernel: KernelState | None = None
    deltas: dict[str, int] | None = None  # counter increase over the sampling interval
    interval: float = 0.0
    fd_counts: dict[int, int] | None = None
    nofile: Callable[[int], int | None] | None = None

    def sysctl_int(self, key: str) -> int | None:
        return self.kernel.sysctl_int(key) if self.kernel else None

    def delta(self, name: str) -> int:
        return int(self.deltas.get(name, 0)) if self.deltas else 0

    def count(self, mask: np.ndarray) -> int:
        """Sockets in mask (rows of a reduced snapshot stand for several)."""
        return self.snap.count(mask)

    def top(self, column: str, mask: np.ndarray, limit: int = 5) -> list[tuple[Any, int]]:
        """Most common values of a column among the sockets in mask."""
        w = self.snap.weights
        return top_counts(self.snap.columns[column][mask], limit,
                          None if w is None else w[mask])

    def processes(self, mask: np.ndarray, limit: int = 5) -> list[dict[str, Any]]:
        """Owners of the sockets in mask, most sockets first."""
        if "pid" not in self.snap.columns:
            return []
        known = mask & (self.snap.columns["pid"] >= 0)
        if not known.any():
            return []
        w = self.snap.weights
        uniq, inverse = np.unique(self.snap.columns["pid"][known], return_inverse=True)
        counts = np.bincount(inverse.ravel(), None if w is None else w[known])
        order = np.argsort(-counts, kind="stable")[:limit]
        return [{"pid": int(uniq[i]), "name": self.snap.process_names.get(int(uniq[i]), "?"),
                 "count": int(counts[i])} for i in order]


RuleFn = Callable[[Context, dict[str, float]], Finding | None]


@dataclass
class Rule:
    id: str
    title: str
    needs: frozenset[str]
    defaults: dict[str, float]
    fn: RuleFn
    doc: str = ""


REGISTRY: dict[str, Rule] = {}


def rule(rule_id: str, title: str, needs: tuple[str, ...] = (),
         **defaults: float) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        REGISTRY[rule_id] = Rule(rule_id, title, frozenset(needs), dict(defaults), fn,
                                 (fn.__doc__ or "").strip())
        return fn
    return register


def level(value: float, warning: float, critical: float) -> str | None:
    if value >= critical:
        return "critical"
    if value >= warning:
        return "warning"
    return None


def top_counts(values: np.ndarray, limit: int = 5,
               weights: np.ndarray | None = None) -> list[tuple[Any, int]]:
    if values.size == 0:
        return []
    uniq, inverse = np.unique(values, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights).astype(np.int64)
    order = np.argsort(-counts, kind="stable")[:limit]
    return [(uniq[i].item() if hasattr(uniq[i], "item") else uniq[i], int(counts[i]))
            for i in order]


def top_destinations(snap: Snapshot, mask: np.ndarray, limit: int = 5,
                     with_port: bool = True) -> list[tuple[str, int]]:
    """Most common remote ip[:port] among the sockets in mask."""
    c = snap.columns
    if not mask.any():
        return []
    cols = [c["raddr_hi"][mask], c["raddr_lo"][mask]]
    if with_port:
        cols.append(c["dport"][mask])
    w = snap.weights
    values, _, counts = factorize(cols, None if w is None else w[mask])
    order = np.argsort(-counts, kind="stable")[:limit]
    out = []
    for i in order:
        addr = format_addr(values[0][i], values[1][i])
        if with_port:
            port = int(values[2][i])
            addr = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        out.append((addr, int(counts[i])))
    return out


def names_of(procs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['name']} (pid {p['pid']})" for p in procs[:3])


def sysctl_rec(key: str, current: Any, recommended: Any, why: str) -> dict[str, Any]:
    return {"key": key, "current": current, "recommended": recommended, "why": why}
