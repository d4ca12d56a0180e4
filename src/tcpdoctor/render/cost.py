"""The cost lines of a report: what the sockets hold in kernel memory, file descriptors and
softirq CPU, from a report's cost section (analysis/cost.py)."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.cost import human_bytes, item_text


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """One line for the sockets, one for the kernel's TCP accounting, one for CPU."""
    if not cost:
        return []
    lines = [_sockets_line(cost)]
    host = cost.get("host") or {}
    if "tcp_mem_bytes" in host:
        limits = host.get("tcp_mem_limits_bytes")
        against = (f" against tcp_mem pressure {human_bytes(limits[1])}, high "
                   f"{human_bytes(limits[2])}" if limits else "")
        lines.append(f"Kernel TCP memory (sockstat): {human_bytes(host['tcp_mem_bytes'])}"
                     f"{against}.")
    if cost.get("cpu"):
        lines.append(_cpu_line(cost["cpu"]))
    return lines


def _sockets_line(cost: dict[str, Any]) -> str:
    total = cost["total"]
    if not cost["objects_priced"] and not cost["buffers_measured"]:
        return ("Cost: not in the input (no slab sizes and no skmem: `ss -tanm` or a "
                "tcpdoctor snapshot or bundle carries them).")
    buffers = total["memory_bytes"] - total["object_bytes"]
    parts = []
    if cost["buffers_measured"]:
        parts.append(f"{human_bytes(buffers)} in buffers")
    if cost["objects_priced"]:
        parts.append(f"{human_bytes(total['object_bytes'])} in socket objects")
    missing = []
    if not cost["objects_priced"]:
        missing.append("object sizes unknown: /proc/slabinfo needs root or is not in the input")
    if not cost["buffers_measured"]:
        missing.append("buffer memory not measured: no skmem in this input")
    head = (f"Cost: the sockets hold {human_bytes(total['memory_bytes'])} of kernel memory"
            + (f" ({', '.join(parts)})" if parts else "")
            + f", {_fds(total['fds'])}")
    items = [item_text(it) for it in cost.get("largest", [])
             if it["bytes"] >= 0.01 * max(total["memory_bytes"], 1)]
    if items:
        head += "; largest: " + "; ".join(items)
    if missing:
        head += f" ({'; '.join(missing)})"
    return head + "."


def _cpu_line(cpu: dict[str, Any]) -> str:
    text = (f"CPU: softirq {cpu['softirq_share']:.1%} of CPU time during the sample (busiest "
            f"CPU {cpu['softirq_busiest_cpu_share']:.1%})")
    rates = [(key, label) for key, label in (
        ("net_rx_per_second", "NET_RX"), ("net_tx_per_second", "NET_TX"),
        ("retransmits_per_second", "retransmits"), ("listen_drops_per_second", "listen drops"))
        if key in cpu]
    if rates:
        text += "; " + ", ".join(f"{label} {cpu[key]:,.0f}/s" for key, label in rates)
    return text + "."


def _fds(n: int) -> str:
    return f"{n:,} file descriptor{'' if n == 1 else 's'}"


def cost_evidence(cost: dict[str, int]) -> str:
    """A finding's evidence["cost"]: '12.3 MB (receive 10.0 MB, send 0 B, objects 2.3 MB),
    3,000 file descriptors'."""
    parts = [f"{label} {human_bytes(cost[key])}" for key, label in (
        ("receive_bytes", "receive"), ("send_bytes", "send"),
        ("other_buffer_bytes", "reserved"), ("object_bytes", "objects"))
        if cost.get(key)]
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{human_bytes(cost['memory_bytes'])}{detail}, {_fds(cost['fds'])}"
