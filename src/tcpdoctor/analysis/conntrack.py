"""The conntrack table joined with the sockets of every namespace.

Each entry has two ends. The originator's socket sees the original tuple as it sent it
(local = original source); the responder's sees the reply tuple (local = reply source,
after any destination NAT). An end is on this host when its address belongs to one of the
host's namespaces; such an end should have a socket there with that exact 4-tuple. An
entry in an open state one of whose local ends has no socket is a ghost: it holds a slot
of the table (and, behind NAT, a source port) for a connection nobody can use, until its
timeout ends it.

Everything is columnar: an exact join of packed (namespace, 4-tuple) records, sorted and
searched, with no object per entry or socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tcpdoctor.model.addresses import format_addr, format_endpoint
from tcpdoctor.model.columns import group_rows
from tcpdoctor.model.conntrack import (
    CT_STATE_CODES,
    CT_STATE_NAMES,
    IPS_SRC_NAT,
    OPEN_STATES,
    SOCKET_KEYS,
    ConntrackTable,
)
from tcpdoctor.model.tcp import TCP_LISTEN

# Without an explicit range, NAT keeps ports >= 1024 in 1024-65535 (KERNEL.md, nf_nat).
DEFAULT_NAT_RANGE = (1024, 65535)
# What a join reads of a socket table: the 4-tuple, the state, and the owner if known.
JOIN_COLUMNS = frozenset({*SOCKET_KEYS, "pid"})
_RECORD = np.dtype([("space", ">i4"), ("lhi", ">u8"), ("llo", ">u8"), ("rhi", ">u8"),
                    ("rlo", ">u8"), ("lport", ">u2"), ("rport", ">u2")])


@dataclass
class Places:
    """Which namespace each address belongs to: sorted 128-bit addresses (two halves) and
    the namespace index of each; an address of several namespaces (127.0.0.1) maps to the
    table's own namespace where it is one of its, else to none."""

    hi: np.ndarray
    lo: np.ndarray
    space: np.ndarray

    @classmethod
    def build(cls, addresses: list[list[int]], own: int) -> Places:
        owner: dict[int, int] = {}
        for i, addrs in enumerate(addresses):
            for a in addrs:
                if a in owner and owner[a] != i:
                    owner[a] = own if a in addresses[own] else -1
                else:
                    owner[a] = i
        keys = sorted(owner)
        return cls(np.array([k >> 64 for k in keys], np.uint64),
                   np.array([k & ((1 << 64) - 1) for k in keys], np.uint64),
                   np.array([owner[k] for k in keys], np.int32))

    def of(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The namespace of each address, -1 where none (or several) has it."""
        if self.hi.shape[0] == 0:
            return np.full(hi.shape[0], -1, np.int32)
        rec = _pack2(self.hi, self.lo)
        at = np.searchsorted(rec, _pack2(hi, lo))
        at = np.minimum(at, rec.shape[0] - 1)
        hit = (self.hi[at] == hi) & (self.lo[at] == lo)
        return np.where(hit, self.space[at], -1).astype(np.int32)


def _void(dtype: np.dtype[Any], cols: tuple[np.ndarray, ...]) -> np.ndarray:
    """Columns packed as big-endian records viewed as opaque bytes: sorted and searched
    bytewise, they compare in the columns' lexical order (an exact multi-column join)."""
    rec = np.zeros(cols[0].shape[0], dtype)
    for name, col in zip(dtype.names or (), cols, strict=True):
        rec[name] = col
    return rec.view(f"V{dtype.itemsize}")


_ADDRESS = np.dtype([("h", ">u8"), ("l", ">u8")])


def _pack2(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return _void(_ADDRESS, (hi, lo))


def _records(*cols: np.ndarray) -> np.ndarray:
    """(namespace, local address, remote address, local port, remote port) records."""
    return _void(_RECORD, cols)


def _socket_of(sockets: np.ndarray, order: np.ndarray, space: np.ndarray, lhi: np.ndarray,
               llo: np.ndarray, rhi: np.ndarray, rlo: np.ndarray, lport: np.ndarray,
               rport: np.ndarray) -> np.ndarray:
    """The row (in the caller's socket table) of each entry end's socket, -1 where none:
    sockets are the packed records sorted, order their rows."""
    if sockets.shape[0] == 0:
        return np.full(space.shape[0], -1, np.int64)
    want = _records(space, lhi, llo, rhi, rlo, lport, rport)
    at = np.minimum(np.searchsorted(sockets, want), sockets.shape[0] - 1)
    return np.where((sockets[at] == want) & (space >= 0), order[at], -1)


@dataclass
class Joined:
    """Per entry: each end's namespace (-1: not on this host) and whether its socket
    exists; ghosts; and the table and namespaces they came from."""

    table: ConntrackTable
    spaces: list[dict[str, Any]]
    origin: np.ndarray
    responder: np.ndarray
    origin_socket: np.ndarray
    responder_socket: np.ndarray
    ghost: np.ndarray
    # The pid owning the originator's socket (-1: none, or owners not read), and names.
    origin_pid: np.ndarray | None = None
    process_names: dict[int, str] | None = None


def join(table: ConntrackTable, spaces: list[dict[str, Any]], addresses: list[list[int]],
         own: int, sockets: dict[str, np.ndarray],
         process_names: dict[int, str] | None = None) -> Joined:
    """Join the table (read in spaces[own]) with the sockets of every namespace
    (columns with a netns_id indexing spaces; with a pid column, the originators' owners)."""
    c = table.columns
    places = Places.build(addresses, own)
    origin = places.of(c["orig_src_hi"], c["orig_src_lo"])
    responder = places.of(c["reply_src_hi"], c["reply_src_lo"])
    if not all(k in sockets for k in SOCKET_KEYS):  # a listing without addresses: no socket known
        sockets = {k: np.zeros(0, np.uint64) for k in SOCKET_KEYS}
    live = sockets["state"] != TCP_LISTEN
    rows = np.flatnonzero(live)
    space = sockets["netns_id"][rows].astype(np.int32) if "netns_id" in sockets \
        else np.full(rows.shape[0], own, np.int32)
    packed = _records(space, sockets["laddr_hi"][rows], sockets["laddr_lo"][rows],
                      sockets["raddr_hi"][rows], sockets["raddr_lo"][rows],
                      sockets["sport"][rows], sockets["dport"][rows])
    order = np.argsort(packed, kind="stable")
    have, order = packed[order], rows[order]
    at_origin = _socket_of(have, order, origin, c["orig_src_hi"], c["orig_src_lo"],
                           c["orig_dst_hi"], c["orig_dst_lo"], c["orig_sport"],
                           c["orig_dport"])
    at_responder = _socket_of(have, order, responder, c["reply_src_hi"], c["reply_src_lo"],
                              c["reply_dst_hi"], c["reply_dst_lo"], c["reply_sport"],
                              c["reply_dport"])
    origin_socket, responder_socket = at_origin >= 0, at_responder >= 0
    open_state = np.isin(c["ct_state"], [CT_STATE_CODES[s] for s in OPEN_STATES])
    ghost = open_state & (((origin >= 0) & ~origin_socket)
                          | ((responder >= 0) & ~responder_socket))
    pid = None
    if "pid" in sockets:  # no socket at all (a gateway's namespace): every owner unknown
        pid = (np.where(origin_socket, sockets["pid"][np.maximum(at_origin, 0)], -1)
               if sockets["pid"].shape[0] else np.full(len(table), -1, np.int32))
    return Joined(table, spaces, origin, responder, origin_socket, responder_socket, ghost,
                  pid, process_names)


def space_label(spaces: list[dict[str, Any]], i: int) -> str:
    return str(spaces[i].get("pod") or spaces[i]["netns"]) if i >= 0 else "elsewhere"


def by_state(states: np.ndarray) -> dict[str, int]:
    counts = np.bincount(states, minlength=len(CT_STATE_NAMES))
    return {n: int(counts[i]) for i, n in enumerate(CT_STATE_NAMES) if counts[i]}


def by_space(j: Joined, mask: np.ndarray | None = None, limit: int = 10
             ) -> list[dict[str, Any]]:
    """Entries per originating namespace (pod), most first, with their states."""
    sel = np.ones(j.origin.shape[0], bool) if mask is None else mask
    where = j.origin[sel]
    states = j.table.columns["ct_state"][sel]
    keys, counts = np.unique(where, return_counts=True)
    out = []
    for i in np.argsort(-counts, kind="stable")[:limit]:
        k = int(keys[i])
        out.append({"namespace": space_label(j.spaces, k),
                    "pod": j.spaces[k].get("pod") if k >= 0 else None,
                    "entries": int(counts[i]), "states": by_state(states[where == k])})
    return out


def tuple_text(c: dict[str, np.ndarray], i: int) -> str:
    """An entry's original tuple, as its originator's socket saw it."""
    src = format_endpoint(c["orig_src_hi"][i], c["orig_src_lo"][i], int(c["orig_sport"][i]))
    dst = format_endpoint(c["orig_dst_hi"][i], c["orig_dst_lo"][i], int(c["orig_dport"][i]))
    return f"{src} -> {dst}"


def entry_row(j: Joined, i: int) -> dict[str, Any]:
    """One entry for people and reports: its tuple, state, where its lost end lives."""
    c = j.table.columns
    lost_origin = j.origin[i] >= 0 and not j.origin_socket[i]
    return {"state": CT_STATE_NAMES[int(c["ct_state"][i])], "original": tuple_text(c, i),
            "namespace": space_label(j.spaces, int(j.origin[i] if j.origin[i] >= 0
                                                   else j.responder[i])),
            "side": "originator" if lost_origin else "responder",
            "timeout_seconds": int(c["timeout"][i]), "id": int(c["id"][i]),
            "zone": int(c["zone"][i])}


def ghosts(j: Joined, limit: int = 20) -> dict[str, Any]:
    """The ghost entries: how many, per namespace and state, the longest-lived first."""
    c = j.table.columns
    g = np.flatnonzero(j.ghost)
    order = g[np.argsort(-c["timeout"][g].astype(np.int64), kind="stable")][:limit]
    return {"count": int(g.shape[0]), "by_state": by_state(c["ct_state"][g]),
            "by_namespace": by_space(j, j.ghost),
            "entries": [entry_row(j, int(i)) for i in order]}


def snat_usage(table: ConntrackTable, ranges: dict[int, tuple[int, int]] | None = None,
               limit: int = 10) -> list[dict[str, Any]]:
    """Source-NATed entries per (translated source, destination): the ports in use against
    the ports the NAT range offers (ranges: per translated address, else the default)."""
    c = table.columns
    m = (c["status"] & IPS_SRC_NAT) != 0
    if not m.any():
        return []
    first, _, counts = group_rows([c["reply_dst_hi"][m], c["reply_dst_lo"][m],
                                   c["reply_src_hi"][m], c["reply_src_lo"][m],
                                   c["reply_sport"][m]])
    rows = np.flatnonzero(m)[first]
    out = []
    for i in np.argsort(-counts, kind="stable")[:limit]:
        r = int(rows[i])
        src = (int(c["reply_dst_hi"][r]) << 64) | int(c["reply_dst_lo"][r])
        known = ranges or {}
        rng = known.get(src, known.get(-1))  # -1: a masquerade rule's, any address
        low, high = rng or DEFAULT_NAT_RANGE
        out.append({"translated_source": format_addr(c["reply_dst_hi"][r], c["reply_dst_lo"][r]),
                    "destination": format_endpoint(c["reply_src_hi"][r], c["reply_src_lo"][r],
                                                   int(c["reply_sport"][r])),
                    "ports_used": int(counts[i]), "ports_available": high - low + 1,
                    "range": f"{low}-{high}", "range_known": rng is not None})
    return out


# --by keys: what each groups entries by (the originator's view of the connection).
BY_KEYS = ("state", "namespace", "pod", "process", "destination", "source",
           "translated-source")


def parse_by(text: str) -> list[str]:
    from tcpdoctor.analysis.groups import parse_by as parse_keys

    return parse_keys(text, BY_KEYS)


def _key_columns(j: Joined, key: str) -> list[np.ndarray]:
    c = j.table.columns
    if key == "state":
        return [c["ct_state"]]
    # As unsigned, -1 (elsewhere, no owner) groups after every namespace and pid.
    if key in ("namespace", "pod"):
        return [j.origin.astype(np.int64).astype(np.uint64)]
    if key == "process":
        pid = j.origin_pid if j.origin_pid is not None else np.full(len(j.table), -1)
        return [pid.astype(np.int64).astype(np.uint64)]
    if key == "destination":
        return [c["orig_dst_hi"], c["orig_dst_lo"], c["orig_dport"]]
    if key == "source":
        return [c["orig_src_hi"], c["orig_src_lo"]]
    return [c["reply_dst_hi"], c["reply_dst_lo"]]  # translated-source


def _key_text(j: Joined, key: str, row: int) -> str:
    c = j.table.columns
    if key == "state":
        return CT_STATE_NAMES[int(c["ct_state"][row])]
    if key in ("namespace", "pod"):
        return space_label(j.spaces, int(j.origin[row]))
    if key == "process":
        pid = int(j.origin_pid[row]) if j.origin_pid is not None else -1
        return f"{(j.process_names or {}).get(pid, '?')} ({pid})" if pid >= 0 else "-"
    if key == "destination":
        return format_endpoint(c["orig_dst_hi"][row], c["orig_dst_lo"][row],
                               int(c["orig_dport"][row]))
    if key == "source":
        return format_addr(c["orig_src_hi"][row], c["orig_src_lo"][row])
    return format_addr(c["reply_dst_hi"][row], c["reply_dst_lo"][row])


def group(j: Joined, keys: list[str], limit: int = 10) -> list[dict[str, Any]]:
    """The largest groups of entries by the keys, with their ghosts."""
    if j.origin.shape[0] == 0:
        return []
    first, inverse, counts = group_rows([col for k in keys for col in _key_columns(j, k)])
    ghost = np.bincount(inverse, j.ghost.astype(np.int64), counts.shape[0])
    order = np.argsort(-counts, kind="stable")[:limit]
    return [{**{k: _key_text(j, k, int(first[i])) for k in keys},
             "entries": int(counts[i]), "ghosts": int(ghost[i])} for i in order]


def report(j: Joined, keys: list[str] | None, limit: int, kernel: dict[str, int | None],
           ranges: dict[int, tuple[int, int]] | None = None) -> dict[str, Any]:
    """One table's section of `conntrack --json` (and of check's conntrack evidence)."""
    t = j.table
    return {
        "netns": t.netns, "source": t.source, "entries": len(t),
        "other_entries": t.other_entries, "states": by_state(t.columns["ct_state"]),
        "count": kernel.get("count"), "max": kernel.get("max"),
        "by_namespace": by_space(j, limit=limit),
        "ghosts": ghosts(j, limit),
        "snat": snat_usage(t, ranges, limit),
        "groups": group(j, keys, limit) if keys else [],
        "notes": [str(n) for n in t.notes],
    }


def summary(j: Joined, ranges: dict[int, tuple[int, int]] | None = None,
            limit: int = 10) -> dict[str, Any]:
    """The table in a report (check --json, the exporter): sizes, who fills it, ghosts."""
    return {"table": j.table.netns, "source": j.table.source, "entries": len(j.table),
            "states": by_state(j.table.columns["ct_state"]),
            "by_namespace": by_space(j, limit=limit),
            "by_destination": group(j, ["destination"], limit),
            "ghosts": int(np.count_nonzero(j.ghost)),
            "snat": snat_usage(j.table, ranges, limit)}
