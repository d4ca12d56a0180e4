"""`watch` and `record` over every network namespace (--netns all): one sweep per sample,
with the rates of each namespace since the previous sweep.

record keeps one history sample per namespace for the --namespaces with the most sockets
(their netns column names them; the host's is NULL, as in a plain record). watch sees the
host as one: states summed, top groups over every namespace (`netns` is one of its
groupings), findings named by where they are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis.check import Report
from tcpdoctor.analysis.host import HostReport
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.diagnose import diagnose_all
from tcpdoctor.history.sampler import Point, Taken, cost_figures, kernel_figures, top_per_state
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.sources import sweep
from tcpdoctor.sources.live import LiveSample
from tcpdoctor.sources.target import Target


@dataclass
class SweepSampler:
    target: Target
    thresholds: Thresholds | None
    top_n: int = 5  # groups kept per state and dimension
    namespaces: int = 10  # namespaces record keeps per sweep (the largest)
    netns: str = "all"
    _previous: dict[int, KernelState] = field(default_factory=dict)

    def _sweep(self) -> tuple[float, HostReport, list[LiveSample | None]]:
        started = time.time()
        report, samples = diagnose_all(self.target, "all", self.thresholds, 0.0,
                                       self._previous)
        return started, report, samples

    def points(self) -> list[Point]:
        """record: a Point per namespace, for the largest `namespaces` of them."""
        started, report, samples = self._sweep()
        rows = [(w, s, r) for w, s, r in zip(report.where, samples, report.reports,
                                              strict=True) if s is not None and r is not None]
        rows.sort(key=lambda wsr: -wsr[2].snap.count())
        out = []
        for where, live, rep in rows[:self.namespaces]:
            figures = kernel_figures(live.kernel, live.deltas, live.interval)
            figures.update(cost_figures(rep.cost))
            label = None if where["netns"] == "host" else str(where["netns"])
            out.append(Point(started, rep.snap.host, label, rep.snap.state_counts(), figures,
                             _groups(rep.snap, self.top_n), _findings(rep)))
        return out

    def close(self) -> None:
        """Nothing to stop (a sweep does not trace)."""

    def take(self) -> Taken:
        """watch: the host as one sample (findings keyed by id and namespace)."""
        started, report, samples = self._sweep()
        snap = sweep.combine(report.where, samples, report.notes)
        host = next((s for w, s in zip(report.where, samples, strict=True)
                     if w["netns"] == "host" and s is not None), None)
        figures = kernel_figures(host.kernel, host.deltas, host.interval) if host else {}
        findings = [{**_finding(f), "netns": w["netns"], "key": f"{f.id} in {w['netns']}"}
                    for w, f in report.findings()]
        point = Point(started, snap.host, "all", snap.state_counts(), figures,
                      _groups(snap, self.top_n), findings)
        return Taken(point, snap, Report(snap, [f for _, f in report.findings()]))


def _groups(snap: Snapshot, top_n: int) -> list[tuple[str, str, str, int]]:
    from tcpdoctor.history.sampler import DIMENSIONS

    dims = [d for d in DIMENSIONS if d != "process" or "pid" in snap.columns]
    return [g for dim in dims for g in top_per_state(snap, dim, top_n)]


def _finding(f: Any) -> dict[str, Any]:
    return {"id": f.id, "severity": str(f.severity), "summary": f.summary,
            "processes": f.processes}


def _findings(report: Report) -> list[dict[str, Any]]:
    return [_finding(f) for f in report.findings]
