"""One live diagnosis: the only place where a live sample meets the rules.

check, watch, record, the exporter and tune all call diagnose(), so that they give the
same findings for the same host: the same counter deltas, open-file counts and thresholds.
This module sits above sources and analysis and below the interfaces.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

from tcpdoctor.analysis.check import Report, run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.sources import kstate
from tcpdoctor.sources.live import LiveSample, Target, sample


@dataclass
class Diagnosis:
    sample: LiveSample
    report: Report
    duration: float  # seconds the sample and the rules took (the interval included)
    started: float = field(default_factory=time.time)  # when the sockets were read

    @property
    def findings(self) -> list:  # type: ignore[type-arg]
        return self.report.findings


def diagnose(target: Target, thresholds: Thresholds | None = None, interval: float = 1.0,
             previous: KernelState | None = None) -> Diagnosis:
    """Sample the target (rates over `interval`, or since `previous`) and run every rule."""
    started, t0 = time.time(), time.perf_counter()
    got = sample(target, interval, previous)
    nofile = functools.partial(kstate.nofile_limit, proc_root=target.proc_root)
    ctx = Context(got.snap, got.kernel, got.deltas, got.interval,
                  got.owners.fd_counts if got.owners else None, nofile)
    report = run_rules(ctx, thresholds, live=True)
    return Diagnosis(got, report, time.perf_counter() - t0, started)


class Diagnoser:
    """Repeated diagnoses of one target, each with the rates since the one before (watch,
    record, the exporter): the first has no rates, as with `check --interval 0`."""

    def __init__(self, target: Target, thresholds: Thresholds | None = None) -> None:
        self.target = target
        self.thresholds = thresholds
        self._previous: KernelState | None = None

    def __call__(self) -> Diagnosis:
        result = diagnose(self.target, self.thresholds, 0.0, self._previous)
        self._previous = result.sample.kernel
        return result
