"""Rules for connections stuck while closing: CLOSE_WAIT, FIN_WAIT2, LAST_ACK."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.context import Context, level, sysctl_rec, top_destinations
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.rules.common import (
    in_state,
    on_service_port,
    ports_text,
)
from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import (
    TCP_CLOSE_WAIT,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TIMER_RETRANSMIT,
    TIMER_TIME_WAIT,
)


@rule("CLOSE_WAIT_LEAK", "A process does not close sockets its peers have closed",
      warning=100, critical=1000, horizon_warning=600, horizon_critical=120)
def close_wait(ctx: Context, th: dict[str, float]) -> Found | None:
    """CLOSE_WAIT: the peer closed; the kernel waits for the application to close() too."""
    cw = in_state(ctx, TCP_CLOSE_WAIT)
    n = ctx.count(cw)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    ports = ctx.top("sport", cw)
    # The peer's FIN occupies one sequence number: Recv-Q 1 in CLOSE_WAIT means no data.
    unread = ctx.count(cw & (ctx.snap.columns["rqueue"] > 1))
    procs = ctx.processes(cw)
    owner = (Msg("{name} (pid {pid}) holds {count:,} of them",
                 name=procs[0]['name'], pid=procs[0]['pid'],
                 count=procs[0]['count'])
             if procs else Msg("their owner is unknown (run as root to see it)"))
    # A client's CLOSE_WAIT sits on ephemeral ports: name the services it called instead.
    outbound = ctx.count(cw & ~on_service_port(ctx))
    if outbound * 2 > n:
        dests = top_destinations(ctx.snap, cw, 3)
        where = Msg("towards {destinations}",
                    destinations=", ".join(f"{d} ({k:,})" for d, k in dests))
        peers = Msg("the remote services closed these connections and this client never called "
                    "close()")
        places: dict[str, Any] = {"remote_services": dict(dests)}
    else:
        where = Msg("on local port(s) {ports}", ports=ports_text(ports))
        peers = Msg("the peers closed these connections and the application never called "
                    "close()")
        places = {"local_ports": {str(p): k for p, k in ports}}
    queued = _never_accepted(ctx, cw)
    if queued * 2 > n:
        return Found(
            sev,
            Msg("{n:,} sockets in CLOSE_WAIT {where}, {queued:,} of them owned by no process: "
                "they were never accept()ed; their clients gave up while they waited in the "
                "listen queue.", n=n, where=where, queued=queued),
            {"close_wait": n, **places, "with_unread_data": unread, "not_accepted": queued},
            [Msg("The application behind port(s) {ports} accepts too slowly or not at all "
                 "(a blocked accept loop, every worker busy, a full thread pool): see its "
                 "accept queue "
                 "(`ss -ltn` Recv-Q of the listener) and where its threads wait (a thread "
                 "dump).", ports=ports_text(ports)),
             Msg("A capture taken without root shows other users' sockets without an owner "
                 "too: take it as root to be sure these have none."),
             Msg("No sysctl frees CLOSE_WAIT; a bigger backlog only queues more clients that "
                 "give up.")],
            procs, sockets=cw)
    return Found(
        sev,
        Msg("{n:,} sockets in CLOSE_WAIT {where}; {owner}: {peers}.", n=n, where=where,
            owner=owner, peers=peers),
        {"close_wait": n, **places, "with_unread_data": unread},
        [
            Msg("Fix {name}: when read() returns 0 (EOF) or an error, close the socket; check "
                "error paths, exceptions and connection pools that keep dead connections.",
                name=procs[0]["name"] if procs else Msg("the owning application")),
            Msg("No sysctl frees CLOSE_WAIT: the kernel waits for the application, forever. "
                "Restarting the process frees them now, but the leak returns."),
            Msg("Each CLOSE_WAIT holds a file descriptor: the process will hit its open-files "
                "limit (EMFILE) if the leak continues."),
        ],
        procs,
        sockets=cw,
    )


def _never_accepted(ctx: Context, cw: np.ndarray) -> int:
    """CLOSE_WAIT sockets on a listening port that no process holds. A socket in CLOSE_WAIT
    waits for its application's close(), so one that no file descriptor points to was
    never accept()ed: it is still in the listener's queue."""
    c = ctx.snap.columns
    if "pid" not in c:
        return 0  # no owners in this input: nothing says who holds what
    return ctx.count(cw & (c["pid"] < 0) & on_service_port(ctx))


@rule("FIN_WAIT2_BUILDUP", "This side closed but peers never finish their close",
      warning=500, critical=5000)
def fin_wait2(ctx: Context, th: dict[str, float]) -> Found | None:
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
                               Msg("bounds how long orphaned FIN_WAIT2 sockets wait for the "
                                   "peer's FIN (it does not change TIME_WAIT).")))
    dests = top_destinations(ctx.snap, fw, with_port=False)
    return Found(
        sev,
        Msg("{n:,} sockets in FIN_WAIT2 ({orphaned:,} orphaned), most with {dest}: peers "
            "acknowledged our close but never closed their side.", n=n, orphaned=orphaned,
            dest=dests[0][0]),
        {"fin_wait2": n, "orphaned": orphaned, "held_by_processes": n - orphaned,
         "top_remotes": dict(dests), "tcp_fin_timeout": fin_timeout},
        [
            Msg("Find out why the peers (top remotes above) keep their half open: a client that "
                "never closes, or a half-close (shutdown) protocol waiting on them."),
            Msg("Sockets still held by a process stay in FIN_WAIT2 until it closes them; only "
                "orphaned ones time out after tcp_fin_timeout."),
        ],
        ctx.processes(fw), recs,
        sockets=fw,
    )


@rule("LAST_ACK_BUILDUP", "Final ACKs are not arriving", warning=500, critical=5000)
def last_ack(ctx: Context, th: dict[str, float]) -> Found | None:
    """LAST_ACK: we answered the peer's FIN with ours; the final ACK never comes back."""
    c = ctx.snap.columns
    la = c["state"] == TCP_LAST_ACK
    n = ctx.count(la)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    retrans = ctx.count(la & (c["timer"] == TIMER_RETRANSMIT))
    dests = top_destinations(ctx.snap, la, with_port=False)
    return Found(
        sev,
        Msg("{n:,} sockets in LAST_ACK ({retrans:,} retransmitting their FIN), most with "
            "{dest}: peers vanished or a firewall/path drops the last ACK.", n=n,
            retrans=retrans, dest=dests[0][0]),
        {"last_ack": n, "retransmitting": retrans, "top_remotes": dict(dests)},
        [
            Msg("Check the path to the top remotes: a stateful firewall or load balancer that "
                "forgets connections early drops the final ACK."),
            Msg("Peers that disappear (crashed clients, NAT timeouts) leave LAST_ACK until the "
                "FIN retransmissions give up; tcp_orphan_retries bounds that for orphaned "
                "sockets."),
        ],
        ctx.processes(la),
        sockets=la,
    )
