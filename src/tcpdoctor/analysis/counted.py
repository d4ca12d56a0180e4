"""The rules that a count per state can decide, for an input of counts only.

A pasted `uniq -c` says how many sockets sit in each state and nothing else: the count
thresholds of the state rules apply as they are; what needs ports, peers or owners (which
side closes first, which process leaks) is named as the capture that would tell.
"""

from __future__ import annotations

from tcpdoctor.analysis.context import Context, level
from tcpdoctor.analysis.registry import REGISTRY, Finding
from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import (
    STATE_NAMES,
    TCP_CLOSE_WAIT,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
)

# The rule each troubled state's pathology belongs to, where the state alone decides it
# (TIME_WAIT's two rules need to know which side serves). Excerpts use the same map.
STATE_RULES = {TCP_CLOSE_WAIT: "CLOSE_WAIT_LEAK", TCP_FIN_WAIT2: "FIN_WAIT2_BUILDUP",
               TCP_LAST_ACK: "LAST_ACK_BUILDUP", TCP_SYN_RECV: "SYN_FLOOD",
               TCP_SYN_SENT: "UPSTREAM_UNREACHABLE"}
NEXT = {"CLOSE_WAIT_LEAK": Msg("`ss -tanp state close-wait` names the process that does not "
                               "close them, and its port"),
        "FIN_WAIT2_BUILDUP": Msg("`ss -tano state fin-wait-2` names the peers that do not "
                                 "finish their close"),
        "LAST_ACK_BUILDUP": Msg("`ss -tano state last-ack` names the peers whose final ACKs "
                                "do not arrive"),
        "SYN_FLOOD": Msg("`ss -tan state syn-recv` and `nstat -az TcpExtSyncookiesSent` tell a "
                         "flood from a slow accept()"),
        "UPSTREAM_UNREACHABLE": Msg("`ss -tanp state syn-sent` names the backend that does "
                                    "not answer, and who calls it")}


def findings(ctx: Context, th: dict[str, dict[str, float]]) -> list[Finding]:
    """The state rules run on counts: severity from the count, advice to capture rows."""
    out = []
    for state, rule_id in STATE_RULES.items():
        n = ctx.count(ctx.snap.columns["state"] == state)
        sev = level(n, th[rule_id]["warning"], th[rule_id]["critical"])
        if sev is None:
            continue
        name = STATE_NAMES[state - 1]
        rule = REGISTRY[rule_id]
        out.append(Finding(
            sev, Msg("{n:,} sockets in {state} (counts only: the input names no port, peer "
                     "or process).", n=n, state=name),
            {"counts_only": True, name.lower(): n},
            [Msg("Capture the rows to find the cause: {next}.", next=NEXT[rule_id])],
            id=rule_id, title=rule.title))
    return out


def notes(ctx: Context) -> list[str]:
    """TIME_WAIT's count alone cannot say which side closes first: say how to tell."""
    n = ctx.count(ctx.snap.columns["state"] == TCP_TIME_WAIT)
    if n < 1000:
        return []
    return [Msg("{n:,} sockets in TIME_WAIT: whether this host closes as a server or opens a "
                "connection per request decides the fix; `ss -tan state time-wait` (local "
                "port = a listening port: server side) tells", n=n)]
