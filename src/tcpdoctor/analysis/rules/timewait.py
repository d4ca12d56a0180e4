"""TIME_WAIT rules: who closes first, who opens a connection per request, the bucket cap."""

from __future__ import annotations

import numpy as np

from tcpdoctor.analysis.context import Context, level, names_of, sysctl_rec, top_destinations
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.rules.common import (
    TIME_WAIT_FIXED,
    in_state,
    owners_by_listen_port,
    port_range,
    port_range_evidence,
    ports_text,
    server_side_tw,
    service_ports,
)
from tcpdoctor.analysis.rules.traced import traced_closer, traced_opener
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import among_ports
from tcpdoctor.model.tcp import (
    TCP_LISTEN,
    TCP_TIME_WAIT,
    TIMER_TIME_WAIT,
)


@rule("TIME_WAIT_SERVER_CLOSE", "The server closes many short connections first",
      warning=2000, critical_bucket_share=0.5)
def time_wait_server(ctx: Context, th: dict[str, float]) -> Found | None:
    """TIME_WAIT whose local port is a listening port: this host closed its side first."""
    server, _ = server_side_tw(ctx)
    n = ctx.count(server)
    cap = ctx.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    crit = th["critical_bucket_share"] * cap if cap else float("inf")
    sev = level(n, th["warning"], max(crit, th["warning"]))
    if sev is None:
        return None
    ports = ctx.top("sport", server)
    procs = owners_by_listen_port(ctx, server)
    decided = service_ports(ctx)[1]
    where = Msg("listening") if decided == "LISTEN rows" else Msg("service")
    why = "" if decided == "LISTEN rows" else Msg(" (inferred: the input has no LISTEN rows)")
    who = Msg(" ({parts})", parts=names_of(procs)) if procs else ""
    traced = traced_closer(ctx, int(ports[0][0]))
    return Found(
        sev,
        Msg("{n:,} TIME_WAIT sockets sit on this host's {where} port(s) "
            "{ports}{why}{who}: the server closes each connection before its clients "
            "do.", n=n, where=where, ports=ports_text(ports), why=why, who=who)
        + (Msg(" Traced: {traced}.", traced=traced) if traced else ""),
        {"time_wait_server_side": n, "time_wait_total": ctx.count(in_state(ctx, TCP_TIME_WAIT)),
         "ports": {str(p): k for p, k in ports}, "tcp_max_tw_buckets": cap,
         "service_ports_from": decided, **({"traced_closer": traced} if traced else {})},
        [
            Msg("Keep connections open: enable HTTP keep-alive / persistent connections (e.g. "
                "nginx keepalive_timeout and keepalive_requests, upstream keepalive) so that "
                "one connection serves many requests."),
            Msg("Where the protocol allows it, let the client close first: TIME_WAIT then lands "
                "on the clients, spread over many hosts."),
            TIME_WAIT_FIXED,
            Msg("tcp_tw_reuse only affects outgoing connect(); it does nothing for a server's "
                "inbound TIME_WAIT. Keep tcp_max_tw_buckets at its default: below it the kernel "
                "destroys TIME_WAIT sockets early (TCPTimeWaitOverflow)."),
            Msg("A TIME_WAIT socket costs a small minisock and no file descriptor: tens of "
                "thousands are harmless unless they approach tcp_max_tw_buckets."),
        ],
        procs,
        sockets=server,
    )


@rule("TIME_WAIT_CLIENT_SHORT", "This host opens a new connection per request",
      warning=2000, critical_range_share=0.5)
def time_wait_client(ctx: Context, th: dict[str, float]) -> Found | None:
    """TIME_WAIT towards a remote service port: this host's client opens short connections."""
    c = ctx.snap.columns
    _, client = server_side_tw(ctx)
    n = ctx.count(client)
    dests = top_destinations(ctx.snap, client)
    if n == 0:
        return None
    lo, hi = port_range(ctx)
    worst = dests[0][1]
    sev = level(n, th["warning"], float("inf"))
    if worst >= th["critical_range_share"] * (hi - lo + 1):
        sev = Severity.CRITICAL
    if sev is None:
        return None
    # Likely owners: processes that still hold live connections to the same services.
    live = (c["state"] != TCP_TIME_WAIT) & (c["state"] != TCP_LISTEN)
    same = live & among_ports(c["dport"], np.unique(c["dport"][client]))
    procs = ctx.processes(same)
    recs = []
    reuse = ctx.sysctl_int("net.ipv4.tcp_tw_reuse")
    if reuse is not None and reuse != 1:
        recs.append(sysctl_rec(
            "net.ipv4.tcp_tw_reuse", reuse, 1,
            Msg("lets connect() reuse a TIME_WAIT port to the same destination once it is older "
                "than tcp_tw_reuse_delay (timestamps required); the default 2 does so for "
                "loopback only. Outgoing connections only; safe on clients.")))
    who = Msg(" Likely owner: {owners}.", owners=names_of(procs)) if procs else ""
    traced = traced_opener(ctx, dests[0][0])
    if traced:
        who = Msg(" Traced: {traced}.", traced=traced)
    return Found(
        sev,
        Msg("{n:,} TIME_WAIT sockets towards remote services, most to {dest} ({worst:,}): "
            "this host opens and closes a connection per request.{who}", n=n,
            dest=dests[0][0], worst=worst, who=who),
        {"time_wait_client_side": n, "destinations": dict(dests),
         **({"traced_opener": traced} if traced else {}),
         "service_ports_from": service_ports(ctx)[1],
         "ip_local_port_range": port_range_evidence(ctx), "worst_destination_share": round(
             worst / (hi - lo + 1), 3)},
        [
            Msg("Reuse connections to {dest}: use the client library's connection pool / "
                "HTTP keep-alive instead of one connection per request.", dest=dests[0][0]),
            Msg("Each TIME_WAIT holds a local port for 60 s towards that ip:port; at "
                "{size:,} ephemeral ports that caps new connections per destination at about "
                "{per_second:,}/s.", size=hi - lo + 1, per_second=(hi - lo + 1) // 60),
            TIME_WAIT_FIXED,
            Msg("If the pool cannot be fixed soon: tcp_tw_reuse=1")
            + (Msg(" (below)") if recs else "") + Msg(" lets outgoing connects reuse old TIME_WAIT "
                                                 "ports safely when timestamps are on."),
        ],
        procs, recs,
        sockets=client,
    )


@rule("TW_BUCKET_OVERFLOW", "TIME_WAIT at the tcp_max_tw_buckets limit",
      needs=("sysctls",), warning_share=0.8, critical_share=0.95, horizon_warning=600,
      horizon_critical=120)
def tw_buckets(ctx: Context, th: dict[str, float]) -> Found | None:
    """TIME_WAIT (and orphaned FIN_WAIT2) minisockets near tcp_max_tw_buckets, or overflowing."""
    cap = ctx.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    if not cap:
        return None
    tcp = ctx.kernel.sockstat.get("TCP", {}) if ctx.kernel else {}
    if "tw" in tcp:
        tw = int(tcp["tw"])
    else:
        c = ctx.snap.columns
        tw = ctx.count((c["state"] == TCP_TIME_WAIT) | (c["timer"] == TIMER_TIME_WAIT))
    overflow = ctx.delta("TcpExt.TCPTimeWaitOverflow")
    share = tw / cap
    sev = level(share, th["warning_share"], th["critical_share"], escalate=overflow > 0)
    if sev is None:
        return None
    recs = []
    ehash = ctx.sysctl_int("net.ipv4.tcp_ehash_entries")
    default = abs(ehash) // 2 if ehash else None
    if default and cap < default:
        recs.append(sysctl_rec("net.ipv4.tcp_max_tw_buckets", cap, default,
                               Msg("restore the kernel default (half the established hash): "
                                   "past the cap sockets skip TIME_WAIT silently.")))
    return Found(
        sev,
        Msg("{tw:,} TIME_WAIT/FIN_WAIT2 minisockets against tcp_max_tw_buckets={cap:,} "
            "({share:.0%}); TCPTimeWaitOverflow during the sample: {overflow}.", tw=tw,
            cap=cap, share=share, overflow=ctx.said("TcpExt.TCPTimeWaitOverflow")),
        {"tw_minisockets": tw, "tcp_max_tw_buckets": cap, "share": round(share, 3),
         "TCPTimeWaitOverflow_delta": overflow},
        [
            Msg("Remove the cause of the TIME_WAIT flood first (keep-alive on the server, "
                "connection pooling on clients): see the TIME_WAIT findings."),
            Msg("Past the cap the kernel skips TIME_WAIT for new closes (no log line on modern "
                "kernels): delayed segments can then corrupt new connections on the same ports."),
            Msg("Never lower tcp_max_tw_buckets artificially; raise it back to the default if "
                "it was lowered."),
        ],
        [], recs,
        sockets=(ctx.snap.columns["state"] == TCP_TIME_WAIT)
        | (ctx.snap.columns["timer"] == TIMER_TIME_WAIT),
    )
