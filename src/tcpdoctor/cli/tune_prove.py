"""`tune --prove`: which diagnosed patterns to replay, the sandbox's inputs read from the
target, and the proof that the host's and the target's sysctls did not change."""

from __future__ import annotations

import signal
from typing import Any

from tcpdoctor.cli.options import SocketOptions
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, _f
from tcpdoctor.model.kernel_state import SYSCTLS
from tcpdoctor.render.output import emit_json, notes
from tcpdoctor.status import ExitCode


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # the sandboxes close in their finally blocks


def run_prove(sock: SocketOptions, finding: str | None, seconds: float) -> ExitCode:
    from tcpdoctor.diagnose import diagnose
    from tcpdoctor.lab import prove
    from tcpdoctor.lab.net import require_root
    from tcpdoctor.lab.prove import sysctl_of

    require_root()
    signal.signal(signal.SIGTERM, _interrupted)
    target = sock.target(owners=False)
    found = {f.id: f for f in diagnose(target, interval=0.0).report.findings}
    wanted = [finding.upper()] if finding else [fid for fid in found if fid in prove.PATTERNS]
    unknown = [fid for fid in wanted if fid not in prove.PATTERNS]
    if unknown:
        raise TcpDoctorError(Msg("--prove cannot replay {finding}; it replays {choices}",
                                 finding=unknown[0], choices=", ".join(prove.PATTERNS)))
    before = _sysctls(target.netns)
    copied = {k: before[1].get(k) for k in prove.COPIED}
    proofs = []
    for fid in wanted:
        proofs += prove.prove(fid, copied, _backlog(found.get(fid)), seconds)
    after = _sysctls(target.netns)
    if after != before:  # never expected: said loudly rather than hidden
        raise TcpDoctorError(Msg("sysctls differ after --prove: check them (tune --json)"))
    said = [_f("{finding} is not present in {where} now: proved on its pattern alone",
               finding=fid, where=target.where) for fid in wanted if fid not in found]
    compared = len(before[0]) + (len(before[1]) if target.netns else 0)
    unchanged = (_f("sysctls of the host and of {where} unchanged ({n} values compared before "
                    "and after)", where=target.where, n=compared) if target.netns else
                 _f("the host's sysctls unchanged ({n} values compared before and after)",
                    n=compared))
    measured = {sysctl_of(p.change): p for p in proofs if sysctl_of(p.change)}
    recommended = [{"key": key, "value": value,
                    "proof": measured[key].as_json() if key in measured else None}
                   for key, value in _recommendations(target).items()]
    if sock.as_json:
        emit_json({"schema": 1, "netns": target.netns, "findings": wanted,
                   "recommendations": recommended,
                   "proofs": [p.as_json() for p in proofs], "sysctls_unchanged": True,
                   "scaled": {"ports": prove.PORTS, "connects_per_second": prove.RATE,
                              "seconds": prove.SECONDS, "backlog": prove.BACKLOG}})
    else:
        from tcpdoctor.render.report import render_proofs

        render_proofs([p.as_json() for p in proofs], wanted, target.where, recommended)
        notes([*said, unchanged])
    return ExitCode.OK


def _backlog(finding: Any) -> int:
    """The smallest accept-queue limit the finding saw (min(backlog, somaxconn))."""
    from tcpdoctor.lab.prove import BACKLOG

    rows = (finding.evidence.get("listeners") or []) if finding is not None else []
    limits = [int(r["limit"]) for r in rows if isinstance(r, dict) and r.get("limit")]
    return min(limits) if limits else BACKLOG


def _sysctls(netns: str | None) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(the host's, the target's) values of every key tcpdoctor reads or the sandbox sets."""
    from tcpdoctor.lab.prove import COPIED
    from tcpdoctor.sources import kstate
    from tcpdoctor.sources import netns as netns_mod

    keys = tuple(dict.fromkeys((*SYSCTLS, *COPIED)))
    host = kstate.read_sysctls("/proc", keys)
    return host, netns_mod.run_in(netns, lambda: kstate.read_sysctls("/proc", keys))


def _recommendations(target: Any) -> dict[str, str]:
    """What `tune` itself recommends for the target (key -> value)."""
    from tcpdoctor.analysis import tune as audit_mod
    from tcpdoctor.diagnose.audit import audit_sysctls

    result = audit_sysctls(target, (), 0.0).audit
    return audit_mod.dropin_values(result, target.netns is not None)
