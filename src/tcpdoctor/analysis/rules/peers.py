"""Rules about whom connections go to: ports per destination, a dominant peer, idle pools."""

from __future__ import annotations

import numpy as np

from tcpdoctor.analysis.context import Context, level, names_of, sysctl_rec, top_destinations
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.rules.common import (
    WIDE_RANGE,
    port_range,
    port_range_evidence,
)
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import format_addr, is_v4
from tcpdoctor.model.columns import among_ports, distinct, factorize
from tcpdoctor.model.tcp import (
    TCP_ESTABLISHED,
    TCP_LISTEN,
    TCP_TIME_WAIT,
    TIMER_KEEPALIVE,
)


@rule("EPHEMERAL_PORT_EXHAUSTION", "Local ports to one destination running out",
      warning_share=0.5, critical_share=0.8, horizon_warning=600, horizon_critical=120)
def ephemeral(ctx: Context, th: dict[str, float]) -> Found | None:
    """Connections to one remote ip:port use a large share of ip_local_port_range."""
    c = ctx.snap.columns
    lo, hi = port_range(ctx)
    size = hi - lo + 1
    # A socket on a listening port is the server side: it holds no ephemeral port (and
    # connect() never picks a port a listener holds), even when the service port lies
    # inside the range.
    m = (c["state"] != TCP_LISTEN) & (c["sport"] >= lo) & (c["sport"] <= hi)
    m &= ~among_ports(c["sport"], ctx.snap.listening_ports())
    m = ctx.snap.addressed(m)
    if not m.any() or size <= 0:
        return None
    w = ctx.snap.weights
    values, inv, counts = factorize([c["laddr_lo"][m], c["raddr_hi"][m], c["raddr_lo"][m],
                                     c["dport"][m]], None if w is None else w[m])
    g = int(np.argmax(counts))
    worst = int(counts[g])
    share = worst / size
    sev = level(share, th["warning_share"], th["critical_share"])
    mask = np.zeros(len(ctx.snap), dtype=bool)
    mask[np.flatnonzero(m)[inv == g]] = True
    if sev is None:  # not full yet: a ramp that runs out soon is a finding all the same
        soon = _running_out(ctx, th)
        if soon is None:
            return None
        key, sev = soon
        rows = np.flatnonzero(m)
        pick = ((c["raddr_hi"][m] == key[0]) & (c["raddr_lo"][m] == key[1])
                & (c["dport"][m] == key[2]))
        g = int(inv[pick][0]) if pick.any() else g
        mask[:] = False
        mask[rows[inv == g]] = True
        worst = int(counts[g])
        share = worst / size
    dest = format_addr(values[1][g], values[2][g])
    dest = f"{dest}:{values[3][g]}" if "." in dest else f"[{dest}]:{values[3][g]}"
    tw = ctx.count(mask & (c["state"] == TCP_TIME_WAIT))
    procs = ctx.processes(mask)
    recs = []
    if size < WIDE_RANGE[1] - WIDE_RANGE[0] + 1:
        wide = f"{WIDE_RANGE[0]} {WIDE_RANGE[1]}"
        recs.append(sysctl_rec("net.ipv4.ip_local_port_range", f"{lo} {hi}", wide,
                               Msg("more ephemeral ports per destination (different parity "
                                   "ends, as the kernel prefers); list service ports inside the "
                                   "range in ip_local_reserved_ports first.")))
    return Found(
        sev,
        Msg("{worst:,} connections to {dest} use {share:.0%} of the {size:,} ephemeral ports "
            "({lo}-{hi}); {tw:,} of them in TIME_WAIT. New connects there fail with "
            "EADDRNOTAVAIL when none is left.", worst=worst, dest=dest, share=share, size=size,
            lo=lo, hi=hi, tw=tw),
        {"destination": dest, "connections": worst,
         "ip_local_port_range": port_range_evidence(ctx),
         "share": round(share, 3), "time_wait": tw},
        [
            Msg("Pool and reuse connections to {dest} (keep-alive) instead of opening new ones.",
                dest=dest),
            Msg("Spread the load over more destination IPs or ports (the limit is per local ip, "
                "remote ip and remote port); set IP_BIND_ADDRESS_NO_PORT when binding a source "
                "IP."),
            Msg("If many of them are TIME_WAIT, tcp_tw_reuse=1 lets connect() reuse them safely."),
        ],
        procs, recs,
        sockets=mask,
    )


def _running_out(ctx: Context, th: dict[str, float],
                 ) -> tuple[tuple[int, int, int], Severity] | None:
    """The destination whose ports a forecast sees running out within the horizon."""
    for f in ctx.forecasts():
        if f.resource == "ports" and f.seconds_left is not None and f.key is not None:
            sev = level(-f.seconds_left, -th["horizon_warning"], -th["horizon_critical"])
            if sev is not None:
                return f.key, sev
    return None


@rule("PEER_CONCENTRATION", "One remote holds an outsized share of connections",
      min_count=500, share=0.5, warning_count=10000, pathological_share=0.5)
def peer_concentration(ctx: Context, th: dict[str, float]) -> Found | None:
    """One remote IP holds a large share of all (non-loopback) connections. That is normal
    behind a load balancer or a proxy: context (info), unless that peer's sockets are
    mostly in a troubled state (not ESTABLISHED: half-open, closing, waiting), when it
    drives the pathology (warning from warning_count on)."""
    c = ctx.snap.columns
    loop = is_v4(c["raddr_hi"], c["raddr_lo"]) & (
        (c["raddr_lo"] >> np.uint64(24)) & np.uint64(0xFF) == np.uint64(127))
    loop |= (c["raddr_hi"] == 0) & (c["raddr_lo"] == 1)
    m = ctx.snap.addressed((c["state"] != TCP_LISTEN) & ~loop)
    total = ctx.count(m)
    if total < th["min_count"]:
        return None
    top = top_destinations(ctx.snap, m, limit=1, with_port=False)
    remote, count = top[0]
    share = count / total
    if count < th["min_count"] or share < th["share"]:
        return None
    peer = m & _same_peer(ctx, m)
    troubled = ctx.count(peer & (c["state"] != TCP_ESTABLISHED)) / max(ctx.count(peer), 1)
    drives = troubled >= th["pathological_share"]
    sev = Severity.WARNING if drives and count >= th["warning_count"] else Severity.INFO
    summary = (Msg("{remote} holds {count:,} of {total:,} connections ({share:.0%}); "
                   "{troubled:.0%} of them are not established.", remote=remote, count=count,
                   total=total, share=share, troubled=troubled) if drives else
               Msg("{remote} holds {count:,} of {total:,} connections ({share:.0%}), "
                   "{established:.0%} of them established: typical of a load balancer or "
                   "proxy in front of this host.", remote=remote, count=count, total=total,
                   share=share, established=1 - troubled))
    return Found(
        sev, summary,
        {"remote": remote, "connections": count, "total": total, "share": round(share, 3),
         "not_established_share": round(troubled, 3)},
        [
            Msg("Check whether {remote} is expected to dominate (a load balancer or proxy) or "
                "is an abusive client; rate-limit or block it if not.", remote=remote),
        ],
    )


def _same_peer(ctx: Context, m: np.ndarray) -> np.ndarray:
    """Rows of the remote address holding the most connections in m."""
    c = ctx.snap.columns
    keys, counts = distinct([c["raddr_hi"][m], c["raddr_lo"][m]],
                            None if ctx.snap.weights is None else ctx.snap.weights[m])
    best = int(np.argmax(counts))
    return m & (c["raddr_hi"] == keys[0][best]) & (c["raddr_lo"] == keys[1][best])


@rule("IDLE_ESTABLISHED", "ESTABLISHED connections idle for a long time", needs=("info",),
      idle_seconds=600, warning=100, critical=10000)
def idle(ctx: Context, th: dict[str, float]) -> Found | None:
    """ESTABLISHED with no data either way for idle_seconds (tcp_info lastrcv/lastsnd)."""
    c = ctx.snap.columns
    quiet = np.minimum(c["lastrcv"], c["lastsnd"])
    m = (c["state"] == TCP_ESTABLISHED) & c["has_info"] & (quiet >= th["idle_seconds"] * 1000)
    n = ctx.count(m)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    keepalive = ctx.count(m & (c["timer"] == TIMER_KEEPALIVE))
    dests = top_destinations(ctx.snap, m)
    procs = ctx.processes(m)
    longest = int(quiet[m].max()) // 1000
    return Found(
        sev,
        Msg("{n:,} ESTABLISHED connections carried no data for over {idle:.0f} s "
            "(longest {longest:,} s), mostly with {dest}", n=n,
            idle=th['idle_seconds'], longest=longest, dest=dests[0][0])
        + (Msg(", held by {owners}", owners=names_of(procs)) if procs else "")
        + Msg("; keepalive is on for {keepalive:,} of them.", keepalive=keepalive),
        {"idle": n, "idle_seconds": th["idle_seconds"], "longest_idle_seconds": longest,
         "established": ctx.count(c["state"] == TCP_ESTABLISHED),
         "keepalive_on": keepalive, "top_remotes": dict(dests)},
        [
            Msg("Give the pool or session an idle timeout / max lifetime so that connections no "
                "longer in use are closed (e.g. maxIdleTime, idle_timeout, evictor)."),
            Msg("To detect dead peers, enable SO_KEEPALIVE in the application; "
                "tcp_keepalive_time only affects sockets that enabled it."),
        ],
        procs,
        sockets=m,
    )
