"""Rules for connections stuck while opening: SYN floods, full accept queues, scans,
dead upstreams."""

from __future__ import annotations

import numpy as np

from tcpdoctor.analysis.context import (
    Context,
    level,
    names_of,
    sysctl_rec,
    top_destinations,
    top_networks,
)
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.rules.common import (
    in_state,
    owners_by_listen_port,
    ports_text,
)
from tcpdoctor.analysis.rules.traced import traced_connects
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg, joined
from tcpdoctor.model.tcp import (
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
)


@rule("SYN_FLOOD", "Many half-open connections (SYN_RECV)", warning=256, critical=2048)
def syn_flood(ctx: Context, th: dict[str, float]) -> Found | None:
    """SYN_RECV request sockets piling up, SYN queue drops or syncookies firing."""
    c = ctx.snap.columns
    sr = c["state"] == TCP_SYN_RECV
    n = ctx.count(sr)
    cookies = ctx.delta("TcpExt.SyncookiesSent")
    qdrop = ctx.delta("TcpExt.TCPReqQFullDrop")
    sev = level(n, th["warning"], th["critical"])
    if cookies or qdrop:
        sev = Severity.CRITICAL if n >= th["warning"] or qdrop else (sev or Severity.WARNING)
    if sev is None:
        return None
    ports = ctx.top("sport", sr)
    sources = top_destinations(ctx.snap, sr, with_port=False)
    nets = top_networks(ctx.snap, sr)
    distinct = int(np.unique(c["raddr_lo"][ctx.snap.addressed(sr)]).size)
    # Many sources from a few subnets: name the subnets (what a firewall rule blocks).
    few = sum(k for _, k in nets[:3]) >= 0.8 * n and distinct > 3 * len(nets[:3])
    origin = (Msg("{distinct:,} sources, {mostly}in ", distinct=distinct,
                  mostly=Msg("mostly ") if len(nets) > 3 else "")
              + ", ".join(f"{net} ({k:,})" for net, k in nets[:3]) if few
              else Msg("{distinct:,} sources", distinct=distinct))
    procs = owners_by_listen_port(ctx, sr)
    recs = []
    syncookies = ctx.sysctl_int("net.ipv4.tcp_syncookies")
    if syncookies == 0:
        recs.append(sysctl_rec("net.ipv4.tcp_syncookies", 0, 1,
                               Msg("cookies answer SYNs without queue space once the SYN queue "
                                   "overflows; the default is 1.")))
    synack = ctx.sysctl_int("net.ipv4.tcp_synack_retries")
    if synack is not None and synack > 3:
        recs.append(sysctl_rec("net.ipv4.tcp_synack_retries", synack, 2,
                               Msg("half-open entries then expire after ~7 s instead of ~63 s.")))
    return Found(
        sev,
        Msg("{n:,} half-open connections (SYN_RECV) on port(s) {ports} from "
            "{origin}; syncookies sent during the sample: {count}.", n=n,
            ports=ports_text(ports), origin=origin,
            count=_count(ctx.measured('TcpExt.SyncookiesSent'))),
        {"syn_recv": n, "ports": {str(p): k for p, k in ports}, "distinct_sources": distinct,
         "top_sources": dict(sources), "top_source_networks": dict(nets),
         "SyncookiesSent_delta": ctx.measured("TcpExt.SyncookiesSent"),
         "TCPReqQFullDrop_delta": ctx.measured("TcpExt.TCPReqQFullDrop"),
         "tcp_syncookies": syncookies if syncookies is not None else ctx.missing},
        [
            Msg("If the sources are few, block them upstream (firewall, provider DDoS "
                "protection); if they are many and spoofed, keep syncookies on and filter "
                "upstream."),
            Msg("If this is legitimate load, raise the listener's backlog in the application "
                "(listen(fd, N)) and net.core.somaxconn: cookies under real load mean the "
                "backlog is too small. tcp_max_syn_backlog only matters with syncookies off."),
        ],
        procs, recs,
        sockets=sr,
    )


@rule("ACCEPT_QUEUE_OVERFLOW", "A listener's accept queue is full")
def accept_queue(ctx: Context, th: dict[str, float]) -> Found | None:
    """LISTEN sockets whose accept queue is full, or ListenOverflows rising."""
    c = ctx.snap.columns
    lst = (c["state"] == TCP_LISTEN) & (c["wqueue"] > 0)
    full = lst & (c["rqueue"] >= c["wqueue"])
    overflows = ctx.delta("TcpExt.ListenOverflows")
    if not full.any() and overflows <= 0:
        return None
    measured = ctx.measured("TcpExt.ListenOverflows")
    idx = np.flatnonzero(full)[:5]
    listeners = [{"port": int(c["sport"][i]), "queue": int(c["rqueue"][i]),
                  "limit": int(c["wqueue"][i])} for i in idx]
    procs = ctx.processes(full)
    somaxconn = ctx.sysctl_int("net.core.somaxconn")
    recs = []
    if somaxconn and any(li["limit"] >= somaxconn for li in listeners):
        recs.append(sysctl_rec("net.core.somaxconn", somaxconn, max(4096, somaxconn * 2),
                               Msg("the listen() backlog is capped at somaxconn; raise both the "
                                   "application's backlog and this cap.")))
    where = (joined([Msg("port {port} ({queue}/{limit})", port=li["port"],
                         queue=li["queue"], limit=li["limit"]) for li in listeners])
             if listeners else "")
    owner = Msg(" owned by {owners}", owners=names_of(procs)) if procs else ""
    sev, summary = _accept_verdict(bool(full.any()), measured, where, owner)
    return Found(
        sev, summary,
        {"full_listeners": listeners,
         "ListenOverflows_delta": ctx.measured("TcpExt.ListenOverflows"),
         "ListenDrops_delta": ctx.measured("TcpExt.ListenDrops"),
         "somaxconn": somaxconn if somaxconn is not None else ctx.missing},
        [
            Msg("Make {name} accept faster: more worker threads/processes, a non-blocking "
                "accept loop, no slow work before accept().",
                name=procs[0]["name"] if procs else Msg("the application")),
            Msg("Then raise the listen() backlog in the application (the queue limit shown) and "
                "net.core.somaxconn, which caps it."),
            Msg("Keep tcp_abort_on_overflow=0: with 1, clients get resets instead of a retry."),
        ],
        procs, recs,
        sockets=full,
    )


def _accept_verdict(full: bool, overflows: int | str, where: str, owner: str,
                    ) -> tuple[Severity, str]:
    """The severity and the sentence, from the same figures: drops seen (critical), a full
    queue that has not dropped yet or whose drops were not measured, overflows between
    snapshots with no queue full now (warning)."""
    if full and isinstance(overflows, int) and overflows > 0:
        return Severity.CRITICAL, Msg(
            "Accept queue full on {where}{owner}; {count:,} connections overflowed it during "
            "the sample: new connections are being dropped because the application accepts "
            "too slowly.", where=where, owner=owner, count=overflows)
    if full and isinstance(overflows, int):
        return Severity.WARNING, Msg(
            "Accept queue full on {where}{owner}, with no overflow during the sample yet: the "
            "next connections will be dropped unless the application accepts faster.",
            where=where, owner=owner)
    if full:
        return Severity.CRITICAL, Msg(
            "Accept queue full on {where}{owner} (overflows {why}): connections arriving now "
            "are dropped because the application accepts too slowly.",
            where=where, owner=owner, why=overflows)
    return Severity.WARNING, Msg(
        "ListenOverflows: {count} connection(s) overflowed an accept queue during the sample, "
        "though no queue is full at the snapshot: the application falls behind in bursts.",
        count=_count(overflows))


def _count(value: int | str) -> str:
    return f"{value:,}" if isinstance(value, int) else value


def _syn_sent(ctx: Context) -> tuple[np.ndarray, int, int]:
    ss = in_state(ctx, TCP_SYN_SENT)
    distinct = int(np.unique(ctx.snap.columns["raddr_lo"][ctx.snap.addressed(ss)]).size)
    return ss, ctx.count(ss), distinct


@rule("OUTBOUND_SCAN", "SYN_SENT fanning out to many hosts (scanner or worm)",
      min_syn_sent=20, distinct=50)
def outbound_scan(ctx: Context, th: dict[str, float]) -> Found | None:
    """SYN_SENT to many distinct remote IPs: a scanner or a worm on this host."""
    ss, n, distinct = _syn_sent(ctx)
    if n < th["min_syn_sent"] or distinct < th["distinct"]:
        return None
    ports = ctx.top("dport", ss)
    procs = ctx.processes(ss)
    who = names_of(procs) if procs else Msg("an unknown process (run as root to see it)")
    return Found(
        Severity.CRITICAL,
        Msg("{n:,} outgoing connection attempts (SYN_SENT) to {distinct:,} distinct hosts on "
            "port(s) {ports}, from {who}: this looks like a network scan.", n=n,
            distinct=distinct, ports=ports_text(ports), who=who),
        {"syn_sent": n, "distinct_remote_ips": distinct,
         "remote_ports": {str(p): k for p, k in ports}},
        [
            Msg("Identify {who}: if it is not a known scanner or crawler, treat the host as "
                "compromised (isolate it, keep evidence, then clean or rebuild).", who=who),
            Msg("Block unexpected egress on those ports at the firewall."),
            Msg("No sysctl fixes this; the sockets disappear once the process stops."),
        ],
        procs,
        sockets=ss,
    )


@rule("UPSTREAM_UNREACHABLE", "Connections to a backend never complete",
      warning=20, critical=500, distinct=50)
def upstream(ctx: Context, th: dict[str, float]) -> Found | None:
    """SYN_SENT piling up towards few destinations: the backend is down or filtered."""
    ss, n, distinct = _syn_sent(ctx)
    sev = level(n, th["warning"], th["critical"])
    if sev is None or distinct >= th["distinct"]:
        return None
    dests = top_destinations(ctx.snap, ss)
    procs = ctx.processes(ss)
    traced = traced_connects(ctx, dests[0][0])
    return Found(
        sev,
        Msg("{n:,} connection attempts stuck in SYN_SENT towards {dest}", n=n,
            dest=dests[0][0])
        + (Msg(" and {more} more", more=len(dests) - 1) if len(dests) > 1 else "")
        + (Msg(", from {owners}", owners=names_of(procs)) if procs else "")
        + Msg(": the destination does not answer (down, or SYNs filtered).")
        + (Msg(" Traced: {traced}.", traced=traced) if traced else ""),
        {"syn_sent": n, "destinations": dict(dests), "distinct_remote_ips": distinct,
         "tcp_syn_retries": ctx.sysctl_int("net.ipv4.tcp_syn_retries"),
         **({"traced_connects": traced} if traced else {})},
        [
            Msg("Check that {dest} is up and reachable from here (routing, firewall, "
                "security groups).", dest=dests[0][0]),
            Msg("Give the client a connect timeout and back-off/circuit breaking, so requests "
                "fail fast instead of piling up for the kernel's ~127 s of SYN retries."),
        ],
        procs,
        sockets=ss,
    )
