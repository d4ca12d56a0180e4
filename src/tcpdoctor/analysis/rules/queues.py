"""Queues that do not drain: a reader that stopped reading, a peer that stopped taking.

Independent of how much memory is held (SOCKET_MEMORY_HOG waits for a large share): 300
connections whose worker pool is blocked hold only tens of MB, yet every request on them
hangs. A busy reader's queue empties within milliseconds; data that has waited seconds
since it arrived (tcp_info's time since data was last received) is not being read. A send
queue held against a zero window has the kernel's zero-window probe (persist) timer
running: the peer takes nothing.
"""

from __future__ import annotations

import numpy as np

from tcpdoctor.analysis.context import Context, level, names_of, top_destinations
from tcpdoctor.analysis.cost import human_bytes
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import TCP_ESTABLISHED, TIMER_PROBE


def _bytes(ctx: Context, column: str, m: np.ndarray) -> int:
    values = ctx.snap.columns[column][m].astype(np.int64)
    w = ctx.snap.weights
    return int((values * (w[m] if w is not None else 1)).sum())


def _ports(ctx: Context, m: np.ndarray, limit: int = 5) -> dict[str, int]:
    """The local ports of the sockets in m, most sockets first (the service they serve)."""
    w = ctx.snap.weights
    ports, inverse = np.unique(ctx.snap.columns["sport"][m], return_inverse=True)
    counts = np.bincount(inverse, None if w is None else w[m], ports.shape[0]).astype(np.int64)
    order = np.argsort(-counts, kind="stable")[:limit]
    return {str(int(ports[i])): int(counts[i]) for i in order}


@rule("STALLED_READER", "Received data waits unread: the application stopped reading",
      needs=("info",), stall_seconds=2, warning=20, critical=1000)
def stalled_reader(ctx: Context, th: dict[str, float]) -> Found | None:
    """ESTABLISHED sockets holding unread data that arrived stall_seconds or more ago."""
    c = ctx.snap.columns
    m = ((c["state"] == TCP_ESTABLISHED) & c["has_info"] & (c["rqueue"] > 0)
         & (c["lastrcv"] >= th["stall_seconds"] * 1000))
    n = ctx.count(m)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    unread = _bytes(ctx, "rqueue", m)
    procs = ctx.processes(m)
    who = names_of(procs) if procs else Msg("the application")
    oldest = int(c["lastrcv"][m].max()) // 1000
    return Found(
        sev,
        Msg("{n:,} connections hold {size} of received data that {who} has not read for "
            "{stall}+ s (the oldest {oldest} s): its readers are stuck.", n=n,
            size=human_bytes(unread), who=who, stall=int(th["stall_seconds"]), oldest=oldest),
        {"sockets": n, "unread_bytes": unread,
         "receive_buffer_bytes": (_bytes(ctx, "rmem_alloc", m) if "rmem_alloc" in c
                                  else ctx.missing),
         "waiting_seconds_at_least": int(th["stall_seconds"]), "oldest_seconds": oldest,
         "local_ports": _ports(ctx, m),
         "peers": dict(top_destinations(ctx.snap, m, with_port=False))},
        [
            Msg("Find what blocks the readers of {who}: a worker pool waiting on a lock, a "
                "database or another service, a dead consumer thread (a thread dump: py-spy "
                "dump, jstack, gdb `thread apply all bt`).", who=who),
            Msg("Peers of these connections are stalled too: their requests hang until "
                "they time out; add read timeouts on both sides."),
            Msg("No sysctl fixes a reader that does not read; larger buffers only hide it "
                "longer."),
        ],
        procs, sockets=m,
    )


@rule("PEER_NOT_READING", "Send queues stuck against a zero window: the peers stopped reading",
      warning=20, critical=1000)
def peer_not_reading(ctx: Context, th: dict[str, float]) -> Found | None:
    """ESTABLISHED sockets with unsent data and the zero-window probe timer running."""
    c = ctx.snap.columns
    m = (c["state"] == TCP_ESTABLISHED) & (c["wqueue"] > 0) & (c["timer"] == TIMER_PROBE)
    n = ctx.count(m)
    sev = level(n, th["warning"], th["critical"])
    if sev is None:
        return None
    unsent = _bytes(ctx, "wqueue", m)
    procs = ctx.processes(m)
    peers = top_destinations(ctx.snap, m)
    who = names_of(procs) if procs else Msg("this host")
    return Found(
        sev,
        Msg("{n:,} connections of {who} hold {size} their peers do not take (zero window): "
            "the receivers, mostly {peer}, stopped reading.", n=n, who=who,
            size=human_bytes(unsent), peer=peers[0][0] if peers else "?"),
        {"sockets": n, "unsent_bytes": unsent, "peers": dict(peers)},
        [
            Msg("Look at the receiving side ({peer}): its application stopped reading "
                "(tcpdoctor check there shows STALLED_READER).", peer=peers[0][0]
                if peers else "?"),
            Msg("Give {who} write timeouts, so that a stalled consumer is dropped instead "
                "of holding memory and a worker.", who=who),
        ],
        procs, sockets=m,
    )
