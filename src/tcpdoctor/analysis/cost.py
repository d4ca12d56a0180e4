"""What the sockets cost: kernel memory (slab objects and buffers) and file descriptors, per
state, per owner process and per finding; the host's TCP memory against tcp_mem.

Object bytes are counts times the slab object size this kernel reports (/proc/slabinfo);
buffer bytes are the sums of each socket's skmem (INET_DIAG_SKMEMINFO, `ss -m`). Both are
per-socket numpy columns, built once per report and summed with bincount.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.columns import constant, owner_slots
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import (
    AF_INET6,
    NUM_STATES,
    STATE_NAMES,
    TCP_FIN_WAIT2,
    TCP_SYN_RECV,
    TCP_TIME_WAIT,
)

# sk_forward_alloc is a signed int sent as u32: larger values are transient negatives.
_NEGATIVE = np.uint32(1 << 31)


@dataclass
class SocketCost:
    """Per-socket costs of one snapshot (rows of a reduced snapshot already weighted)."""

    objects: np.ndarray  # bytes of slab objects (socket, and its inode and file if it has one)
    receive: np.ndarray  # bytes of received data not read yet (rmem_alloc)
    send: np.ndarray  # bytes queued for sending (wmem_queued)
    other: np.ndarray  # bytes charged ahead of use and option memory (fwd_alloc + optmem)
    fds: np.ndarray  # file descriptors (sockets that have a file)
    objects_known: bool  # the slab sizes were readable
    buffers_known: bool  # the input carries skmem

    @property
    def buffers(self) -> np.ndarray:
        return self.receive.astype(np.uint64) + self.send + self.other

    def select(self, mask: np.ndarray) -> SocketCost:
        """The costs of the rows in mask (as Snapshot.select takes them)."""
        return SocketCost(self.objects[mask], self.receive[mask], self.send[mask],
                          self.other[mask], self.fds[mask], self.objects_known,
                          self.buffers_known)

    def of(self, mask: np.ndarray | None = None) -> dict[str, int]:
        """The cost of the sockets in mask (all when None), as evidence."""
        def total(col: np.ndarray) -> int:
            return int(col.sum() if mask is None else col[mask].sum())
        out = {"object_bytes": total(self.objects), "receive_bytes": total(self.receive),
               "send_bytes": total(self.send), "other_buffer_bytes": total(self.other),
               "fds": total(self.fds)}
        out["memory_bytes"] = sum(v for k, v in out.items() if k.endswith("_bytes"))
        return out


def socket_cost(snap: Snapshot, kernel: KernelState | None) -> SocketCost:
    c = snap.columns
    n = len(snap)
    weight = snap.weights
    # One socket's figures fit 32 bits (the kernel sends them as u32); weighted rows of a
    # reduced snapshot stand for many sockets and need 64. A million sockets: 17 MB, not 40.
    wide: type[np.unsignedinteger[Any]] = np.uint64 if weight is not None else np.uint32
    slab = kernel.slab if kernel is not None else {}
    objects: np.ndarray = _object_sizes(c, slab).astype(wide)
    fds: np.ndarray = (c["inode"] != 0).astype(np.uint8 if weight is None else np.uint64)
    if slab and "inode" in c:
        per_file = sum(slab.get(k, (0, 0))[0] for k in ("sock_inode_cache", "filp"))
        objects = objects + fds.astype(wide) * wide(per_file)
    has_mem = "has_mem" in c and bool(c["has_mem"].any())
    if has_mem:
        def col(name: str) -> np.ndarray:
            return c[name].astype(wide) if name in c else np.zeros(n, wide)
        receive, send, fwd = col("rmem_alloc"), col("wmem_queued"), col("fwd_alloc")
        other = np.where(fwd >= _NEGATIVE, 0, fwd).astype(wide) + col("optmem")
    else:
        receive = send = other = constant(0, n, wide)
    if weight is not None:
        w = weight.astype(np.uint64)
        objects, receive, send, other, fds = (np.multiply(x, w) for x in (
            objects, receive, send, other, fds))
    return SocketCost(objects, receive, send, other, fds, bool(slab), has_mem)


def _object_sizes(c: dict[str, np.ndarray], slab: dict[str, tuple[int, int]]) -> np.ndarray:
    """Bytes of the slab object each socket is: a full socket, a TIME_WAIT minisocket (also
    FIN_WAIT2 after close, which carries no skmem or file) or a request socket (SYN_RECV)."""
    state = c["state"]
    n = state.shape[0]
    if not slab:
        return np.zeros(n, np.uint32)
    v6 = c["family"] == AF_INET6
    loose = c["has_mem"] == 0 if "has_mem" in c and c["has_mem"].any() else c["inode"] == 0
    mini = (state == TCP_TIME_WAIT) | ((state == TCP_FIN_WAIT2) & loose)
    request = state == TCP_SYN_RECV
    out = np.zeros(n, np.uint32)
    for kind, mask in (("TCP", ~(mini | request)), ("tw_sock_TCP", mini),
                       ("request_sock_TCP", request)):
        for name, fam in ((kind, ~v6), (f"{kind}v6", v6)):
            out[mask & fam] = slab.get(name, (0, 0))[0]
    return out


@dataclass
class Sheet:
    """Each cost summed per (state, owner) group: one bincount per cost over one group key,
    from which the per-state, per-owner and largest-item views are read. (A bincount per
    view and cost, each casting a million small state codes to intp and a million costs to
    float, took three times as long.)"""

    owners: np.ndarray  # -1 (no known owner), then the owners' pids
    group: np.ndarray  # each row's group: state * len(owners) + owner slot
    sums: dict[str, np.ndarray]  # "sockets" and each cost: (NUM_STATES + 1, len(owners))

    def per_state(self, name: str) -> np.ndarray:
        return self.sums[name].sum(axis=1)

    def per_owner(self, name: str) -> np.ndarray:
        return self.sums[name].sum(axis=0)


COSTS = ("objects", "receive", "send", "other", "fds")


def sheet(snap: Snapshot, sc: SocketCost, mask: np.ndarray | None = None) -> Sheet:
    """The sums of the sockets in mask (all when None), grouped by state and owner."""
    c = snap.columns
    def pick(col: np.ndarray) -> np.ndarray:  # no copy of a million rows when all are asked
        return col if mask is None else col[mask]
    rows = len(snap) if mask is None else int(np.count_nonzero(mask))
    pid = pick(c["pid"]) if "pid" in c else constant(-1, rows, np.int32)
    # Owners are few: a small sorted table of them numbers the groups, without sorting
    # every socket.
    owners, slot = owner_slots(pid, snap.process_names) if mask is not None or "pid" not in c \
        else snap.owner_slots()
    state = pick(c["state"]).astype(np.intp)
    # A code no state has (a damaged capture): row 0, counted for its owner, in no state.
    state[(state < 0) | (state > NUM_STATES)] = 0
    group = state * owners.shape[0] + slot
    shape = (NUM_STATES + 1, owners.shape[0])
    weight = None if snap.weights is None else pick(snap.weights)
    sums = {"sockets": np.bincount(group, weight, shape[0] * shape[1]).reshape(shape)}
    for name in COSTS:
        sums[name] = np.bincount(group, pick(getattr(sc, name)),
                                 shape[0] * shape[1]).reshape(shape)
    return Sheet(owners, group, sums)


def by_state(snap: Snapshot, sc: SocketCost, sums: Sheet | None = None,
             ) -> dict[str, dict[str, int]]:
    """Memory and fds per state (states with sockets only)."""
    g = sums or sheet(snap, sc)
    per = {name: g.per_state(name) for name in ("sockets", *COSTS)}
    out = {}
    for i, name in enumerate(STATE_NAMES, 1):
        if per["sockets"][i]:
            row = {"sockets": int(per["sockets"][i]), "object_bytes": int(per["objects"][i]),
                   "buffer_bytes": int(per["receive"][i] + per["send"][i] + per["other"][i]),
                   "fds": int(per["fds"][i])}
            row["memory_bytes"] = row["object_bytes"] + row["buffer_bytes"]
            out[name] = row
    return out


def priced_by_counts(snap: Snapshot, kernel: KernelState | None) -> dict[str, Any]:
    """The census's cost without buffers, from counts: every socket of one (state, family,
    has a file) class costs the same objects, so a bincount of that class prices them all
    without a per-socket column (a million sockets: 2 MB instead of 60)."""
    c = snap.columns
    state = c["state"]
    v6 = (c["family"] == AF_INET6).astype(np.uint8) if "family" in c else 0
    has_file = (c["inode"] != 0).astype(np.uint8) if "inode" in c else 0
    key = state.astype(np.uint8) * np.uint8(4) + v6 * np.uint8(2) + has_file
    weight = None if snap.weights is None else snap.weights.astype(np.float64)
    per_class = np.bincount(key, weight, 4 * (NUM_STATES + 1)).astype(np.int64)
    slab = kernel.slab if kernel is not None else {}
    per_file = sum(slab.get(k, (0, 0))[0] for k in ("sock_inode_cache", "filp"))
    # One row per class, priced by the same code that prices each socket of a full report.
    classes = np.arange(per_class.shape[0])
    size = _object_sizes({"state": (classes // 4).astype(np.uint8),
                          "family": np.where(classes & 2, AF_INET6, 0).astype(np.uint8),
                          "inode": (classes & 1).astype(np.uint32)}, slab)
    rows: dict[str, dict[str, int]] = {}
    for code, name in enumerate(STATE_NAMES, 1):
        row = {"sockets": 0, "object_bytes": 0, "buffer_bytes": 0, "fds": 0}
        for k in range(code * 4, code * 4 + 4):
            n, file = int(per_class[k]), k & 1
            row["sockets"] += n
            row["fds"] += n * file
            row["object_bytes"] += n * (int(size[k]) + (per_file if file else 0))
        if row["sockets"]:
            row["memory_bytes"] = row["object_bytes"]
            rows[name] = row
    total = {"object_bytes": sum(r["object_bytes"] for r in rows.values()), "receive_bytes": 0,
             "send_bytes": 0, "other_buffer_bytes": 0,
             "fds": sum(r["fds"] for r in rows.values())}
    total["memory_bytes"] = total["object_bytes"]
    return {"total": total, "by_state": rows, "objects_priced": bool(slab),
            "buffers_measured": False}


def by_process(snap: Snapshot, sc: SocketCost, limit: int = 10,
               sums: Sheet | None = None) -> list[dict[str, Any]]:
    """The owners whose sockets hold the most memory."""
    if "pid" not in snap.columns:
        return []
    g = sums or sheet(snap, sc)
    mem = (g.per_owner("objects") + g.per_owner("receive") + g.per_owner("send")
           + g.per_owner("other"))
    fds, socks = g.per_owner("fds"), g.per_owner("sockets")
    mem[0] = socks[0] = 0  # slot 0: sockets without a known owner
    order = [i for i in np.argsort(-mem, kind="stable")[:limit] if socks[i] > 0]
    table = g.owners
    return [{"pid": int(table[i]), "name": snap.process_names.get(int(table[i]), "?"),
             "sockets": int(socks[i]), "memory_bytes": int(mem[i]), "fds": int(fds[i])}
            for i in order]


KINDS = (Msg("receive buffers"), Msg("send buffers"), Msg("socket objects"))


def largest(snap: Snapshot, sc: SocketCost, limit: int = 3, mask: np.ndarray | None = None,
            kinds: tuple[str, ...] = KINDS, sums: Sheet | None = None) -> list[dict[str, Any]]:
    """The biggest single items among the sockets in mask: receive or send buffers, or
    objects, of one state and one owner (ownerless sockets, TIME_WAIT say, per state).
    sums: the sheet of those same sockets, where the caller has it."""
    g = sums or sheet(snap, sc, mask)
    width = g.owners.shape[0]
    counts = g.sums["sockets"].ravel()
    columns: dict[str, str] = dict(zip(KINDS, ("receive", "send", "objects"), strict=True))
    items: list[dict[str, Any]] = []
    for what in kinds:
        totals = g.sums[columns[what]].ravel()
        for k in np.argsort(-totals, kind="stable")[:limit]:
            if totals[k] > 0 and k >= width:  # row 0: no known state
                p = int(g.owners[k % width])
                rows = np.flatnonzero(g.group == k)
                if mask is not None:
                    rows = np.flatnonzero(mask)[rows]
                items.append({"what": what, "state": STATE_NAMES[int(k // width) - 1],
                              "sockets": int(counts[k]), "bytes": int(totals[k]), "pid": p,
                              "name": snap.process_names.get(p, "?") if p >= 0 else None,
                              **_where(snap, rows)})
    items.sort(key=lambda it: -it["bytes"])
    return items[:limit]


def _where(snap: Snapshot, rows: np.ndarray) -> dict[str, Any]:
    """The service a group of sockets belongs to: its listening port ("port"), else the
    remote address and port most of them talk to ("remote")."""
    c = snap.columns
    if snap.redacted:
        rows = rows[snap.addressed()[rows]]
        if not rows.size:
            return {}
    ports, counts = np.unique(c["sport"][rows], return_counts=True)
    local = int(ports[np.argmax(counts)])
    if local in set(snap.listening_ports().tolist()):
        return {"port": local}
    # One key per (remote address, port); a rare IPv6 collision only picks another label.
    keys = c["raddr_lo"][rows].astype(np.uint64) ^ (c["dport"][rows].astype(np.uint64) << 48)
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    i = rows[first[np.argmax(counts)]]
    addr = format_addr(c["raddr_hi"][i], c["raddr_lo"][i])
    return {"remote": f"[{addr}]:{c['dport'][i]}" if ":" in addr else f"{addr}:{c['dport'][i]}"}


def host_memory(kernel: KernelState | None) -> dict[str, Any]:
    """The kernel's own accounting: TCP pages against tcp_mem, RAM, TCP slab totals."""
    if kernel is None:
        return {}
    out: dict[str, Any] = {}
    pages = kernel.sockstat.get("TCP", {}).get("mem")
    limits = kernel.sysctl_ints("net.ipv4.tcp_mem")
    if pages is not None:
        out["tcp_mem_bytes"] = pages * kernel.page_size
    if limits and len(limits) == 3:
        out["tcp_mem_limits_bytes"] = [v * kernel.page_size for v in limits]
    if kernel.mem_total:
        out["ram_bytes"] = kernel.mem_total
    if kernel.slab:
        out["slab_bytes"] = {k: size * active for k, (size, active) in kernel.slab.items()}
    return out


def cpu(deltas: dict[str, int] | None, interval: float) -> dict[str, Any] | None:
    """Softirq share of CPU time during the interval (all softirqs: the kernel does not
    split time by kind), its busiest CPU, and the networking softirqs and TCP rates."""
    if not deltas or interval <= 0 or not deltas.get("cpu.total"):
        return None
    per_cpu = [deltas[k] / deltas[k[:-7] + "total"] for k in deltas
               if k.endswith(".softirq") and k != "cpu.softirq"
               and deltas.get(k[:-7] + "total")]
    out = {"softirq_share": round(deltas.get("cpu.softirq", 0) / deltas["cpu.total"], 4),
           "softirq_busiest_cpu_share": round(max(per_cpu, default=0.0), 4)}
    for key, name in (("softirq.NET_RX", "net_rx_per_second"),
                      ("softirq.NET_TX", "net_tx_per_second"),
                      ("Tcp.RetransSegs", "retransmits_per_second"),
                      ("TcpExt.ListenDrops", "listen_drops_per_second")):
        if key in deltas:
            out[name] = round(deltas[key] / interval, 1)
    return out


def human_bytes(n: float) -> str:
    """1,234,567 -> '1.2 MB' (powers of 1024, as free and top show memory)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def item_text(item: dict[str, Any]) -> str:
    """'1.7 GB in receive buffers of 3,000 CLOSE_WAIT sockets of java (pid 4242)'."""
    owner = (Msg(" of {name} (pid {pid})", name=item["name"], pid=item["pid"])
             if item["pid"] >= 0 else "")
    what = Msg("objects") if item["what"] == "socket objects" else item["what"]
    where = (Msg(" on port {port}", port=item["port"]) if "port" in item else
             Msg(" to {remote}", remote=item["remote"]) if "remote" in item else "")
    return Msg("{size} in {what} of {sockets:,} {state} socket{plural}{where}{owner}",
               size=human_bytes(item["bytes"]), what=what, sockets=item["sockets"],
               state=item["state"], plural="s" if item["sockets"] != 1 else "", where=where,
               owner=owner)


def summary(snap: Snapshot, kernel: KernelState | None, sc: SocketCost,
            deltas: dict[str, int] | None, interval: float) -> dict[str, Any]:
    """The cost section of a report (JSON), from which the cost lines are written."""
    sums = sheet(snap, sc)
    return {
        "total": sc.of(), "objects_priced": sc.objects_known,
        "buffers_measured": sc.buffers_known, "by_state": by_state(snap, sc, sums),
        "processes": by_process(snap, sc, sums=sums), "largest": largest(snap, sc, sums=sums),
        "host": host_memory(kernel), "cpu": cpu(deltas, interval),
        # which of these figures are the whole host's, whatever namespace was read
        "host_wide": ["host", "cpu"],
    }
