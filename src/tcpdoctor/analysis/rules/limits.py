"""Rules about kernel-wide limits: orphans, TCP memory, conntrack, open files."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.context import Context, level
from tcpdoctor.analysis.cost import human_bytes, item_text, largest
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import TCP_CLOSING, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_LISTEN

# States an orphan (closed by its application, still in the kernel) can be in.
ORPHAN_STATES = (TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_CLOSING)


@rule("ORPHAN_PRESSURE", "Orphan sockets near tcp_max_orphans", needs=("kernel",),
      warning_share=0.25, critical_share=0.8, horizon_warning=600, horizon_critical=120)
def orphans(ctx: Context, th: dict[str, float]) -> Found | None:
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
    c = ctx.snap.columns
    seen = (c["inode"] == 0) & np.isin(c["state"], ORPHAN_STATES)
    return Found(
        sev,
        Msg("{n:,} orphan sockets against tcp_max_orphans={cap:,} ({share:.0%}); past the limit "
            "(or a quarter of it under retransmission) the kernel resets them.", n=n, cap=cap,
            share=share)
        + _held(ctx, seen, Msg("The orphans in this snapshot")),
        {"orphans": n, "tcp_max_orphans": cap, "share": round(share, 3)},
        [
            Msg("Find what closes connections that cannot finish (peers gone, lossy path): see "
                "FIN_WAIT1/LAST_ACK/CLOSING counts."),
            Msg("Lower tcp_orphan_retries to 2-3 on loaded web servers; raise tcp_max_orphans "
                "(global), never lower it."),
        ],
        sockets=seen,
    )


@rule("TCP_MEMORY_PRESSURE", "TCP memory near tcp_mem limits", needs=("kernel",),
      critical_high_share=0.9, horizon_warning=600, horizon_critical=120)
def tcp_memory(ctx: Context, th: dict[str, float]) -> Found | None:
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
        sev = Severity.WARNING
    if mem >= th["critical_high_share"] * high or aborts > 0:
        sev = Severity.CRITICAL
    if sev is None:
        return None
    c = ctx.snap.columns
    held = (c["state"] != TCP_LISTEN) & (ctx.cost().buffers > 0)
    return Found(
        sev,
        Msg("TCP uses {mem:,} pages against tcp_mem pressure={pressure:,} high={high:,}; memory "
            "aborts during the sample: {aborts}.", mem=mem, pressure=pressure, high=high,
            aborts=ctx.said("TcpExt.TCPAbortOnMemory")) + _held(ctx, held, Msg("Socket buffers "
                                                                               "here")),
        {"mem_pages": mem, "tcp_mem": limits, "TCPMemoryPressures_delta": pressures,
         "TCPAbortOnMemory_delta": aborts},
        [
            Msg("Find the sockets holding buffers: large Recv-Q (the app reads too slowly) or "
                "Send-Q (slow peers) in `tcpdoctor top`."),
            Msg("Raise tcp_mem (global, in pages) only if the memory is really available."),
        ],
        sockets=held,
    )


def _held(ctx: Context, mask: np.ndarray, what: str) -> str:
    """' Socket buffers here hold 1.2 GB; largest: ...' (nothing when nothing is priced)."""
    cost = ctx.cost()
    if not (cost.objects_known or cost.buffers_known) or not mask.any():
        return ""
    items = largest(ctx.snap, cost, 1, mask)
    lead = Msg("; largest: {item}", item=item_text(items[0])) if items else ""
    return Msg(" {what} hold {size}{lead}.", what=what,
               size=human_bytes(cost.of(mask)['memory_bytes']), lead=lead)


@rule("CONNTRACK_FULL", "Connection tracking table near full", needs=("kernel",),
      warning_share=0.8, critical_share=0.95, horizon_warning=600, horizon_critical=120)
def conntrack(ctx: Context, th: dict[str, float]) -> Found | None:
    """nf_conntrack_count against nf_conntrack_max, and conntrack drops."""
    count = ctx.sysctl_int("net.netfilter.nf_conntrack_count")
    cap = ctx.sysctl_int("net.netfilter.nf_conntrack_max")
    if count is None or not cap:
        return None
    drops = sum(ctx.delta(f"conntrack.{k}") for k in ("drop", "early_drop", "insert_failed"))
    share = count / cap
    sev = level(share, th["warning_share"], th["critical_share"], escalate=drops > 0)
    if sev is None:
        return None
    who, filled = _who_fills(ctx)
    return Found(
        sev,
        Msg("conntrack holds {count:,} of {cap:,} entries ({share:.0%}); drops during the "
            "sample ('nf_conntrack: table full, dropping packet'): {drops}.", count=count,
            cap=cap, share=share, drops=ctx.said("conntrack.drop", "conntrack.early_drop",
                                                  "conntrack.insert_failed")) + who,
        {"count": count, "max": cap, "share": round(share, 3), "drops_delta": drops,
         **filled},
        [
            Msg("Reduce tracked flows: fewer short connections (keep-alive), or NOTRACK rules "
                "for traffic that needs no NAT/stateful filtering."),
            Msg("Raise nf_conntrack_max (and the hash size) if memory allows; entries for idle "
                "established flows live 5 days (nf_conntrack_tcp_timeout_established)."),
        ],
    )


def _who_fills(ctx: Context) -> tuple[str, dict[str, Any]]:
    """Who fills the table, where it was read: namespaces (pods), states, destinations."""
    if ctx.conntrack is None:
        return "", {}
    from tcpdoctor.analysis import conntrack as ct

    j = ctx.conntrack["joined"]
    spaces = ct.by_space(j, limit=5)
    dests = ct.group(j, ["destination"], 5)
    states = ct.by_state(j.table.columns["ct_state"])
    if not spaces:
        return "", {}
    return (Msg(" Most entries come from {where}; top destination {dest}.",
                where=", ".join(f"{r['namespace']} ({r['entries']:,})" for r in spaces[:3]),
                dest=f"{dests[0]['destination']} ({dests[0]['entries']:,})" if dests else "?"),
            {"by_namespace": spaces, "by_destination": dests, "by_state": states})


@rule("FD_LIMIT", "Open files near their limit", needs=("fds",),
      warning_share=0.8, critical_share=0.95, min_fds=64, horizon_warning=600,
      horizon_critical=120)
def fd_limit(ctx: Context, th: dict[str, float]) -> Found | None:
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
    return Found(
        sev,
        (Msg("{name} (pid {pid}) has {fds:,} of {limit:,} "
             "allowed open files ({share:.0%})", name=procs[0]['name'],
             pid=procs[0]['pid'], fds=worst[0]['fds'],
             limit=worst[0]['limit'], share=share) if procs else
         Msg("The system has {files:,} open files of fs.file-max "
             "({sys_share:.0%})", files=file_nr[0] if file_nr else 0,
             sys_share=sys_share))
        + Msg("; at the limit accept()/connect() fail with EMFILE/ENFILE."),
        {"processes": [{k: (round(v, 3) if k == "share" else v) for k, v in w.items()}
                       for w in worst[:5]],
         "file_nr": list(file_nr) if file_nr else None},
        [
            Msg("First check for a descriptor leak (CLOSE_WAIT, sockets never closed)."),
            Msg("Then raise the process's limit (systemd LimitNOFILE=, ulimit -n); fs.nr_open "
                "caps it, fs.file-max caps the whole system."),
        ],
        procs,
    )
