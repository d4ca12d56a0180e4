"""`relieve`: end exactly the sockets a finding names (or a filter picks), safely.

plan.py decides what and how, act.py carries it out; this module ties them to a fresh
read of the target (a diagnosis when a finding is named) and reads the table again after.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tcpdoctor.analysis.groups import filter_mask
from tcpdoctor.analysis.relief import RELIEF_STATES
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import BASE_COLUMNS, ID_COLUMNS
from tcpdoctor.relief.plan import Choice, Plan, choose
from tcpdoctor.sources.live import take_snapshot
from tcpdoctor.sources.target import Target

IDENTITY = frozenset(BASE_COLUMNS) | frozenset(ID_COLUMNS)


def make_plan(target: Target, choice: Choice,
              thresholds: Thresholds | None = None) -> tuple[Plan, list[str]]:
    """The plan from a fresh read of the target, and the notes of that read."""
    if choice.finding is None and not choice.has_filter():
        raise TcpDoctorError(Msg("name a finding (e.g. CLOSE_WAIT_LEAK) or a filter (--state, "
                                 "--port, --ip, --pid, --process): relieve never ends every "
                                 "socket"))
    if choice.finding is not None and choice.finding not in RELIEF_STATES:
        raise TcpDoctorError(Msg("ending sockets does not relieve {finding}; it can relieve "
                                 "{choices}", finding=choice.finding,
                                 choices=", ".join(RELIEF_STATES)))
    findings: dict[str, np.ndarray] = {}
    if choice.finding is not None:
        from tcpdoctor.diagnose import diagnose

        got = diagnose(_with_identity(target), thresholds, interval=0.0)
        snap = got.sample.snap
        findings = {f.id: f.sockets for f in got.report.findings if f.sockets is not None}
    else:
        snap = take_snapshot(target.source, target.netns, target.ipv4, target.ipv6,
                             want=IDENTITY, with_owners=target.owners)
    mask = filter_mask(snap, list(choice.states), list(choice.ports), list(choice.remotes),
                       list(choice.pids))
    return choose(snap, findings, choice, mask), list(snap.notes)


def _with_identity(target: Target) -> Target:
    from dataclasses import replace

    return replace(target, identity=True)


def still_there(plan: Plan, ended: np.ndarray, target: Target, wait: float = 2.0) -> int:
    """Ended sockets the table still shows with the same cookie and state, after giving
    graceful closes (FIN, then the peer's ACK) up to `wait` seconds to finish."""
    c = plan.columns
    deadline = time.monotonic() + wait
    while True:
        snap = take_snapshot(target.source, target.netns, target.ipv4, target.ipv6,
                             want=IDENTITY)
        now = snap.columns
        key_now = now["cookie"].astype(np.uint64) * np.uint64(16) + now["state"]
        key_mine = (c["cookie"][ended].astype(np.uint64) * np.uint64(16)
                    + c["state"][ended])
        left = int(np.count_nonzero(np.isin(key_mine, key_now)))
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def plan_json(plan: Plan) -> dict[str, Any]:
    """The dry run for people and scripts: groups, totals, refusals."""
    from tcpdoctor.relief.plan import METHODS, groups

    methods = np.bincount(plan.columns["method"], minlength=len(METHODS))
    return {"netns": plan.netns, "finding": plan.finding, "sockets": len(plan),
            "by_method": {m: int(methods[i]) for i, m in enumerate(METHODS)},
            "groups": groups(plan), "refused": plan.refused,
            "beyond_limit": plan.beyond_limit}
