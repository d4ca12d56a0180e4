"""`relieve --conntrack-ghosts`: delete exactly the ghost entries of one namespace's table.

The plan comes from a fresh read of the table joined with every namespace's sockets
(analysis.conntrack): only open entries whose local socket is gone. Each is deleted by
its original tuple and its entry id, so an entry that replaced it (the same tuple, a new
connection) is never touched: the kernel refuses a delete whose id differs.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcpdoctor.analysis import conntrack as ct
from tcpdoctor.model.addresses import parse_addr, prefix_masks
from tcpdoctor.model.conntrack import ConntrackTable
from tcpdoctor.relief.act import paced, write_rows
from tcpdoctor.sources import netns
from tcpdoctor.sources.conntrack import dump
from tcpdoctor.sources.conntrack.gather import gather
from tcpdoctor.sources.target import Target


@dataclass
class GhostPlan:
    table: ConntrackTable
    joined: ct.Joined
    rows: np.ndarray  # the entries to delete (indices into the table)
    beyond_limit: int


def make_plan(target: Target, spec: str | None, limit: int, ports: tuple[int, ...],
              remotes: tuple[str, ...]) -> tuple[GhostPlan, list[str]]:
    got = gather(target, spec)
    space, table = got.tables[0]
    j = ct.join(table, got.spaces, got.addresses, space, got.sockets.columns,
                got.sockets.process_names)
    c = table.columns
    pick = j.ghost.copy()
    if ports:
        pick &= np.isin(c["orig_dport"], ports) | np.isin(c["orig_sport"], ports)
    if remotes:
        inside = np.zeros(len(table), bool)
        for text in remotes:
            hi, lo, bits = parse_addr(text)
            mhi, mlo = prefix_masks(bits)
            inside |= (((c["orig_dst_hi"] & mhi) == (np.uint64(hi) & mhi))
                       & ((c["orig_dst_lo"] & mlo) == (np.uint64(lo) & mlo)))
        pick &= inside
    rows = np.flatnonzero(pick)
    return GhostPlan(table, j, rows[:limit], max(0, rows.shape[0] - limit)), \
        [str(n) for n in got.notes]


def entry_rows(plan: GhostPlan) -> list[dict[str, Any]]:
    return [ct.entry_row(plan.joined, i) for i in plan.rows.tolist()]


def plan_json(plan: GhostPlan, examples: int = 20) -> dict[str, Any]:
    c = plan.table.columns
    mask = np.zeros(len(plan.table), bool)
    mask[plan.rows] = True
    return {"netns": plan.table.netns, "conntrack_ghosts": True,
            "entries": int(plan.rows.shape[0]),
            "by_state": ct.by_state(c["ct_state"][plan.rows]),
            "by_namespace": ct.by_space(plan.joined, mask),
            "examples": [ct.entry_row(plan.joined, i) for i in plan.rows[:examples].tolist()],
            "beyond_limit": plan.beyond_limit, "table_entries": len(plan.table)}


def write_report(plan: GhostPlan, path: str, meta: dict[str, Any]) -> None:
    write_rows(path, meta, "entries", entry_rows(plan))


def carry_out(plan: GhostPlan, target: Target, rate: float) -> np.ndarray:
    """Delete the plan's entries in the table's namespace, at most `rate` a second; one
    errno per entry (0 deleted). The first batch waits one tick after the report."""
    return netns.run_in(target.netns, lambda: _delete_here(plan, rate))


def _delete_here(plan: GhostPlan, rate: float) -> np.ndarray:
    c = plan.table.columns
    out = np.full(plan.rows.shape[0], -1, np.int32)
    with dump.open_socket() as sock:
        for batch in paced(plan.rows.shape[0], rate):
            for k in batch:
                i = int(plan.rows[k])
                try:
                    out[k] = dump.delete_entry(
                        sock, (int(c["orig_src_hi"][i]), int(c["orig_src_lo"][i])),
                        (int(c["orig_dst_hi"][i]), int(c["orig_dst_lo"][i])),
                        int(c["orig_sport"][i]), int(c["orig_dport"][i]), int(c["zone"][i]),
                        int(c["id"][i]), k + 1)
                except OSError as exc:
                    out[k] = exc.errno or errno.EIO
    return out


def still_there(plan: GhostPlan, target: Target) -> int:
    """Planned entries the table still holds (same tuple and id) after the deletes."""
    from tcpdoctor.sources.conntrack import read

    def keys(c: dict[str, np.ndarray], rows: np.ndarray | slice) -> np.ndarray:
        return (c["id"][rows].astype(np.uint64) << np.uint64(16)) | c["orig_sport"][rows]

    now = read(target.netns).columns
    return int(np.count_nonzero(np.isin(keys(plan.table.columns, plan.rows),
                                        keys(now, slice(None)))))
