"""Resets seen by the kernel's tracepoints (`check --trace`): a storm of RSTs sent or
received, with the kernel's reason for each sent one (Linux 6.10+ names it)."""

from __future__ import annotations

from tcpdoctor.analysis.context import Context, level
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.i18n import Msg

REASON_ADVICE: dict[str, str] = {
    "NO_SOCKET": Msg("Resets for NO_SOCKET answer segments to ports nothing listens on (or to "
                     "connections already gone): a client retrying a dead port, a scan, or late "
                     "packets of closed connections."),
    "TCP_ABORT_ON_CLOSE": Msg("TCP_ABORT_ON_CLOSE: the application closed with unread data in "
                              "its receive buffer; read to EOF (or shutdown) before close()."),
    "TCP_ABORT_ON_LINGER": Msg("TCP_ABORT_ON_LINGER: SO_LINGER with a zero timeout; every close "
                               "is a reset. Remove it unless the protocol needs it."),
    "TCP_ABORT_ON_DATA": Msg("TCP_ABORT_ON_DATA: data arrived after this side closed."),
    "TCP_STATE": Msg("TCP_STATE: a connection aborted by its own side (close() with SO_LINGER "
                     "0, or shutdown in a state that requires a reset)."),
    "NOT_SPECIFIED": Msg("Resets without a recorded reason (older kernels name none)."),
}


@rule("RESET_STORM", "Many TCP resets sent or received", needs=("trace",),
      warning=100, critical=1000)
def reset_storm(ctx: Context, th: dict[str, float]) -> Found | None:
    """Resets per second while tracing: sent (with reasons) and received (by peer)."""
    trace = ctx.trace or {}
    rate = trace.get("resets_per_second", {})
    total = float(rate.get("sent", 0)) + float(rate.get("received", 0))
    sev = level(total, th["warning"], th["critical"])
    if sev is None:
        return None
    sent = trace.get("resets_sent", [])
    received = trace.get("resets_received", [])
    reasons: dict[str, int] = {}
    for r in sent:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + r["count"]
    top = ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
    where = (Msg("; sent mostly from {local} ({reason})",
                 local=sent[0]['local'], reason=sent[0]['reason']) if sent else "")
    peer = (Msg("; received mostly from {peer}", peer=received[0]["peer"]) if received
            else "")
    actions = [REASON_ADVICE[k] for k in reasons if k in REASON_ADVICE][:3]
    actions.append(Msg("Run `tcpdoctor trace --summary` to see which connections end in resets "
                       "and which processes own them."))
    return Found(
        sev,
        Msg("{total:,.0f} resets/s during the {seconds:g} s trace: "
            "{sent:,}/s sent, {received:,}/s received{where}{peer}.",
            total=total, seconds=trace.get('seconds', 0),
            sent=rate.get('sent', 0), received=rate.get('received', 0),
            where=where, peer=peer),
        {"resets_per_second": rate, "sent_reasons": reasons or top,
         "resets_sent": sent[:5], "resets_received": received[:5],
         "events_lost": trace.get("events_lost", 0)},
        actions,
    )
