"""The sysctl audit behind `tcpdoctor tune`: running values, configured values and the
evidence of the current snapshot, judged against the knowledge table."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.analysis import rules as _rules  # noqa: F401  (registers UNSAFE_SYSCTL)
from tcpdoctor.analysis.registry import REGISTRY, Finding, Found
from tcpdoctor.analysis.severity import Severity, exit_code, worst
from tcpdoctor.analysis.sysctl_kb import BY_KEY, KNOBS, Knob, harmful, safe_value
from tcpdoctor.i18n import Msg
from tcpdoctor.i18n.width import fill
from tcpdoctor.model.kernel_state import Setting
from tcpdoctor.status import ExitCode


@dataclass
class Entry:
    key: str
    current: str | None
    configured: str | None
    recommended: str | None
    why: str
    severity: str  # ok | info | warning | critical
    configured_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "current": self.current, "configured": self.configured,
                "recommended": self.recommended, "why": self.why, "severity": self.severity,
                "configured_at": self.configured_at}


@dataclass
class Audit:
    entries: list[Entry]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> Severity:
        return worst([e.severity for e in self.entries]
                     + [f.severity for f in self.findings]) or Severity.OK

    def exit_code(self) -> ExitCode:
        return exit_code([self.worst])


def kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _judge(knob: Knob, current: str | None, cfg: Setting | None, release: tuple[int, int],
           ehash: int, evidence: dict[str, tuple[str, str]]) -> Entry:
    configured = cfg.value if cfg else None
    entry = Entry(knob.key, current, configured, None, knob.meaning, "ok",
                  cfg.where if cfg else None)
    harm = harmful(knob, configured, ehash) or harmful(knob, current, ehash)
    if current is None and cfg is not None and knob.removed_in and release >= knob.removed_in:
        harm = harm or ("warning", Msg("removed in Linux "
                                       "{major}.{minor}: remove the "
                                       "line.", major=knob.removed_in[0],
                                       minor=knob.removed_in[1]))
    if harm:
        entry.severity, entry.why = harm
        # A key this kernel does not have (tcp_tw_recycle since 4.12) has no value to set:
        # its configured line is to be removed.
        entry.recommended = safe_value(knob.key, ehash) if current is not None else None
        return entry
    if cfg is not None and knob.myths:
        entry.severity, entry.why = "info", knob.myths[0]
    if knob.key in evidence and current is not None:
        entry.recommended, why = evidence[knob.key]
        entry.why = why if entry.severity == "ok" else f"{why} ({entry.why})"
        entry.severity = "info"
    return entry


def audit(current: dict[str, str | None], configured: dict[str, Setting],
          findings: list[Finding], release: str, ehash: int,
          exists: dict[str, bool] | None = None) -> Audit:
    """Judge every known key present in the kernel or in the configuration.

    findings: the check's findings; their sysctl recommendations are the evidence-backed
    suggestions (e.g. somaxconn only when a listener overflowed).
    exists: for configured keys outside the table, whether the kernel has them.
    """
    ver = kernel_version(release)
    evidence: dict[str, tuple[str, str]] = {}
    for f in findings:
        for rec in f.sysctl:
            evidence.setdefault(rec["key"], (str(rec["recommended"]),
                                             Msg("{rec_why} Evidence: {f_id}.", rec_why=rec['why'],
                                                 f_id=f.id)))
    entries = [_judge(k, current.get(k.key), configured.get(k.key), ver, ehash, evidence)
               for k in KNOBS if current.get(k.key) is not None or k.key in configured]
    for key, s in configured.items():
        if key not in BY_KEY and exists is not None and not exists.get(key, True):
            entries.append(Entry(key, None, s.value, None,
                                 Msg("unknown to this kernel (removed or misspelled): sysctl "
                                     "--system reports an error for it. Remove the line."),
                                 "warning", s.where))
    unsafe = unsafe_finding(entries)
    kept = [f for f in findings if f.sysctl and f.id != "UNSAFE_SYSCTL"]
    return Audit(entries, ([unsafe] if unsafe else []) + kept)


def unsafe_finding(entries: list[Entry]) -> Finding | None:
    """UNSAFE_SYSCTL as tune sees it: running and configured values, with file:line."""
    bad = [e for e in entries if e.severity in (Severity.WARNING, Severity.CRITICAL)]
    if not bad:
        return None
    configured = [e for e in bad if e.configured_at]
    actions: list[str] = []
    if configured:
        actions.append(Msg("Remove or fix these lines: ") + "; ".join(
            f"{e.configured_at}: {e.key} = {e.configured}" for e in configured) + ".")
    actions.append(Msg("Then apply the recommended values (`tcpdoctor tune --apply`, undone by "
                       "`tcpdoctor tune --rollback`)."))
    found = Found(
        worst(e.severity for e in bad) or Severity.WARNING,
        Msg("{n} harmful, obsolete or unknown setting(s): ", n=len(bad))
        + ", ".join(f"{e.key.split('.')[-1]}={e.configured or e.current}" for e in bad) + ".",
        {"settings": {e.key: {"current": e.current, "configured": e.configured,
                              "at": e.configured_at, "why": e.why} for e in bad}},
        actions, [],
        [{"key": e.key, "current": e.current, "recommended": e.recommended, "why": e.why}
         for e in bad],
    )
    return REGISTRY["UNSAFE_SYSCTL"].finding(found)


def dropin_values(audit_result: Audit, netns: bool) -> dict[str, str]:
    """Keys the drop-in sets: recommended, known to this kernel, settable in this namespace."""
    out = {}
    for e in audit_result.entries:
        knob = BY_KEY.get(e.key)
        if e.recommended is None or e.current is None or knob is None:
            continue
        if netns and not knob.per_netns:
            continue
        out[e.key] = e.recommended
    return out


def dropin_text(audit_result: Audit, values: dict[str, str], header: str,
                say: Callable[[str], str] = str) -> str:
    """The sysctl.d drop-in: the values, each with why as a comment in the language `say`
    speaks (English by default: the JSON output carries this one)."""
    why = {e.key: e for e in audit_result.entries}
    lines = [f"# {line}" for line in say(header).splitlines()]
    lines.append(say(Msg("# Undo with `tcpdoctor tune --rollback` (same --write/--netns).")))
    for key, value in values.items():
        e = why.get(key)
        note = (Msg("now {current}. {why}", current=e.current, why=e.why) if e
                else Msg("set with --set."))
        lines += ["#", *fill(f"{key}: {say(note)}", 76, "# ", "#   ", True).split("\n"),
                  f"{key} = {value}"]
    stale = [e for e in audit_result.entries if e.configured_at and e.severity in
             ("warning", "critical")]
    if stale:
        lines += ["#", say(Msg("# Also remove these lines elsewhere (they override or break "
                               "this file):"))]
        lines += [f"#   {e.configured_at}: {e.key} = {e.configured}" for e in stale]
    return "\n".join(lines) + "\n"
