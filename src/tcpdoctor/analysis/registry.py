"""Findings and the rule registry: each rule is a small function registered with its id,
title, default thresholds (documented in docs/rules.md, overridable) and what it needs.

A rule returns what it found (severity, summary, evidence, actions...); the registry adds
the id and title it was registered with, so a rule never restates them, and refuses a
second rule with the same id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.relief import RELIEF_STATES, relief_command
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg

# Inputs a rule may need; a rule whose needs are not met is skipped with the reason.
NEEDS_REASONS = {
    "owners": Msg("process owners were not looked up (--no-processes or unavailable)"),
    "info": Msg("no tcp_info (procfs source or a text dump without it)"),
    "kernel": Msg("no kernel figures (sockstat, counters, sysctls) for this input"),
    "sysctls": Msg("sysctl values unavailable for this input"),
    "buffers": Msg("no per-socket buffer memory (skmem: the netlink source, or `ss -m` in a "
                   "capture)"),
    "fds": Msg("per-process open-file counts unavailable (owner scan skipped, or offline input)"),
    "trace": Msg("needs the kernel's tracepoints: run `check --trace SECONDS` as root"),
    "conntrack": Msg("no conntrack table was read (needs root and a table with entries in "
                     "this namespace; offline: a bundle with conntrack.txt)"),
    "rows": Msg("needs socket rows (ports, peers, owners): this input holds counts per state "
                "only; capture `ss -tanp` or `netstat -antp`"),
}


@dataclass
class Found:
    """What a rule found, before the registry names it."""

    severity: Severity
    summary: str
    evidence: dict[str, Any]
    actions: list[str]
    processes: list[dict[str, Any]] = field(default_factory=list)
    sysctl: list[dict[str, Any]] = field(default_factory=list)
    # The sockets the finding is about: the registry prices them into evidence["cost"].
    sockets: np.ndarray | None = field(default=None, repr=False, compare=False)
    # Of those, the sockets `relieve` may end for this finding (0: relief cannot help here).
    relievable: int = 0

    def __post_init__(self) -> None:
        self.severity = Severity(self.severity)


@dataclass
class Finding(Found):
    """A Found with the id and title of the rule that found it."""

    id: str = ""
    title: str = ""

    def as_json(self, netns: str | None = None) -> dict[str, Any]:
        """The finding for scripts; netns: where it was found, for its relief command."""
        out = {"id": self.id, "severity": str(self.severity), "title": self.title,
               "summary": self.summary, "evidence": self.evidence,
               "processes": self.processes, "actions": self.actions}
        if self.sysctl:
            out["sysctl"] = self.sysctl
        relief = relief_command(self.id, netns) if self.relievable else None
        if relief:
            out["relief"] = relief
        return out


# Advice that holds on Linux only (its sysctls, its kernel constants, its tools): left out of
# the findings of a capture taken on Windows or a BSD, whose own facts the report's note gives.
LINUX_ONLY = re.compile(r"sysctl|net\.(?:ipv4|core)|\btcp_[a-z_]+|/proc/|ulimit|EMFILE|"
                        r"LimitNOFILE|TCP_TIMEWAIT_LEN|Linux|\bss\b|conntrack|somaxconn")

RuleFn = Callable[[Context, dict[str, float]], Found | None]


@dataclass
class Rule:
    id: str
    title: str
    needs: frozenset[str]
    defaults: dict[str, float]
    fn: RuleFn
    doc: str = ""

    def finding(self, found: Found) -> Finding:
        return Finding(**vars(found), id=self.id, title=self.title)

    def run(self, ctx: Context, thresholds: dict[str, float]) -> Finding | None:
        found = self.fn(ctx, thresholds)
        if found is None:
            return None
        if ctx.snap.platform != "linux":
            found.actions = [a for a in found.actions if not LINUX_ONLY.search(a)]
        if found.sockets is not None and self.id in RELIEF_STATES:
            found.relievable = ctx.count(found.sockets & np.isin(ctx.snap.columns["state"],
                                                                 RELIEF_STATES[self.id]))
        if found.sockets is not None:
            cost = ctx.cost()
            if cost.objects_known or cost.buffers_known:
                found.evidence["cost"] = cost.of(found.sockets)
        return self.finding(found)


REGISTRY: dict[str, Rule] = {}


def rule(rule_id: str, title: str, needs: tuple[str, ...] = (),
         **defaults: float) -> Callable[[RuleFn], RuleFn]:
    unknown = set(needs) - set(NEEDS_REASONS)
    if unknown:
        raise ValueError(Msg("rule {rule_id}: unknown needs {unknown}", rule_id=rule_id,
                             unknown=sorted(unknown)))

    def register(fn: RuleFn) -> RuleFn:
        if rule_id in REGISTRY:
            raise ValueError(Msg("rule id {rule_id} registered twice "
                                 "({first} and {second})", rule_id=rule_id,
                                 first=REGISTRY[rule_id].fn.__module__,
                                 second=fn.__module__))
        REGISTRY[rule_id] = Rule(rule_id, Msg(title), frozenset(needs), dict(defaults), fn,
                                 " ".join((fn.__doc__ or "").split()))
        return fn
    return register
