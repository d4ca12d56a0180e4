"""A diagnosis of many network namespaces (--netns all): one report per namespace, each
finding naming where it was found; the host's exit code is the worst over all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis.check import SCHEMA, Report, run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.registry import Finding
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.i18n import Msg
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.status import ExitCode


@dataclass
class EveryNetnsReport:
    where: list[dict[str, Any]]  # per namespace: netns, netns_inode, pod, container
    reports: list[Report | None]  # None: no TCP socket there (not read)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[dict[str, Any], Report]]:
        return [(w, r) for w, r in zip(self.where, self.reports, strict=True) if r is not None]

    def findings(self) -> list[tuple[dict[str, Any], Finding]]:
        """Every finding with where it was found, most severe first, then most sockets."""
        out = [(w, f) for w, r in self.rows() for f in r.findings]
        out.sort(key=lambda wf: (-wf[1].severity.rank, wf[0]["netns"]))
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per namespace: its names and counts, the largest first."""
        out = [{**w, **r.snap.summary(), "findings": [f.id for f in r.findings]}
               for w, r in self.rows()]
        return sorted(out, key=lambda s: (-s["total"], s["netns"]))

    def totals(self) -> dict[str, Any]:
        states = dict.fromkeys(STATE_NAMES, 0)
        for _, r in self.rows():
            for name, n in r.snap.state_counts().items():
                states[name] += n
        total = sum(states.values())
        return {"total": total, "established": states["ESTABLISHED"],
                "non_established": total - states["ESTABLISHED"], "states": states}

    def skipped(self) -> list[dict[str, Any]]:
        """Rules that could not run, once each (the reason of their first namespace)."""
        out: dict[str, dict[str, Any]] = {}
        for _, r in self.rows():
            for s in r.skipped:
                out.setdefault(s["id"], s)
        return list(out.values())

    def exit_code(self) -> ExitCode:
        return max((r.exit_code() for _, r in self.rows()), default=ExitCode.OK)

    def as_json(self, host: str, kernel: str, taken_at: str) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "source": Msg("netlink (every namespace)"), "host": host,
            "kernel": kernel, "netns": "all", "taken_at": taken_at, **self.totals(),
            "namespaces": self.summary(),
            "findings": [{**f.as_json(str(w["netns"])), **w} for w, f in self.findings()],
            "rules_skipped": self.skipped(),
            "notes": self.notes,
        }


def split(snap: Snapshot, kernel: KernelState | None,
          thresholds: Thresholds | None = None) -> EveryNetnsReport:
    """A saved --netns all snapshot, diagnosed namespace by namespace, each with the
    kernel figures saved for it (older files hold only the host's: then only the host
    namespace's rules see kernel figures)."""
    ids = snap.columns["netns_id"]
    reports: list[Report | None] = []
    for i, space in enumerate(snap.spaces):
        mask = ids == i
        if not mask.any():
            reports.append(None)
            continue
        part = snap.select(mask, whole_table=False)
        part.netns, part.spaces, part.space_kernels = str(space["netns"]), [], []
        saved = snap.space_kernels[i] if i < len(snap.space_kernels) else None
        own = saved if saved is not None else (kernel if space["netns"] == "host" else None)
        reports.append(run_rules(Context.saved(part, own), thresholds))
    return EveryNetnsReport(list(snap.spaces), reports, list(snap.notes))
