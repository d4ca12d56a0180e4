"""Run every rule over a snapshot and the kernel figures: the report `check` and `analyze` print."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis import rules as _rules  # noqa: F401  (registers the rules)
from tcpdoctor.analysis.findings import NEEDS_REASONS, RANK, REGISTRY, Context, Finding
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.model import Snapshot

SCHEMA = 1


@dataclass
class Report:
    snap: Snapshot
    findings: list[Finding]
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interval: float = 0.0

    @property
    def worst(self) -> str | None:
        return max((f.severity for f in self.findings), key=RANK.__getitem__, default=None)

    def exit_code(self) -> int:
        return {"critical": 2, "warning": 1}.get(self.worst or "", 0)

    def as_json(self) -> dict[str, Any]:
        s = self.snap
        return {
            "schema": SCHEMA, "source": s.source, "host": s.host, "kernel": s.kernel,
            "netns": s.netns, "taken_at": s.taken_at, **s.summary(),
            "findings": [f.as_json() for f in self.findings],
            "rules_skipped": self.skipped, "notes": self.notes,
            "interval_seconds": self.interval,
        }


def default_thresholds() -> dict[str, dict[str, float]]:
    return {rid: dict(r.defaults) for rid, r in REGISTRY.items()}


def load_thresholds(config: str | None, overrides: list[str]) -> dict[str, dict[str, float]]:
    """Defaults, then a TOML config file ([thresholds.RULE_ID] key = value), then ID.key=value."""
    th = default_thresholds()
    if config:
        try:
            with open(config, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise TcpDoctorError(f"{config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TcpDoctorError(f"{config}: not valid TOML ({exc})") from None
        for rid, values in data.get("thresholds", {}).items():
            for key, value in values.items():
                _set(th, rid, key, value, config)
    for item in overrides:
        name, sep, value = item.partition("=")
        rid, dot, key = name.partition(".")
        if not sep or not dot:
            raise TcpDoctorError(f"--threshold: expected RULE_ID.key=value, got {item!r}")
        _set(th, rid, key, value, "--threshold")
    return th


def _set(th: dict[str, dict[str, float]], rid: str, key: str, value: Any, where: str) -> None:
    if rid not in th:
        raise TcpDoctorError(f"{where}: unknown rule {rid!r}")
    if key not in th[rid]:
        known = ", ".join(th[rid]) or "none"
        raise TcpDoctorError(f"{where}: rule {rid} has no threshold {key!r} (known: {known})")
    try:
        th[rid][key] = float(value)
    except (TypeError, ValueError):
        raise TcpDoctorError(f"{where}: {rid}.{key} must be a number, got {value!r}") from None


def available(ctx: Context) -> set[str]:
    have = set()
    if "pid" in ctx.snap.columns:
        have.add("owners")
    if "has_info" in ctx.snap.columns and bool(ctx.snap.columns["has_info"].any()):
        have.add("info")
    if ctx.fd_counts is not None:
        have.add("fds")
    if ctx.kernel is not None:
        have.add("kernel")
        if ctx.kernel.sysctls:
            have.add("sysctls")
    return have


def run_rules(ctx: Context, thresholds: dict[str, dict[str, float]] | None = None,
              only: set[str] | None = None) -> Report:
    th = thresholds or default_thresholds()
    have = available(ctx)
    findings: list[Finding] = []
    skipped = []
    for rid, r in REGISTRY.items():
        if only is not None and rid not in only:
            continue
        missing = sorted(r.needs - have)
        if missing:
            skipped.append({"id": rid, "reason": NEEDS_REASONS[missing[0]]})
            continue
        found = r.fn(ctx, th[rid])
        if found is not None:
            findings.append(found)
    findings.sort(key=lambda f: -RANK[f.severity])
    notes = list(ctx.snap.notes) + (ctx.kernel.notes if ctx.kernel else [])
    if ctx.deltas is None and ctx.kernel is not None:
        notes.append("counters sampled once (--interval 0): rate-based evidence "
                     "(overflows, drops, cookies) was not measured")
    return Report(ctx.snap, findings, skipped, notes, ctx.interval)
