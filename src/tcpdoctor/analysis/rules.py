"""One rule per finding id of SPEC.md's catalogue. Kernel facts follow ../shared/KERNEL.md.

Each rule returns a Finding (or None) with the figures that triggered it, the owners where
known, and actions that start with the application-level fix before any sysctl.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.findings import (
    Context,
    Finding,
    level,
    names_of,
    rule,
    sysctl_rec,
    top_destinations,
)
from tcpdoctor.kernel import (
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
    TIMER_KEEPALIVE,
    TIMER_RETRANSMIT,
    TIMER_TIME_WAIT,
)
from tcpdoctor.model import factorize, format_addr, is_v4

TIME_WAIT_FIXED = ("TIME_WAIT lasts a fixed 60 s on Linux (TCP_TIMEWAIT_LEN): tcp_fin_timeout "
                   "does not shorten it, and tcp_tw_recycle was removed in Linux 4.12 (it broke "
                   "clients behind NAT) — do not use either for this.")
DEFAULT_PORT_RANGE = (32768, 60999)
WIDE_RANGE = (16384, 65535)  # even/odd ends, as the kernel prefers; leaves 1024-16383 to services


def _state(ctx: Context, state: int) -> np.ndarray:
    return ctx.snap.columns["state"] == state


def _ports_text(ports: list[tuple[Any, int]]) -> str:
    return ", ".join(str(p) for p, _ in ports[:3])


def _owners_by_listen_port(ctx: Context, mask: np.ndarray) -> list[dict[str, Any]]:
    """TIME_WAIT and request sockets have no owner: attribute them to whoever listens on
    their local port, counting the matched sockets on that process's ports."""
    c = ctx.snap.columns
    ports = ctx.top("sport", mask, limit=20)
    per_port = dict(ports)
    listen = (c["state"] == TCP_LISTEN) & np.isin(c["sport"], list(per_port))
    procs = ctx.processes(listen)
    for p in procs:
        mine = listen & (c["pid"] == p["pid"])
        p["count"] = sum(per_port.get(int(port), 0) for port in np.unique(c["sport"][mine]))
    return sorted(procs, key=lambda p: -p["count"])


def _server_side_tw(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    c = ctx.snap.columns
    tw = c["state"] == TCP_TIME_WAIT
    server = tw & np.isin(c["sport"], ctx.snap.listening_ports())
    return server, tw & ~server


@rule("TIME_WAIT_SERVER_CLOSE", "The server closes many short connections first",
      warning=2000, critical_bucket_share=0.5)
def time_wait_server(ctx: Context, th: dict[str, float]) -> Finding | None:
    """TIME_WAIT whose local port is a listening port: this host closed its side first."""
    server, _ = _server_side_tw(ctx)
    n = ctx.count(server)
    cap = ctx.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    crit = th["critical_bucket_share"] * cap if cap else float("inf")
    sev = level(n, th["warning"], max(crit, th["warning"]))
    if sev is None:
        return None
    ports = ctx.top("sport", server)
    procs = _owners_by_listen_port(ctx, server)
    who = f" ({names_of(procs)})" if procs else ""
    return Finding(
        "TIME_WAIT_SERVER_CLOSE", sev, "The server closes many short connections first",
        f"{n:,} TIME_WAIT sockets sit on this host's listening port(s) {_ports_text(ports)}"
        f"{who}: the server closes each connection before its clients do.",
        {"time_wait_server_side": n, "time_wait_total": ctx.count(_state(ctx, TCP_TIME_WAIT)),
         "ports": {str(p): k for p, k in ports}, "tcp_max_tw_buckets": cap},
        [
            "Keep connections open: enable HTTP keep-alive / persistent connections (e.g. nginx "
            "keepalive_timeout and keepalive_requests, upstream keepalive) so that one "
            "connection serves many requests.",
            "Where the protocol allows it, let the client close first: TIME_WAIT then lands on "
            "the clients, spread over many hosts.",
            TIME_WAIT_FIXED,
            "tcp_tw_reuse only affects outgoing connect(); it does nothing for a server's "
            "inbound TIME_WAIT. Keep tcp_max_tw_buckets at its default: below it the kernel "
            "destroys TIME_WAIT sockets early (TCPTimeWaitOverflow).",
            "A TIME_WAIT socket costs a small minisock and no file descriptor: tens of "
            "thousands are harmless unless they approach tcp_max_tw_buckets.",
        ],
        procs,
    )


@rule("TIME_WAIT_CLIENT_SHORT", "This host opens a new connection per request",
      warning=2000, critical_range_share=0.5)
def time_wait_client(ctx: Context, th: dict[str, float]) -> Finding | None:
    """TIME_WAIT towards a remote service port: this host's client opens short connections."""
    c = ctx.snap.columns
    _, client = _server_side_tw(ctx)
    n = ctx.count(client)
    dests = top_destinations(ctx.snap, client)
    if n == 0:
        return None
    lo, hi = _port_range(ctx)
    worst = dests[0][1]
    sev = level(n, th["warning"], float("inf"))
    if worst >= th["critical_range_share"] * (hi - lo + 1):
        sev = "critical"
    if sev is None:
        return None
    # Likely owners: processes that still hold live connections to the same services.
    live = (c["state"] != TCP_TIME_WAIT) & (c["state"] != TCP_LISTEN)
    same = live & np.isin(c["dport"], np.unique(c["dport"][client]))
    procs = ctx.processes(same)
    recs = []
    reuse = ctx.sysctl_int("net.ipv4.tcp_tw_reuse")
    if reuse is not None and reuse != 1:
        recs.append(sysctl_rec(
            "net.ipv4.tcp_tw_reuse", reuse, 1,
            "lets connect() reuse a TIME_WAIT port to the same destination once it is older "
            "than tcp_tw_reuse_delay (timestamps required); the default 2 does so for "
            "loopback only. Outgoing connections only; safe on clients."))
    who = f" Likely owner: {names_of(procs)}." if procs else ""
    return Finding(
        "TIME_WAIT_CLIENT_SHORT", sev, "This host opens a new connection per request",
        f"{n:,} TIME_WAIT sockets towards remote services, most to {dests[0][0]} "
        f"({worst:,}): this host opens and closes a connection per request.{who}",
        {"time_wait_client_side": n, "destinations": dict(dests),
         "ip_local_port_range": [lo, hi], "worst_destination_share": round(
             worst / (hi - lo + 1), 3)},
        [
            f"Reuse connections to {dests[0][0]}: use the client library's connection pool / "
            "HTTP keep-alive instead of one connection per request.",
            "Each TIME_WAIT holds a local port for 60 s towards that ip:port; at "
            f"{hi - lo + 1:,} ephemeral ports that caps new connections per destination at "
            f"about {(hi - lo + 1) // 60:,}/s.",
            TIME_WAIT_FIXED,
            "If the pool cannot be fixed soon: tcp_tw_reuse=1"
            + (" (below)" if recs else "") + " lets outgoing connects reuse old TIME_WAIT "
            "ports safely when timestamps are on.",
        ],
        procs, recs,
    )


def _port_range(ctx: Context) -> tuple[int, int]:
    rng = ctx.kernel.sysctl_ints("net.ipv4.ip_local_port_range") if ctx.kernel else None
    if rng and len(rng) == 2 and 0 < rng[0] <= rng[1]:
        return rng[0], rng[1]
    return DEFAULT_PORT_RANGE  # absent or nonsensical (the kernel would reject it)


@rule("TW_BUCKET_OVERFLOW", "TIME_WAIT at the tcp_max_tw_buckets limit",
      needs=("sysctls",), warning_share=0.8, critical_share=0.95)
def tw_buckets(ctx: Context, th: dict[str, float]) -> Finding | None:
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
    sev = level(share, th["warning_share"], th["critical_share"])
    if overflow > 0:
        sev = "critical"
    if sev is None:
        return None
    recs = []
    ehash = ctx.sysctl_int("net.ipv4.tcp_ehash_entries")
    default = abs(ehash) // 2 if ehash else None
    if default and cap < default:
        recs.append(sysctl_rec("net.ipv4.tcp_max_tw_buckets", cap, default,
                               "restore the kernel default (half the established hash): past "
                               "the cap sockets skip TIME_WAIT silently."))
    return Finding(
        "TW_BUCKET_OVERFLOW", sev, "TIME_WAIT at the tcp_max_tw_buckets limit",
        f"{tw:,} TIME_WAIT/FIN_WAIT2 minisockets against tcp_max_tw_buckets={cap:,} "
        f"({share:.0%}); TCPTimeWaitOverflow rose by {overflow:,} during the sample.",
        {"tw_minisockets": tw, "tcp_max_tw_buckets": cap, "share": round(share, 3),
         "TCPTimeWaitOverflow_delta": overflow},
        [
            "Remove the cause of the TIME_WAIT flood first (keep-alive on the server, "
            "connection pooling on clients): see the TIME_WAIT findings.",
            "Past the cap the kernel skips TIME_WAIT for new closes (no log line on modern "
            "kernels): delayed segments can then corrupt new connections on the same ports.",
            "Never lower tcp_max_tw_buckets artificially; raise it back to the default if it "
            "was lowered.",
        ],
        [], recs,
    )


@rule("CLOSE_WAIT_LEAK", "A process does not close sockets its peers have closed",
      warning=100, critical=1000)
def close_wait(ctx: Context, th: dict[str, float]) -> Finding | None:
    """CLOSE_WAIT: the peer closed; the kernel waits for the application to close() too."""
    cw = _state(ctx, TCP_CLOSE_WAIT)
    n = ctx.count(cw)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    ports = ctx.top("sport", cw)
    # The peer's FIN occupies one sequence number: Recv-Q 1 in CLOSE_WAIT means no data.
    unread = ctx.count(cw & (ctx.snap.columns["rqueue"] > 1))
    procs = ctx.processes(cw)
    owner = (f"{procs[0]['name']} (pid {procs[0]['pid']}) holds {procs[0]['count']:,} of them"
             if procs else "their owner is unknown (run as root to see it)")
    return Finding(
        "CLOSE_WAIT_LEAK", sev, "A process does not close sockets its peers have closed",
        f"{n:,} sockets in CLOSE_WAIT on local port(s) {_ports_text(ports)}; {owner}: "
        "the peers closed these connections and the application never called close().",
        {"close_wait": n, "local_ports": {str(p): k for p, k in ports},
         "with_unread_data": unread},
        [
            (f"Fix {procs[0]['name']}: " if procs else "Fix the owning application: ")
            + "when read() returns 0 (EOF) or an error, close the socket; check error paths, "
            "exceptions and connection pools that keep dead connections.",
            "No sysctl frees CLOSE_WAIT: the kernel waits for the application, forever. "
            "Restarting the process frees them now, but the leak returns.",
            "Each CLOSE_WAIT holds a file descriptor: the process will hit its open-files "
            "limit (EMFILE) if the leak continues.",
        ],
        procs,
    )


@rule("FIN_WAIT2_BUILDUP", "This side closed but peers never finish their close",
      warning=500, critical=5000)
def fin_wait2(ctx: Context, th: dict[str, float]) -> Finding | None:
    """FIN_WAIT2: we sent FIN, the peer ACKed it but never sent its own FIN."""
    c = ctx.snap.columns
    fw = c["state"] == TCP_FIN_WAIT2
    n = ctx.count(fw)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    orphaned = ctx.count(fw & ((c["timer"] == TIMER_TIME_WAIT) | (c["inode"] == 0)))
    fin_timeout = ctx.sysctl_int("net.ipv4.tcp_fin_timeout")
    recs = []
    if fin_timeout is not None and fin_timeout > 30 and orphaned > n // 2:
        recs.append(sysctl_rec("net.ipv4.tcp_fin_timeout", fin_timeout, 30,
                               "bounds how long orphaned FIN_WAIT2 sockets wait for the peer's "
                               "FIN (it does not change TIME_WAIT)."))
    dests = top_destinations(ctx.snap, fw, with_port=False)
    return Finding(
        "FIN_WAIT2_BUILDUP", sev, "This side closed but peers never finish their close",
        f"{n:,} sockets in FIN_WAIT2 ({orphaned:,} orphaned), most with {dests[0][0]}: "
        "peers acknowledged our close but never closed their side.",
        {"fin_wait2": n, "orphaned": orphaned, "held_by_processes": n - orphaned,
         "top_remotes": dict(dests), "tcp_fin_timeout": fin_timeout},
        [
            "Find out why the peers (top remotes above) keep their half open: a client that "
            "never closes, or a half-close (shutdown) protocol waiting on them.",
            "Sockets still held by a process stay in FIN_WAIT2 until it closes them; only "
            "orphaned ones time out after tcp_fin_timeout.",
        ],
        ctx.processes(fw), recs,
    )


@rule("LAST_ACK_BUILDUP", "Final ACKs are not arriving", warning=500, critical=5000)
def last_ack(ctx: Context, th: dict[str, float]) -> Finding | None:
    """LAST_ACK: we answered the peer's FIN with ours; the final ACK never comes back."""
    c = ctx.snap.columns
    la = c["state"] == TCP_LAST_ACK
    n = ctx.count(la)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    retrans = ctx.count(la & (c["timer"] == TIMER_RETRANSMIT))
    dests = top_destinations(ctx.snap, la, with_port=False)
    return Finding(
        "LAST_ACK_BUILDUP", sev, "Final ACKs are not arriving",
        f"{n:,} sockets in LAST_ACK ({retrans:,} retransmitting their FIN), most with "
        f"{dests[0][0]}: peers vanished or a firewall/path drops the last ACK.",
        {"last_ack": n, "retransmitting": retrans, "top_remotes": dict(dests)},
        [
            "Check the path to the top remotes: a stateful firewall or load balancer that "
            "forgets connections early drops the final ACK.",
            "Peers that disappear (crashed clients, NAT timeouts) leave LAST_ACK until the FIN "
            "retransmissions give up; tcp_orphan_retries bounds that for orphaned sockets.",
        ],
        ctx.processes(la),
    )


@rule("SYN_FLOOD", "Many half-open connections (SYN_RECV)", warning=256, critical=2048)
def syn_flood(ctx: Context, th: dict[str, float]) -> Finding | None:
    """SYN_RECV request sockets piling up, SYN queue drops or syncookies firing."""
    c = ctx.snap.columns
    sr = c["state"] == TCP_SYN_RECV
    n = ctx.count(sr)
    cookies = ctx.delta("TcpExt.SyncookiesSent")
    qdrop = ctx.delta("TcpExt.TCPReqQFullDrop")
    sev = level(n, th["warning"], th["critical"])
    if cookies or qdrop:
        sev = "critical" if n >= th["warning"] or qdrop else (sev or "warning")
    if sev is None:
        return None
    ports = ctx.top("sport", sr)
    sources = top_destinations(ctx.snap, sr, with_port=False)
    distinct = int(np.unique(c["raddr_lo"][sr]).size)
    procs = _owners_by_listen_port(ctx, sr)
    recs = []
    syncookies = ctx.sysctl_int("net.ipv4.tcp_syncookies")
    if syncookies == 0:
        recs.append(sysctl_rec("net.ipv4.tcp_syncookies", 0, 1,
                               "cookies answer SYNs without queue space once the SYN queue "
                               "overflows; the default is 1."))
    synack = ctx.sysctl_int("net.ipv4.tcp_synack_retries")
    if synack is not None and synack > 3:
        recs.append(sysctl_rec("net.ipv4.tcp_synack_retries", synack, 2,
                               "half-open entries then expire after ~7 s instead of ~63 s."))
    return Finding(
        "SYN_FLOOD", sev, "Many half-open connections (SYN_RECV)",
        f"{n:,} half-open connections (SYN_RECV) on port(s) {_ports_text(ports)} from "
        f"{distinct:,} sources; syncookies sent during the sample: {cookies:,}.",
        {"syn_recv": n, "ports": {str(p): k for p, k in ports}, "distinct_sources": distinct,
         "top_sources": dict(sources), "SyncookiesSent_delta": cookies,
         "TCPReqQFullDrop_delta": qdrop, "tcp_syncookies": syncookies},
        [
            "If the sources are few, block them upstream (firewall, provider DDoS "
            "protection); if they are many and spoofed, keep syncookies on and filter upstream.",
            "If this is legitimate load, raise the listener's backlog in the application "
            "(listen(fd, N)) and net.core.somaxconn: cookies under real load mean the backlog "
            "is too small. tcp_max_syn_backlog only matters with syncookies off.",
        ],
        procs, recs,
    )


@rule("ACCEPT_QUEUE_OVERFLOW", "A listener's accept queue is full")
def accept_queue(ctx: Context, th: dict[str, float]) -> Finding | None:
    """LISTEN sockets whose accept queue is full, or ListenOverflows rising."""
    c = ctx.snap.columns
    lst = (c["state"] == TCP_LISTEN) & (c["wqueue"] > 0)
    full = lst & (c["rqueue"] >= c["wqueue"])
    overflows = ctx.delta("TcpExt.ListenOverflows")
    drops = ctx.delta("TcpExt.ListenDrops")
    if not full.any() and overflows <= 0:
        return None
    sev = "critical" if full.any() else "warning"
    idx = np.flatnonzero(full)[:5]
    listeners = [{"port": int(c["sport"][i]), "queue": int(c["rqueue"][i]),
                  "limit": int(c["wqueue"][i])} for i in idx]
    procs = ctx.processes(full)
    somaxconn = ctx.sysctl_int("net.core.somaxconn")
    recs = []
    if somaxconn and any(li["limit"] >= somaxconn for li in listeners):
        recs.append(sysctl_rec("net.core.somaxconn", somaxconn, max(4096, somaxconn * 2),
                               "the listen() backlog is capped at somaxconn; raise both the "
                               "application's backlog and this cap."))
    where = (", ".join(f"port {li['port']} ({li['queue']}/{li['limit']})" for li in listeners)
             if listeners else "no listener full at the snapshot")
    owner = f" owned by {names_of(procs)}" if procs else ""
    return Finding(
        "ACCEPT_QUEUE_OVERFLOW", sev, "A listener's accept queue is full",
        f"Accept queue full on {where}{owner}; ListenOverflows rose by {overflows:,} during "
        "the sample: new connections are being dropped because the application accepts too "
        "slowly.",
        {"full_listeners": listeners, "ListenOverflows_delta": overflows,
         "ListenDrops_delta": drops, "somaxconn": somaxconn},
        [
            (f"Make {procs[0]['name']} accept faster: " if procs else "Make the application "
             "accept faster: ") + "more worker threads/processes, a non-blocking accept loop, "
            "no slow work before accept().",
            "Then raise the listen() backlog in the application (the queue limit shown) and "
            "net.core.somaxconn, which caps it.",
            "Keep tcp_abort_on_overflow=0: with 1, clients get resets instead of a retry.",
        ],
        procs, recs,
    )


def _syn_sent(ctx: Context) -> tuple[np.ndarray, int, int]:
    ss = _state(ctx, TCP_SYN_SENT)
    distinct = int(np.unique(ctx.snap.columns["raddr_lo"][ss]).size)
    return ss, ctx.count(ss), distinct


@rule("OUTBOUND_SCAN", "SYN_SENT fanning out to many hosts (scanner or worm)",
      min_syn_sent=20, distinct=50)
def outbound_scan(ctx: Context, th: dict[str, float]) -> Finding | None:
    """SYN_SENT to many distinct remote IPs: a scanner or a worm on this host."""
    ss, n, distinct = _syn_sent(ctx)
    if n < th["min_syn_sent"] or distinct < th["distinct"]:
        return None
    ports = ctx.top("dport", ss)
    procs = ctx.processes(ss)
    who = names_of(procs) if procs else "an unknown process (run as root to see it)"
    return Finding(
        "OUTBOUND_SCAN", "critical", "SYN_SENT fanning out to many hosts (scanner or worm)",
        f"{n:,} outgoing connection attempts (SYN_SENT) to {distinct:,} distinct hosts on "
        f"port(s) {_ports_text(ports)}, from {who}: this looks like a network scan.",
        {"syn_sent": n, "distinct_remote_ips": distinct,
         "remote_ports": {str(p): k for p, k in ports}},
        [
            f"Identify {who}: if it is not a known scanner or crawler, treat the host as "
            "compromised (isolate it, keep evidence, then clean or rebuild).",
            "Block unexpected egress on those ports at the firewall.",
            "No sysctl fixes this; the sockets disappear once the process stops.",
        ],
        procs,
    )


@rule("UPSTREAM_UNREACHABLE", "Connections to a backend never complete",
      warning=20, critical=500, distinct=50)
def upstream(ctx: Context, th: dict[str, float]) -> Finding | None:
    """SYN_SENT piling up towards few destinations: the backend is down or filtered."""
    ss, n, distinct = _syn_sent(ctx)
    sev = level(n, th["warning"], th["critical"])
    if sev is None or distinct >= th["distinct"]:
        return None
    dests = top_destinations(ctx.snap, ss)
    procs = ctx.processes(ss)
    return Finding(
        "UPSTREAM_UNREACHABLE", sev, "Connections to a backend never complete",
        f"{n:,} connection attempts stuck in SYN_SENT towards {dests[0][0]}"
        + (f" and {len(dests) - 1} more" if len(dests) > 1 else "")
        + (f", from {names_of(procs)}" if procs else "")
        + ": the destination does not answer (down, or SYNs filtered).",
        {"syn_sent": n, "destinations": dict(dests), "distinct_remote_ips": distinct,
         "tcp_syn_retries": ctx.sysctl_int("net.ipv4.tcp_syn_retries")},
        [
            f"Check that {dests[0][0]} is up and reachable from here (routing, firewall, "
            "security groups).",
            "Give the client a connect timeout and back-off/circuit breaking, so requests fail "
            "fast instead of piling up for the kernel's ~127 s of SYN retries.",
        ],
        procs,
    )


@rule("EPHEMERAL_PORT_EXHAUSTION", "Local ports to one destination running out",
      warning_share=0.5, critical_share=0.8)
def ephemeral(ctx: Context, th: dict[str, float]) -> Finding | None:
    """Connections to one remote ip:port use a large share of ip_local_port_range."""
    c = ctx.snap.columns
    lo, hi = _port_range(ctx)
    size = hi - lo + 1
    # A socket on a listening port is the server side: it holds no ephemeral port (and
    # connect() never picks a port a listener holds), even when the service port lies
    # inside the range.
    m = (c["state"] != TCP_LISTEN) & (c["sport"] >= lo) & (c["sport"] <= hi)
    m &= ~np.isin(c["sport"], ctx.snap.listening_ports())
    if not m.any() or size <= 0:
        return None
    w = ctx.snap.weights
    values, inv, counts = factorize([c["laddr_lo"][m], c["raddr_hi"][m], c["raddr_lo"][m],
                                     c["dport"][m]], None if w is None else w[m])
    g = int(np.argmax(counts))
    worst = int(counts[g])
    share = worst / size
    sev = level(share, th["warning_share"], th["critical_share"])
    if sev is None:
        return None
    mask = np.zeros(len(ctx.snap), dtype=bool)
    mask[np.flatnonzero(m)[inv == g]] = True
    dest = format_addr(values[1][g], values[2][g])
    dest = f"{dest}:{values[3][g]}" if "." in dest else f"[{dest}]:{values[3][g]}"
    tw = ctx.count(mask & (c["state"] == TCP_TIME_WAIT))
    procs = ctx.processes(mask)
    recs = []
    if size < WIDE_RANGE[1] - WIDE_RANGE[0] + 1:
        wide = f"{WIDE_RANGE[0]} {WIDE_RANGE[1]}"
        recs.append(sysctl_rec("net.ipv4.ip_local_port_range", f"{lo} {hi}", wide,
                               "more ephemeral ports per destination (different parity ends, "
                               "as the kernel prefers); list service ports inside the range "
                               "in ip_local_reserved_ports first."))
    return Finding(
        "EPHEMERAL_PORT_EXHAUSTION", sev, "Local ports to one destination running out",
        f"{worst:,} connections to {dest} use {share:.0%} of the {size:,} ephemeral ports "
        f"({lo}-{hi}); {tw:,} of them in TIME_WAIT. New connects there fail with "
        "EADDRNOTAVAIL when none is left.",
        {"destination": dest, "connections": worst, "ip_local_port_range": [lo, hi],
         "share": round(share, 3), "time_wait": tw},
        [
            f"Pool and reuse connections to {dest} (keep-alive) instead of opening new ones.",
            "Spread the load over more destination IPs or ports (the limit is per local ip, "
            "remote ip and remote port); set IP_BIND_ADDRESS_NO_PORT when binding a source IP.",
            "If many of them are TIME_WAIT, tcp_tw_reuse=1 lets connect() reuse them safely.",
        ],
        procs, recs,
    )


@rule("PEER_CONCENTRATION", "One remote holds an outsized share of connections",
      min_count=500, share=0.5, warning_count=10000)
def peer_concentration(ctx: Context, th: dict[str, float]) -> Finding | None:
    """One remote IP holds a large share of all (non-loopback) connections."""
    c = ctx.snap.columns
    loop = is_v4(c["raddr_hi"], c["raddr_lo"]) & (
        (c["raddr_lo"] >> np.uint64(24)) & np.uint64(0xFF) == np.uint64(127))
    loop |= (c["raddr_hi"] == 0) & (c["raddr_lo"] == 1)
    m = (c["state"] != TCP_LISTEN) & ~loop
    total = ctx.count(m)
    if total < th["min_count"]:
        return None
    top = top_destinations(ctx.snap, m, limit=1, with_port=False)
    remote, count = top[0]
    share = count / total
    if count < th["min_count"] or share < th["share"]:
        return None
    sev = "warning" if count >= th["warning_count"] else "info"
    return Finding(
        "PEER_CONCENTRATION", sev, "One remote holds an outsized share of connections",
        f"{remote} holds {count:,} of {total:,} connections ({share:.0%}).",
        {"remote": remote, "connections": count, "total": total, "share": round(share, 3)},
        [
            f"Check whether {remote} is expected to dominate (a load balancer or proxy) or is "
            "an abusive client; rate-limit or block it if not.",
        ],
    )


@rule("IDLE_ESTABLISHED", "ESTABLISHED connections idle for a long time", needs=("info",),
      idle_seconds=600, warning=100, critical=10000)
def idle(ctx: Context, th: dict[str, float]) -> Finding | None:
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
    return Finding(
        "IDLE_ESTABLISHED", sev, "ESTABLISHED connections idle for a long time",
        f"{n:,} ESTABLISHED connections carried no data for over {th['idle_seconds']:.0f} s "
        f"(longest {longest:,} s), mostly with {dests[0][0]}"
        + (f", held by {names_of(procs)}" if procs else "")
        + f"; keepalive is on for {keepalive:,} of them.",
        {"idle": n, "idle_seconds": th["idle_seconds"], "longest_idle_seconds": longest,
         "established": ctx.count(c["state"] == TCP_ESTABLISHED),
         "keepalive_on": keepalive, "top_remotes": dict(dests)},
        [
            "Give the pool or session an idle timeout / max lifetime so that connections no "
            "longer in use are closed (e.g. maxIdleTime, idle_timeout, evictor).",
            "To detect dead peers, enable SO_KEEPALIVE in the application; "
            "tcp_keepalive_time only affects sockets that enabled it.",
        ],
        procs,
    )


@rule("ORPHAN_PRESSURE", "Orphan sockets near tcp_max_orphans", needs=("kernel",),
      warning_share=0.25, critical_share=0.8)
def orphans(ctx: Context, th: dict[str, float]) -> Finding | None:
    """Orphans (closed by the app, still in the kernel) against the global tcp_max_orphans."""
    assert ctx.kernel is not None
    n = ctx.kernel.sockstat.get("TCP", {}).get("orphan")
    cap = ctx.sysctl_int("net.ipv4.tcp_max_orphans")
    if n is None or not cap:
        return None
    share = n / cap
    sev = level(share, th["warning_share"], th["critical_share"])
    if sev is None:
        return None
    return Finding(
        "ORPHAN_PRESSURE", sev, "Orphan sockets near tcp_max_orphans",
        f"{n:,} orphan sockets against tcp_max_orphans={cap:,} ({share:.0%}); past the limit "
        "(or a quarter of it under retransmission) the kernel resets them.",
        {"orphans": n, "tcp_max_orphans": cap, "share": round(share, 3)},
        [
            "Find what closes connections that cannot finish (peers gone, lossy path): see "
            "FIN_WAIT1/LAST_ACK/CLOSING counts.",
            "Lower tcp_orphan_retries to 2-3 on loaded web servers; raise tcp_max_orphans "
            "(global), never lower it.",
        ],
    )


@rule("TCP_MEMORY_PRESSURE", "TCP memory near tcp_mem limits", needs=("kernel",),
      critical_high_share=0.9)
def tcp_memory(ctx: Context, th: dict[str, float]) -> Finding | None:
    """sockstat mem (pages) against tcp_mem's pressure and high thresholds."""
    assert ctx.kernel is not None
    mem = ctx.kernel.sockstat.get("TCP", {}).get("mem")
    limits = ctx.kernel.sysctl_ints("net.ipv4.tcp_mem")
    if mem is None or not limits or len(limits) != 3:
        return None
    _, pressure, high = limits
    pressures = ctx.delta("TcpExt.TCPMemoryPressures")
    aborts = ctx.delta("TcpExt.TCPAbortOnMemory")
    sev = None
    if mem >= pressure or pressures > 0:
        sev = "warning"
    if mem >= th["critical_high_share"] * high or aborts > 0:
        sev = "critical"
    if sev is None:
        return None
    return Finding(
        "TCP_MEMORY_PRESSURE", sev, "TCP memory near tcp_mem limits",
        f"TCP uses {mem:,} pages against tcp_mem pressure={pressure:,} high={high:,}; "
        f"memory aborts during the sample: {aborts:,}.",
        {"mem_pages": mem, "tcp_mem": limits, "TCPMemoryPressures_delta": pressures,
         "TCPAbortOnMemory_delta": aborts},
        [
            "Find the sockets holding buffers: large Recv-Q (the app reads too slowly) or "
            "Send-Q (slow peers) in `tcpdoctor top`.",
            "Raise tcp_mem (global, in pages) only if the memory is really available.",
        ],
    )


@rule("CONNTRACK_FULL", "Connection tracking table near full", needs=("kernel",),
      warning_share=0.8, critical_share=0.95)
def conntrack(ctx: Context, th: dict[str, float]) -> Finding | None:
    """nf_conntrack_count against nf_conntrack_max, and conntrack drops."""
    count = ctx.sysctl_int("net.netfilter.nf_conntrack_count")
    cap = ctx.sysctl_int("net.netfilter.nf_conntrack_max")
    if count is None or not cap:
        return None
    drops = sum(ctx.delta(f"conntrack.{k}") for k in ("drop", "early_drop", "insert_failed"))
    share = count / cap
    sev = level(share, th["warning_share"], th["critical_share"])
    if drops > 0:
        sev = "critical"
    if sev is None:
        return None
    return Finding(
        "CONNTRACK_FULL", sev, "Connection tracking table near full",
        f"conntrack holds {count:,} of {cap:,} entries ({share:.0%}); {drops:,} drops during "
        "the sample ('nf_conntrack: table full, dropping packet').",
        {"count": count, "max": cap, "share": round(share, 3), "drops_delta": drops},
        [
            "Reduce tracked flows: fewer short connections (keep-alive), or NOTRACK rules for "
            "traffic that needs no NAT/stateful filtering.",
            "Raise nf_conntrack_max (and the hash size) if memory allows; entries for idle "
            "established flows live 5 days (nf_conntrack_tcp_timeout_established).",
        ],
    )


@rule("FD_LIMIT", "Open files near their limit", needs=("fds",),
      warning_share=0.8, critical_share=0.95, min_fds=64)
def fd_limit(ctx: Context, th: dict[str, float]) -> Finding | None:
    """A process near RLIMIT_NOFILE, or the system near fs.file-max."""
    worst: list[dict[str, Any]] = []
    for pid, count in (ctx.fd_counts or {}).items():
        if count < th["min_fds"] or ctx.nofile is None:
            continue
        limit = ctx.nofile(pid)
        if limit:
            worst.append({"pid": pid, "fds": count, "limit": limit, "share": count / limit})
    worst.sort(key=lambda w: -w["share"])
    share = worst[0]["share"] if worst else 0.0
    file_nr = ctx.kernel.file_nr if ctx.kernel else None
    sys_share = file_nr[0] / file_nr[2] if file_nr and file_nr[2] else 0.0
    sev = level(max(share, sys_share), th["warning_share"], th["critical_share"])
    if sev is None:
        return None
    names = ctx.snap.process_names
    procs = [{"pid": w["pid"], "name": names.get(w["pid"], "?"), "count": w["fds"]}
             for w in worst[:5] if w["share"] >= th["warning_share"]]
    return Finding(
        "FD_LIMIT", sev, "Open files near their limit",
        (f"{procs[0]['name']} (pid {procs[0]['pid']}) has {worst[0]['fds']:,} of "
         f"{worst[0]['limit']:,} allowed open files ({share:.0%})" if procs else
         f"The system has {file_nr[0] if file_nr else 0:,} open files of fs.file-max "
         f"({sys_share:.0%})") + "; at the limit accept()/connect() fail with EMFILE/ENFILE.",
        {"processes": [{k: (round(v, 3) if k == "share" else v) for k, v in w.items()}
                       for w in worst[:5]],
         "file_nr": list(file_nr) if file_nr else None},
        [
            "First check for a descriptor leak (CLOSE_WAIT, sockets never closed).",
            "Then raise the process's limit (systemd LimitNOFILE=, ulimit -n); fs.nr_open caps "
            "it, fs.file-max caps the whole system.",
        ],
        procs,
    )


# Running values that are dangerous or obsolete (KERNEL.md). tune audits config files too.
@rule("UNSAFE_SYSCTL", "A dangerous or obsolete sysctl is in force", needs=("sysctls",),
      tw_buckets_warning=32768, tw_buckets_critical=10000)
def unsafe_sysctl(ctx: Context, th: dict[str, float]) -> Finding | None:
    """Harmful running values: tcp_tw_recycle on, tiny tcp_max_tw_buckets, syncookies off..."""
    issues: list[tuple[str, dict[str, Any]]] = []
    recycle = ctx.sysctl_int("net.ipv4.tcp_tw_recycle")
    if recycle:
        issues.append(("critical", sysctl_rec(
            "net.ipv4.tcp_tw_recycle", recycle, 0,
            "drops SYNs from clients behind NAT; removed in Linux 4.12.")))
    buckets = ctx.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    ehash = ctx.sysctl_int("net.ipv4.tcp_ehash_entries")
    default = abs(ehash) // 2 if ehash else 131072
    # Judged against this machine's default (ehash/2, small on small VMs), not a constant.
    if buckets is not None and buckets < min(th["tw_buckets_warning"], default):
        crit = buckets <= min(th["tw_buckets_critical"], default // 4)
        issues.append(("critical" if crit else "warning", sysctl_rec(
            "net.ipv4.tcp_max_tw_buckets", buckets, default,
            "past this cap the kernel silently skips TIME_WAIT (TCPTimeWaitOverflow); the "
            "docs say never lower it artificially.")))
    if ctx.sysctl_int("net.ipv4.tcp_syncookies") == 0:
        issues.append(("warning", sysctl_rec(
            "net.ipv4.tcp_syncookies", 0, 1,
            "without cookies a SYN flood fills the SYN queue and real clients are refused.")))
    if ctx.sysctl_int("net.ipv4.tcp_abort_on_overflow") == 1:
        issues.append(("warning", sysctl_rec(
            "net.ipv4.tcp_abort_on_overflow", 1, 0,
            "resets clients when the accept queue is full instead of letting them retry.")))
    rng = ctx.kernel.sysctl_ints("net.ipv4.ip_local_port_range") if ctx.kernel else None
    if rng and len(rng) == 2 and rng[0] < 1024:
        issues.append(("warning", sysctl_rec(
            "net.ipv4.ip_local_port_range", f"{rng[0]} {rng[1]}", "32768 60999",
            "ephemeral ports below 1024 collide with privileged service ports.")))
    if not issues:
        return None
    sev = max((s for s, _ in issues), key=lambda s: {"warning": 1, "critical": 2}[s])
    recs = [r for _, r in issues]
    keys = ", ".join(f"{r['key'].split('.')[-1]}={r['current']}" for r in recs)
    return Finding(
        "UNSAFE_SYSCTL", sev, "A dangerous or obsolete sysctl is in force",
        f"Harmful kernel settings in force: {keys}.",
        {"settings": {r["key"]: r["current"] for r in recs}},
        ["Restore the recommended values below (`tcpdoctor tune` writes a drop-in you can "
         "apply and roll back) and remove the lines that set them from /etc/sysctl.*."],
        [], recs,
    )
