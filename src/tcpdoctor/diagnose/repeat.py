"""Diagnose again and again: the one owner of "each diagnosis with the rates since the one
before", for one namespace or every namespace of the host (watch, record, the exporter).

The first diagnosis has no rates, as with `check --interval 0`; each later one sees the
counter increases since the previous call, per namespace (kept by namespace inode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from tcpdoctor.analysis.check import Report
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.diagnose import Diagnosis, _begin_trace, diagnose, diagnose_all
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.sources.live import LiveSample
from tcpdoctor.sources.target import Target

EVERY_NETNS = "all"


@dataclass
class Seen:
    """One namespace's diagnosis within a repeated run."""

    where: dict[str, Any]  # the namespace: {"netns": name or "host", "pod", ...}
    sample: LiveSample
    report: Report
    started: float  # when the sockets were read (seconds since the epoch)
    duration: float  # seconds the read and the rules took

    @property
    def netns(self) -> str | None:
        """The namespace's label; None for the one tcpdoctor runs in."""
        name = self.where.get("netns")
        return None if name in (None, "host") else str(name)


class Repeated:
    """Diagnoses of `target` (or with every_netns, of every namespace of the host), each
    with the rates since the previous call. trace: one trace for the whole run, read in
    windows (`watch --trace`; one namespace only)."""

    def __init__(self, target: Target, thresholds: Thresholds | None = None,
                 every_netns: bool = False, trace: bool = False) -> None:
        # Each round's table is compared with the previous one's (forecasts) by cookie.
        self.target = target if every_netns else replace(target, identity=True)
        self.thresholds = thresholds
        self._last: Diagnosis | None = None
        self.every_netns = every_netns
        self._previous: KernelState | None = None
        self._previous_by_inode: dict[int, KernelState] = {}
        self._tracing: Any = None
        self._thread: Any = None
        self.notes: list[str] = []  # the last round's notes (every_netns)
        if trace:
            self._tracing, self._thread = _begin_trace(None)

    def __call__(self) -> list[Seen]:
        return self._every() if self.every_netns else [self._one()]

    def _one(self) -> Seen:
        d = diagnose(self.target, self.thresholds, 0.0, self._previous, tracing=self._tracing,
                     before=self._last)
        self._previous = d.sample.kernel
        self._last = d
        return Seen({"netns": self.target.netns or "host"}, d.sample, d.report, d.started,
                    d.duration)

    def _every(self) -> list[Seen]:
        started, t0 = time.time(), time.perf_counter()
        report, samples = diagnose_all(self.target, EVERY_NETNS, self.thresholds, 0.0,
                                       self._previous_by_inode)
        took = time.perf_counter() - t0
        self.notes = list(report.notes)
        return [Seen(where, live, rep, started, took)
                for where, live, rep in zip(report.where, samples, report.reports, strict=True)
                if live is not None and rep is not None]

    def close(self) -> None:
        """Stop the trace (its instance is removed as its thread ends)."""
        if self._tracing is not None:
            self._tracing.stop.set()
            self._thread.join(timeout=10)
            self._tracing = None
