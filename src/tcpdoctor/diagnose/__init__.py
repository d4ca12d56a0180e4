"""One live diagnosis: the only place where a live sample meets the rules.

check, watch, record, the exporter and tune all call diagnose() (repeat.Repeated for the
long-running ones), so that they give the same findings for the same host: the same counter
deltas, open-file counts and thresholds. This package sits above sources and analysis and
below history, render and the interfaces; it also holds what acts on the host on the
diagnosis' behalf (sysctl_apply).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis.check import Report, run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.every_netns import EveryNetnsReport
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.diagnose import conntrack
from tcpdoctor.i18n import Msg
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.sources import kstate
from tcpdoctor.sources.live import LiveSample, read_kernel, sample
from tcpdoctor.sources.target import Target


@dataclass
class Diagnosis:
    sample: LiveSample
    report: Report
    duration: float  # seconds the sample and the rules took (the interval included)
    started: float = field(default_factory=time.time)  # when the sockets were read


def diagnose(target: Target, thresholds: Thresholds | None = None, interval: float = 1.0,
             previous: KernelState | None = None, trace: float = 0.0,
             tracing: Any = None, before: Diagnosis | None = None) -> Diagnosis:
    """Sample the target (rates over `interval`, or since `previous`) and run every rule;
    with `trace` seconds, the kernel's tracepoints are read first and the socket table at
    the end of that window (so that what the trace saw being opened is in it; the rates
    then cover the window); with a running trace (`tracing`), what it saw since the
    previous diagnosis is used. A traced report always says what the trace saw. before:
    the previous diagnosis of a repeated run, whose table the forecasts compare with."""
    started, t0 = time.time(), time.perf_counter()
    tracer = _start_trace(trace)
    traced = None
    if tracer is not None:
        counters = read_kernel(target)
        traced = _finish_trace(*tracer, target)
        started = time.time()
        got = sample(target, 0.0, counters)
    else:
        got = sample(target, interval, previous)
    ctx = _context(got, target)
    conntrack.attach_one(ctx, got, target)
    if before is not None:
        ctx.earlier, ctx.earlier_seconds = before.sample.snap, started - before.started
        ctx.earlier_kernel = before.sample.kernel
        ctx.earlier_fds = before.sample.owners.fd_counts if before.sample.owners else None
    if traced is not None:
        ctx.trace = traced
    elif tracing is not None:
        ctx.trace = _trace_window(tracing, target)
    report = run_rules(ctx, thresholds, live=True)
    if ctx.trace is not None:
        report.notes.append(trace_line(ctx.trace))
    return Diagnosis(got, report, time.perf_counter() - t0, started)


def _context(got: LiveSample, target: Target) -> Context:
    """What the rules see of one live sample (open files per owner, their limits)."""
    nofile = functools.partial(kstate.nofile_limit, proc_root=target.proc_root)
    return Context(got.snap, got.kernel, got.deltas, got.interval,
                   got.owners.fd_counts if got.owners else None, nofile,
                   later=got.later, later_seconds=got.later_seconds, later_fds=got.later_fds)


def trace_line(result: dict[str, Any]) -> str:
    """What a trace window saw, in one line, even when nothing relevant happened."""
    opened = sum(s["opened"] for s in (*result.get("remote_services", []),
                                       *result.get("local_ports", [])))
    resets = sum(r["count"] for r in (*result.get("resets_sent", []),
                                      *result.get("resets_received", [])))
    if not result.get("events"):
        return Msg("traced {s:.1f} s: no TCP state change on the host",
                   s=result.get("seconds", 0.0))
    return Msg("traced {s:.1f} s: {events:,} TCP events on the host ({lost:,} lost), "
               "{resets:,} resets; here {opened:,} connections opened or accepted",
               s=result.get("seconds", 0.0), events=result["events"],
               lost=result.get("events_lost", 0), opened=opened, resets=resets)


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
    result: dict[str, Any] = run.result(target.netns_inode())
    return result


def _trace_window(run: Any, target: Target) -> dict[str, Any]:
    if run.error is not None:
        raise run.error
    result: dict[str, Any] = run.window(target.netns_inode())
    return result


def diagnose_all(target: Target, spec: str, thresholds: Thresholds | None = None,
                 interval: float = 1.0, previous: dict[int, KernelState] | None = None,
                 ) -> tuple[EveryNetnsReport, list[LiveSample | None]]:
    """Every namespace --netns SPEC names (all, pod:NS/NAME, container:ID), sampled
    together: one interval for all (or the rates since `previous`, per namespace inode),
    one owner scan; the host report and each namespace's sample."""
    from tcpdoctor.sources import every_netns, namespaces

    found = every_netns.discover(target)
    spaces = namespaces.select(found, spec)
    got = every_netns.sample_all(target, spaces, interval, previous=previous)
    ctxs = [None if s is None else _context(s, target) for s in got.samples]
    conntrack.attach_all(ctxs, got.samples, spaces, target)
    reports: list[Report | None] = [
        None if c is None else run_rules(c, thresholds, live=True) for c in ctxs]
    where = [ns.as_json() for ns in spaces]
    return EveryNetnsReport(where, reports, found.notes + got.notes), got.samples
