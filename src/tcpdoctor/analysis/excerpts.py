"""Excerpts read as patterns: a small pasted sample whose rows show a pathology.

Most incident pastes are excerpts of a growing pile: seven CLOSE_WAIT rows of one process
towards one service, posted as "they pile up". Each rule's thresholds are counts of a
whole table, which an excerpt never reaches; an expert still reads the pattern. So, for a
saved input of few sockets, a state that most rows share, concentrated on one owner or one
service, is reported at info level under the rule's own id, marked as a pattern in a small
sample, with what would confirm it. An input whose rows show no such pattern still gets
"No problems found".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.context import Context, top_destinations
from tcpdoctor.analysis.counted import STATE_RULES
from tcpdoctor.analysis.registry import REGISTRY, Finding
from tcpdoctor.analysis.rules.common import on_service_port
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import (
    STATE_NAMES,
    TCP_CLOSE_WAIT,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
)

SMALL = 100  # sockets: below every count threshold of the rules below
LEAST = 3  # rows in the state: fewer is an anecdote, not a pattern
SHARE = 0.5  # of the rows that are not LISTEN
FOCUS = 2 / 3  # of those rows on one owner, one local port or one remote service

CONFIRM = Msg("Confirm it with the whole table and its count over time: `ss -tanp` twice a "
              "minute apart (or `tcpdoctor watch`), or the bundle `tcpdoctor collect` makes; "
              "a count that keeps rising is the pathology.")


def patterns(ctx: Context, found: list[Finding], live: bool) -> list[Finding]:
    """Info findings for the patterns of a small saved input that no rule reported."""
    c = ctx.snap.columns
    rows = ctx.count(c["state"] != TCP_LISTEN)
    if live or not LEAST <= rows < SMALL:
        return []
    have = {f.id for f in found}
    covered = [f.sockets for f in found if f.sockets is not None]
    out = []
    for state in (TCP_CLOSE_WAIT, TCP_TIME_WAIT, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_SYN_RECV,
                  TCP_SYN_SENT):
        mask = c["state"] == state
        n = ctx.count(mask)
        if n < LEAST or n < SHARE * rows:
            continue
        if any(ctx.count(mask & sockets) * 2 >= n for sockets in covered):
            continue  # a finding already speaks of these sockets
        focus = _focus(ctx, mask, n, rows)
        if focus is None:
            continue
        rule_id = _rule_for(ctx, state, mask)
        if rule_id in have or rule_id not in REGISTRY:
            continue
        out.append(_finding(ctx, rule_id, state, mask, n, rows, focus))
    return out


def _focus(ctx: Context, mask: np.ndarray, n: int, rows: int) -> dict[str, Any] | None:
    """What most of the rows share: an owner, a local port, a remote service. Counts per
    state carry none of these: there, only a state that holds most of the sockets is a
    pattern ("CLOSE_WAIT 23" beside "TIME_WAIT 1")."""
    if ctx.snap.counts_only:
        return {"counts_only": True} if n >= FOCUS * rows else None
    procs = ctx.processes(mask, limit=1)
    if procs and procs[0]["count"] >= FOCUS * n:
        return {"process": procs[0]}
    # A local port is a focus only where it serves: ephemeral ports say nothing.
    ports = ctx.top("sport", mask & on_service_port(ctx),
                    limit=1)
    if ports and ports[0][1] >= FOCUS * n and ports[0][0]:
        return {"local_port": int(ports[0][0]), "rows": ports[0][1]}
    dests = top_destinations(ctx.snap, ctx.snap.addressed(mask, remote=True), limit=1)
    if dests and dests[0][1] >= FOCUS * n:
        return {"remote": dests[0][0], "rows": dests[0][1]}
    return None


def _rule_for(ctx: Context, state: int, mask: np.ndarray) -> str:
    """The rule a state's pathology belongs to (TIME_WAIT: by which side serves)."""
    if state == TCP_TIME_WAIT:
        served = on_service_port(ctx)
        return ("TIME_WAIT_SERVER_CLOSE" if ctx.count(mask & served) * 2 > ctx.count(mask)
                else "TIME_WAIT_CLIENT_SHORT")
    return STATE_RULES[state]


def _finding(ctx: Context, rule_id: str, state: int, mask: np.ndarray, n: int, rows: int,
             focus: dict[str, Any]) -> Finding:
    name = STATE_NAMES[state - 1]
    where: str
    if "process" in focus:
        p = focus["process"]
        where = Msg("{count} of them held by {name} (pid {pid})", count=p["count"],
                    name=p["name"], pid=p["pid"])
        dests = top_destinations(ctx.snap, ctx.snap.addressed(mask, remote=True), limit=1)
        if dests and dests[0][1] >= FOCUS * n:
            where = where + Msg(", towards {remote}", remote=dests[0][0])
    elif "counts_only" in focus:
        where = Msg("read from counts per state, which name no owner or peer")
    elif "local_port" in focus:
        where = Msg("{count} of them on local port {port}", count=focus["rows"],
                    port=focus["local_port"])
    else:
        where = Msg("{count} of them towards {remote}", count=focus["rows"],
                    remote=focus["remote"])
    rule = REGISTRY[rule_id]
    summary = Msg("{n} of {rows} rows are {state}, {where}: the pattern of “{title}” in a "
                  "small sample; its count decides how bad it is.", n=n, rows=rows,
                  state=name, where=where, title=rule.title)
    evidence = {"pattern": True, "sample_rows": rows, "rows_in_state": n, "state": name,
                **{k: v for k, v in focus.items() if k != "process"}}
    processes = [focus["process"]] if "process" in focus else ctx.processes(mask)
    return Finding(Severity.INFO, summary, evidence, [CONFIRM, *_advice(ctx, rule_id)],
                   processes, id=rule_id, title=rule.title)


def _advice(ctx: Context, rule_id: str) -> list[str]:
    """The rule's own advice for these rows: the rule run with its count threshold at 1."""
    rule = REGISTRY[rule_id]
    th = dict(rule.defaults, warning=1.0)
    if "critical" in th:
        th["critical"] = float("inf")
    found = rule.run(ctx, th)
    return list(found.actions) if found is not None else []
