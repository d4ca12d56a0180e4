"""The cost lines of a report: what the sockets hold in kernel memory, file descriptors and
softirq CPU, from a report's cost section (analysis/cost.py)."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.cost import human_bytes, item_text
from tcpdoctor.i18n import _, _f, tr


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """One line for the sockets, one for the kernel's TCP accounting, one for CPU."""
    if not cost:
        return []
    lines = [_sockets_line(cost)]
    host = cost.get("host") or {}
    if "tcp_mem_bytes" in host:
        limits = host.get("tcp_mem_limits_bytes")
        against = (_f(" against tcp_mem pressure {pressure}, high {high}",
                      pressure=human_bytes(limits[1]), high=human_bytes(limits[2]))
                   if limits else "")
        # sockstat's memory and /proc/stat's CPU are the whole host's, whatever namespace
        # the report is about: said so, so that nobody reads them as the namespace's.
        lines.append(_f("Kernel TCP memory of the whole host (sockstat): {size}{against}.",
                        size=human_bytes(host["tcp_mem_bytes"]), against=against))
    if cost.get("cpu"):
        lines.append(_cpu_line(cost["cpu"]))
    return lines


def _sockets_line(cost: dict[str, Any]) -> str:
    total = cost["total"]
    if not cost["objects_priced"] and not cost["buffers_measured"]:
        return _("Cost: not in the input (no slab sizes and no skmem: `ss -tanm` or a "
                 "tcpdoctor snapshot or bundle carries them).")
    buffers = total["memory_bytes"] - total["object_bytes"]
    parts = []
    if cost["buffers_measured"]:
        parts.append(_f("{size} in buffers", size=human_bytes(buffers)))
    if cost["objects_priced"]:
        parts.append(_f("{size} in socket objects", size=human_bytes(total["object_bytes"])))
    missing = []
    if not cost["objects_priced"]:
        missing.append(_("object sizes unknown: /proc/slabinfo needs root or is not in the "
                         "input"))
    if not cost["buffers_measured"]:
        missing.append(_("buffer memory not measured: no skmem in this input"))
    head = (_f("Cost: the sockets hold {size} of kernel memory",
               size=human_bytes(total["memory_bytes"]))
            + (_f(" ({parts})", parts=_(", ").join(parts)) if parts else "")
            + _(", ") + _fds(total["fds"]))
    items = [str(tr(item_text(it))) for it in cost.get("largest", [])
             if it["bytes"] >= 0.01 * max(total["memory_bytes"], 1)]
    if items:
        head += _("; largest: ") + _("; ").join(items)
    if missing:
        head += _f(" ({parts})", parts=_("; ").join(missing))
    return head + _(".")


def _cpu_line(cpu: dict[str, Any]) -> str:
    text = _f("CPU of the whole host: softirq {share:.1%} of CPU time during the sample "
              "(busiest CPU {busiest:.1%})", share=cpu["softirq_share"],
              busiest=cpu["softirq_busiest_cpu_share"])
    host = [(key, label) for key, label in (
        ("net_rx_per_second", "NET_RX"), ("net_tx_per_second", "NET_TX")) if key in cpu]
    # retransmits and listen drops come from the namespace's own /proc/net/snmp, netstat
    here = [(key, label) for key, label in (
        ("retransmits_per_second", _("retransmits")),
        ("listen_drops_per_second", _("listen drops"))) if key in cpu]
    if host:
        text += _("; ") + _(", ").join(f"{label} {cpu[key]:,.0f}/s" for key, label in host)
    if here:
        text += _("; ") + _f("in this namespace: {rates}", rates=_(", ").join(
            f"{label} {cpu[key]:,.0f}/s" for key, label in here))
    return text + _(".")


def _fds(n: int) -> str:
    return _f("{n:,} file descriptor", n=n) if n == 1 else _f("{n:,} file descriptors", n=n)


def cost_evidence(cost: dict[str, int]) -> str:
    """A finding's evidence["cost"]: '12.3 MB (receive 10.0 MB, send 0 B, objects 2.3 MB),
    3,000 file descriptors'."""
    parts = [f"{label} {human_bytes(cost[key])}" for key, label in (
        ("receive_bytes", _("receive")), ("send_bytes", _("send")),
        ("other_buffer_bytes", _("reserved")), ("object_bytes", _("objects")))
        if cost.get(key)]
    detail = _f(" ({parts})", parts=_(", ").join(parts)) if parts else ""
    return f"{human_bytes(cost['memory_bytes'])}{detail}" + _(", ") + _fds(cost["fds"])
