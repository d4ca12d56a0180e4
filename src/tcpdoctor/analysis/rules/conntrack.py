"""The conntrack table joined with the sockets: ghost entries and SNAT port exhaustion.

ctx.conntrack (when a table was read): {"joined": analysis.conntrack.Joined, "ranges":
NAT port ranges, "limits": count, max and the TCP timeouts of net.netfilter}.
"""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis import conntrack as ct
from tcpdoctor.analysis.context import Context, level, sysctl_rec
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.i18n import Msg

# Which timeout keeps an entry of each open state alive, and the value to suggest when it
# is above it: a day for ESTABLISHED (kube-proxy's default; the kernel's is 5 days), the
# kernel's own defaults for the closing states (kube-proxy raises CLOSE_WAIT to an hour).
TIMEOUTS = {"ESTABLISHED": ("timeout_established", "nf_conntrack_tcp_timeout_established",
                            86400),
            "CLOSE_WAIT": ("timeout_close_wait", "nf_conntrack_tcp_timeout_close_wait", 60),
            "FIN_WAIT": ("timeout_fin_wait", "nf_conntrack_tcp_timeout_fin_wait", 120),
            "SYN_SENT": ("timeout_syn_sent", "nf_conntrack_tcp_timeout_syn_sent", 120)}


def _where(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['namespace']} ({r['entries']:,})" for r in rows[:3])


@rule("CONNTRACK_GHOSTS", "Conntrack entries whose sockets are gone", needs=("conntrack",),
      warning=100, critical=10000)
def ghosts(ctx: Context, th: dict[str, float]) -> Found | None:
    """Open entries (ESTABLISHED, CLOSE_WAIT, ...) whose local socket no longer exists."""
    info = ctx.conntrack or {}
    j: ct.Joined = info["joined"]
    g = ct.ghosts(j, limit=5)
    sev = level(g["count"], th["warning"], th["critical"])
    if sev is None:
        return None
    limits = info.get("limits", {})
    keeping = []
    for state in sorted(g["by_state"], key=lambda s: -g["by_state"][s]):
        if state in TIMEOUTS:
            key, sysctl, default = TIMEOUTS[state]
            now = limits.get(key)
            keeping.append({"state": state, "sysctl": f"net.netfilter.{sysctl}",
                            "seconds": now, "suggested": default})
    kept = "; ".join(f"{k['state']}: {k['sysctl']}="
                     f"{'?' if k['seconds'] is None else k['seconds']} s" for k in keeping)
    return Found(
        sev,
        Msg("{n:,} of {total:,} conntrack entries are open while their local socket is gone "
            "({states}); mostly in {where}; kept by {kept}.", n=g["count"], total=len(j.table),
            states=", ".join(f"{k} {v:,}" for k, v in g["by_state"].items()),
            where=_where(g["by_namespace"]), kept=kept or "?"),
        {"ghosts": g["count"], "entries": len(j.table), "by_state": g["by_state"],
         "by_namespace": {r["namespace"]: r["entries"] for r in g["by_namespace"][:5]},
         "timeouts": {k["sysctl"]: k["seconds"] for k in keeping},
         "examples": [e["original"] for e in g["entries"][:3]], "table": j.table.netns},
        [
            Msg("The FIN or RST of these connections never reached this table (dropped by a "
                "firewall, a node that vanished, a pod deleted mid-connection): the entries "
                "live until their timeout."),
            Msg("Lower the timeout that keeps them (net.netfilter.nf_conntrack_tcp_timeout_"
                "established defaults to 5 days; on Kubernetes set kube-proxy's "
                "--conntrack-tcp-timeout-established and --conntrack-tcp-timeout-close-wait)."),
            Msg("Delete them now: `tcpdoctor relieve --conntrack-ghosts` (a dry run; add "
                "--apply), which never deletes an entry that still has a socket."),
        ],
        sysctl=[sysctl_rec(k["sysctl"], k["seconds"], k["suggested"],
                           Msg("entries of connections whose sockets are gone live this long"))
                for k in keeping if k["seconds"] is not None and k["seconds"] > k["suggested"]],
    )


@rule("SNAT_PORT_EXHAUSTION", "Source NAT running out of ports towards a destination",
      needs=("conntrack",), warning_share=0.8, critical_share=0.95)
def snat_exhaustion(ctx: Context, th: dict[str, float]) -> Found | None:
    """Per (translated source, destination): NAT mappings in use against the range."""
    info = ctx.conntrack or {}
    rows = ct.snat_usage(info["joined"].table, info.get("ranges"), limit=20)
    full = [r for r in rows if r["ports_used"] / max(r["ports_available"], 1)
            >= th["warning_share"]]
    if not full:
        return None
    worst = max(full, key=lambda r: r["ports_used"] / max(r["ports_available"], 1))
    share = worst["ports_used"] / max(worst["ports_available"], 1)
    failed = ctx.delta("conntrack.insert_failed") + ctx.delta("conntrack.drop")
    sev = level(share, th["warning_share"], th["critical_share"], escalate=failed > 0)
    if sev is None:
        return None
    return Found(
        sev,
        Msg("Source NAT {source} -> {destination} uses {used:,} of {available:,} ports "
            "({share:.0%}, range {range}); conntrack insert failures and drops during the "
            "sample: {failed}.", source=worst["translated_source"],
            destination=worst["destination"], used=worst["ports_used"],
            available=worst["ports_available"], share=share, range=worst["range"],
            failed=ctx.said("conntrack.insert_failed", "conntrack.drop")),
        {"destinations": full, "insert_failed_delta": ctx.measured("conntrack.insert_failed"),
         "table": info["joined"].table.netns},
        [
            Msg("Every connection to one destination through one NAT address needs its own "
                "source port: reuse connections (keep-alive, pools) instead of opening one "
                "per request."),
            Msg("Add SNAT addresses (a pool, or more egress IPs / NAT gateways), or widen the "
                "port range of the masquerade/SNAT rule."),
            Msg("With iptables, --random-fully spreads the port choice and avoids the races "
                "that show as insert_failed; entries in TIME_WAIT keep their port for "
                "nf_conntrack_tcp_timeout_time_wait (120 s)."),
        ],
    )
