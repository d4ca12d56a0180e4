"""One live diagnosis: the only place where a live sample meets the rules.

check, watch, record, the exporter and tune all call diagnose(), so that they give the
same findings for the same host: the same counter deltas, open-file counts and thresholds.
This module sits above sources and analysis and below the interfaces.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis.check import Report, run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.host import HostReport
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.analysis.tune import Audit
from tcpdoctor.i18n import Cat, Msg
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.sources import kstate
from tcpdoctor.sources.live import LiveSample, sample
from tcpdoctor.sources.target import Target


@dataclass
class Diagnosis:
    sample: LiveSample
    report: Report
    duration: float  # seconds the sample and the rules took (the interval included)
    started: float = field(default_factory=time.time)  # when the sockets were read


def diagnose(target: Target, thresholds: Thresholds | None = None, interval: float = 1.0,
             previous: KernelState | None = None, trace: float = 0.0,
             tracing: Any = None) -> Diagnosis:
    """Sample the target (rates over `interval`, or since `previous`) and run every rule;
    with `trace` seconds, the kernel's tracepoints are read alongside the sample; with a
    running trace (`tracing`), what it saw since the previous diagnosis is used."""
    started, t0 = time.time(), time.perf_counter()
    tracer = _start_trace(trace)
    got = sample(target, interval, previous)
    nofile = functools.partial(kstate.nofile_limit, proc_root=target.proc_root)
    ctx = Context(got.snap, got.kernel, got.deltas, got.interval,
                  got.owners.fd_counts if got.owners else None, nofile)
    if tracer is not None:
        ctx.trace = _finish_trace(*tracer, target)
    elif tracing is not None:
        ctx.trace = _trace_window(tracing, target)
    report = run_rules(ctx, thresholds, live=True)
    return Diagnosis(got, report, time.perf_counter() - t0, started)


def _start_trace(seconds: float) -> tuple[Any, Any] | None:
    return _begin_trace(seconds) if seconds > 0 else None


def _begin_trace(seconds: float | None) -> tuple[Any, Any]:
    """A trace running in its thread (for `seconds`, or until stopped), or its error."""
    from tcpdoctor.sources.tracefs.run import Trace

    run = Trace(seconds)
    thread = run.start_thread()
    if run.error is not None:
        raise run.error
    return run, thread


def _finish_trace(run: Any, thread: Any, target: Target) -> dict[str, Any]:
    thread.join()
    if run.error is not None:
        raise run.error
    result: dict[str, Any] = run.result(_netns_inode(target))
    return result


def _trace_window(run: Any, target: Target) -> dict[str, Any]:
    if run.error is not None:
        raise run.error
    result: dict[str, Any] = run.window(_netns_inode(target))
    return result


def _netns_inode(target: Target) -> int | None:
    if target.netns is None:
        return None
    from tcpdoctor.sources.netns import inode

    return inode(target.netns)


def diagnose_all(target: Target, spec: str, thresholds: Thresholds | None = None,
                 interval: float = 1.0, previous: dict[int, KernelState] | None = None,
                 ) -> tuple[HostReport, list[LiveSample | None]]:
    """Every namespace --netns SPEC names (all, pod:NS/NAME, container:ID), sampled
    together: one interval for all (or the rates since `previous`, per namespace inode),
    one owner scan; the host report and each namespace's sample."""
    from tcpdoctor.analysis.host import HostReport
    from tcpdoctor.sources import namespaces, sweep

    found = sweep.discover(target)
    spaces = namespaces.select(found, spec)
    got = sweep.sample_all(target, spaces, interval, previous=previous)
    nofile = functools.partial(kstate.nofile_limit, proc_root=target.proc_root)
    reports: list[Report | None] = []
    for s in got.samples:
        if s is None:
            reports.append(None)
            continue
        ctx = Context(s.snap, s.kernel, s.deltas, s.interval,
                      s.owners.fd_counts if s.owners else None, nofile)
        reports.append(run_rules(ctx, thresholds, live=True))
    where = [ns.as_json() for ns in spaces]
    return HostReport(where, reports, found.notes + got.notes), got.samples


class Diagnoser:
    """Repeated diagnoses of one target, each with the rates since the one before (watch,
    record, the exporter): the first has no rates, as with `check --interval 0`."""

    def __init__(self, target: Target, thresholds: Thresholds | None = None,
                 trace: bool = False) -> None:
        self.target = target
        self.thresholds = thresholds
        self._previous: KernelState | None = None
        self._tracing: Any = None
        self._thread: Any = None
        if trace:  # one trace for the whole run, read in windows (`watch --trace`)
            self._tracing, self._thread = _begin_trace(None)

    def __call__(self) -> Diagnosis:
        result = diagnose(self.target, self.thresholds, 0.0, self._previous,
                          tracing=self._tracing)
        self._previous = result.sample.kernel
        return result

    def close(self) -> None:
        """Stop the trace (its instance is removed as its thread ends)."""
        if self._tracing is not None:
            self._tracing.stop.set()
            self._thread.join(timeout=10)
            self._tracing = None


@dataclass
class Gathered:
    audit: Audit
    host: str
    kernel: str
    taken_at: str
    where: str
    ehash: int

    def header(self, prefix: str = "tcpdoctor tune") -> str:
        return Cat(prefix, f" · {self.host} (", self.where, f") · Linux {self.kernel} · "
                                                             f"{self.taken_at}")


def audit_sysctls(target: Target, audit_files: tuple[str, ...], interval: float) -> Gathered:
    """What `tune` judges: the running values (this namespace's, the host's global ones),
    the configured ones (sysctl.d files or --audit-file) and the evidence of a diagnosis."""
    from tcpdoctor.analysis import tune as audit_mod
    from tcpdoctor.analysis.sysctl_kb import BY_KEY, KNOBS, ehash_entries
    from tcpdoctor.model.kernel_state import sysctl_path
    from tcpdoctor.sources import netns as netns_mod
    from tcpdoctor.sources import sysctl_files

    d = diagnose(target, None, interval)
    keys = (*tuple(k.key for k in KNOBS), "net.ipv4.tcp_ehash_entries")
    current = netns_mod.run_in(target.netns, lambda: kstate.read_sysctls(keys=keys))
    if target.netns:
        host = kstate.read_sysctls(keys=tuple(k.key for k in KNOBS if not k.per_netns))
        current.update({k: v for k, v in host.items() if v is not None})
    files = list(audit_files) or sysctl_files.system_files()
    configured, _, notes = sysctl_files.read(files, strict=bool(audit_files))
    unknown = [k for k in configured if k not in BY_KEY]
    exists = netns_mod.run_in(target.netns, lambda: {
        k: os.path.exists(sysctl_path(k)) for k in unknown})
    ehash = ehash_entries(current.get("net.ipv4.tcp_ehash_entries"))
    snap = d.sample.snap
    result = audit_mod.audit(current, configured, d.report.findings, snap.kernel, ehash, exists)
    result.notes = [*notes, Msg("audited: {files}",
                                files=", ".join(files) or Msg("(no sysctl files)"))]
    return Gathered(result, snap.host, snap.kernel, snap.taken_at, target.where, ehash)
