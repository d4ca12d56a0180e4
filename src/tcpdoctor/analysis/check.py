"""Run every rule over a snapshot and the kernel figures: the report `check` and `analyze`
print, and the findings `watch`, `record`, the exporter and `tune` use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis import counted
from tcpdoctor.analysis import rules as _rules  # noqa: F401  (registers the rules)
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.cost import summary
from tcpdoctor.analysis.excerpts import patterns
from tcpdoctor.analysis.forecast import attach, quote_failures, readings
from tcpdoctor.analysis.registry import NEEDS_REASONS, REGISTRY, Finding
from tcpdoctor.analysis.severity import Severity, exit_code, worst
from tcpdoctor.analysis.thresholds import Thresholds, defaults
from tcpdoctor.i18n import Msg
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.status import ExitCode

SCHEMA = 1


@dataclass
class Report:
    snap: Snapshot
    findings: list[Finding]
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interval: float = 0.0
    cost: dict[str, Any] = field(default_factory=dict)  # what the sockets cost (cost.summary)
    live: bool = False  # this host now (check), not a saved input (analyze)
    # How long until resources run out (analysis.forecast), None without two readings.
    forecasts: list[dict[str, Any]] | None = None
    # What a trace saw during the sample (check --trace, watch and exporter --trace).
    trace: dict[str, Any] | None = None
    # The namespace's conntrack table joined with the sockets (analysis.conntrack.summary).
    conntrack: dict[str, Any] | None = None

    @property
    def worst(self) -> Severity | None:
        return worst(f.severity for f in self.findings)

    @property
    def incomplete(self) -> bool:
        """Lines of the input could not be read: the report may miss what they held."""
        return self.snap.unparsed > 0

    def exit_code(self) -> ExitCode:
        """By the worst finding; never 0 for a report that lost rows of its input."""
        code = exit_code(f.severity for f in self.findings)
        return max(code, ExitCode.WARNING) if self.incomplete else code

    def as_json(self) -> dict[str, Any]:
        s = self.snap
        return {
            "schema": SCHEMA, "source": s.source, "host": s.host, "kernel": s.kernel,
            "netns": s.netns, "taken_at": s.taken_at, **s.summary(),
            "findings": [f.as_json(s.netns) for f in self.findings],
            "rules_skipped": self.skipped, "notes": self.notes,
            "interval_seconds": self.interval, "lines_unparsed": s.unparsed,
            "cost": self.cost, "forecasts": self.forecasts,
            **({"conntrack": self.conntrack} if self.conntrack is not None else {}),
        }


def available(ctx: Context) -> set[str]:
    have = set()
    if "pid" in ctx.snap.columns:
        have.add("owners")
    if "has_info" in ctx.snap.columns and bool(ctx.snap.columns["has_info"].any()):
        have.add("info")
    if "has_mem" in ctx.snap.columns and bool(ctx.snap.columns["has_mem"].any()):
        have.add("buffers")
    if ctx.fd_counts is not None:
        have.add("fds")
    if ctx.kernel is not None:
        have.add("kernel")
        if ctx.kernel.sysctls:
            have.add("sysctls")
    if ctx.trace is not None:
        have.add("trace")
    if ctx.conntrack is not None:
        have.add("conntrack")
    return have


def run_rules(ctx: Context, thresholds: Thresholds | None = None, live: bool = False,
              only: set[str] | None = None) -> Report:
    """Every registered rule whose inputs are present; the others are listed as skipped.

    live: the input is this host now (a missing counter sample is then worth a note about
    --interval; a saved capture has no such option). only: run just these rule ids."""
    th = thresholds or defaults()
    have = available(ctx)
    findings: list[Finding] = []
    skipped = []
    if ctx.snap.counts_only:  # a count per state: the rules that need rows are not run
        findings += counted.findings(ctx, th)
    for rid, r in REGISTRY.items():
        if only is not None and rid not in only:
            continue
        if ctx.snap.counts_only:
            if rid not in counted.STATE_RULES.values():
                skipped.append({"id": rid, "reason": NEEDS_REASONS["rows"]})
            continue
        missing = sorted(r.needs - have)
        if missing:
            skipped.append({"id": rid, "reason": _why_not(missing[0], live)})
            continue
        found = r.run(ctx, th[rid])
        if found is not None:
            findings.append(found)
    if only is None:  # an excerpt's pattern, where no rule's count was reached
        findings += patterns(ctx, findings, live)
    two = readings(ctx) is not None
    forecasts = ctx.forecasts() if two else []
    attach(findings, forecasts, th)
    quote_failures(findings, ctx.trace)
    findings.sort(key=lambda f: -f.severity.rank)
    notes = list(ctx.snap.notes) + (ctx.kernel.notes if ctx.kernel else [])
    if ctx.snap.counts_only:
        notes += counted.notes(ctx)
    if ctx.deltas is None and ctx.kernel is not None:
        notes.append(Msg("counters sampled once (--interval 0): rate-based evidence (overflows, "
                         "drops, cookies) was not measured") if live else
                     Msg("the input holds one reading of the kernel counters: rate-based "
                         "evidence (overflows, drops, cookies) was not measured"))
    cost = summary(ctx.snap, ctx.kernel, ctx.cost(), ctx.deltas, ctx.interval)
    table = None
    if ctx.conntrack is not None:
        from tcpdoctor.analysis.conntrack import summary as conntrack_summary

        table = conntrack_summary(ctx.conntrack["joined"], ctx.conntrack.get("ranges"))
    return Report(ctx.snap, findings, skipped, notes, ctx.interval, cost, live,
                  [f.as_json() for f in forecasts] if two else None, ctx.trace, table)


def _why_not(need: str, live: bool) -> str:
    """Why a rule could not run, as advice that can help where the report was made: a
    saved input cannot be traced afterwards, and root is not told to become root."""
    if need != "trace":
        return NEEDS_REASONS[need]
    if not live:
        return Msg("needs the kernel's tracepoints, which only a live `check --trace SECONDS` "
                   "on the host reads")
    if os.geteuid() == 0:
        return Msg("needs the kernel's tracepoints: run `check --trace SECONDS`")
    return NEEDS_REASONS[need]
