"""Sockets whose buffers hold a large share of TCP memory or of RAM."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.context import Context, level, top_destinations
from tcpdoctor.analysis.cost import human_bytes, item_text, largest
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.severity import worst
from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import STATE_BY_NAME, TCP_LISTEN

# What data stuck in each kind of buffer means, and the fix that starts with the application.
MEANING = {
    "receive buffers": Msg("received data the application does not read"),
    "send buffers": Msg("data the peers do not take (slow or stalled consumers)"),
}
FIX = {
    "receive buffers": lambda who: Msg(
        "Make {who} read its sockets again, or close them: a stalled reader thread, a blocked "
        "worker pool, or CLOSE_WAIT sockets with unread data that are never closed.", who=who),
    "send buffers": lambda who: Msg(
        "Bound what {who} queues for slow peers: write timeouts that drop stalled clients, "
        "backpressure in the application, tcp_notsent_lowat or a smaller SO_SNDBUF for bulk "
        "senders.", who=who),
}


@rule("SOCKET_MEMORY_HOG", "Socket buffers hold a large share of TCP memory",
      needs=("kernel", "buffers"), min_mib=64, warning_tcp_mem_share=0.1,
      critical_tcp_mem_share=0.5, warning_ram_share=0.05, critical_ram_share=0.2)
def memory_hog(ctx: Context, th: dict[str, float]) -> Found | None:
    """Unread or unsent data in socket buffers against tcp_mem's pressure point and RAM."""
    c = ctx.snap.columns
    cost = ctx.cost()
    held = (c["state"] != TCP_LISTEN) & ((cost.receive > 0) | (cost.send > 0))
    total = int(cost.buffers[held].sum())
    if total < th["min_mib"] * 2**20:
        return None
    assert ctx.kernel is not None
    limits = ctx.kernel.sysctl_ints("net.ipv4.tcp_mem")
    pressure = limits[1] * ctx.kernel.page_size if limits and len(limits) == 3 else None
    ram = ctx.kernel.mem_total
    mem_share = total / pressure if pressure else 0.0
    ram_share = total / ram if ram else 0.0
    sev = worst(s for s in (
        level(mem_share, th["warning_tcp_mem_share"], th["critical_tcp_mem_share"]),
        level(ram_share, th["warning_ram_share"], th["critical_ram_share"])) if s)
    if sev is None:
        return None
    items = largest(ctx.snap, cost, 3, held, (Msg("receive buffers"), Msg("send buffers")))
    lead = items[0]
    lead_mask = held & (c["state"] == STATE_BY_NAME[lead["state"]])
    if "pid" in c:
        lead_mask &= c["pid"] == lead["pid"]
    peers = top_destinations(ctx.snap, lead_mask, 3, with_port=False)
    who = f"{lead['name']} (pid {lead['pid']})" if lead["pid"] >= 0 else Msg("the owner")
    of_what = (Msg("{mem_share:.1%} of tcp_mem's pressure point ({pressure})",
                   mem_share=mem_share, pressure=human_bytes(pressure))
               if pressure else Msg("{ram_share:.1%} of RAM", ram_share=ram_share))
    return Found(
        sev,
        Msg("Socket buffers hold {size}, {of_what}: {largest}, peers "
            "{peers} — {meaning}.",
            size=human_bytes(total), of_what=of_what, largest=item_text(lead),
            peers=', '.join(p for p, _ in peers[:2]),
            meaning=MEANING[lead['what']]),
        {"held_bytes": total, "receive_bytes": int(cost.receive[held].sum()),
         "send_bytes": int(cost.send[held].sum()), "sockets": ctx.count(held),
         "tcp_mem_pressure_bytes": pressure, "share_of_tcp_mem_pressure": round(mem_share, 3),
         "ram_bytes": ram, "share_of_ram": round(ram_share, 4),
         "top_peers": dict(peers)},
        [
            FIX[lead["what"]](who),
            Msg("Do not raise tcp_mem or tcp_rmem/tcp_wmem to make room: larger limits only let "
                "the stalled sockets hold more memory before the kernel pushes back."),
            Msg("Past tcp_mem's pressure point the kernel shrinks every socket's buffers; at "
                "its high mark new allocations fail and orphans are reset ('TCP: out of "
                "memory')."),
        ],
        _owners(items),
        sockets=held,
    )


def _owners(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    for it in items:
        if it["pid"] >= 0:
            seen.setdefault(it["pid"], {"pid": it["pid"], "name": it["name"], "count": 0})
            seen[it["pid"]]["count"] += it["sockets"]
    return list(seen.values())
