"""The conntrack table given to the rules of a live diagnosis, where one has entries.

Read only as root and only in namespaces whose nf_conntrack_count is above zero: a host
without conntrack (or an empty table) costs nothing. The table is joined with the sockets
of every namespace the diagnosis read, so a pod's ghost entries in the host's table are
found in the pod.
"""

from __future__ import annotations

import os
from typing import Any

from tcpdoctor.analysis import conntrack as ct
from tcpdoctor.analysis.context import Context
from tcpdoctor.model.conntrack import empty_table
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.sources.live import LiveSample
from tcpdoctor.sources.target import Target


def _has_entries(kernel: KernelState | None) -> bool:
    return kernel is not None and (kernel.conntrack_entries() or 0) > 0


def _empty(ctx: Context | None, kernel: KernelState | None, label: str) -> None:
    """A table that exists and holds nothing (count 0, as root): the rules run on it and
    find nothing, instead of being listed as not checked."""
    if ctx is None or kernel is None or os.geteuid() != 0 or kernel.conntrack_entries() != 0:
        return
    table = empty_table("none", label)
    ctx.conntrack = {"joined": ct.join(table, [{"netns": label}], [[]], 0, {}),
                     "ranges": {}, "limits": {}}


def attach_one(ctx: Context, got: LiveSample, target: Target) -> None:
    """One namespace (check --netns NAME, or without root's sweep)."""
    _empty(ctx, got.kernel, got.snap.netns or "host")
    if os.geteuid() != 0 or not _has_entries(got.kernel):
        return
    from tcpdoctor.sources.conntrack import ConntrackUnavailable
    from tcpdoctor.sources.conntrack.gather import read_one

    try:
        (table, ranges, limits), addresses = read_one(target)
    except (ConntrackUnavailable, OSError) as exc:
        got.snap.notes.append(str(exc))
        return
    table.netns = got.snap.netns or "host"
    joined = ct.join(table, [{"netns": table.netns}], [addresses], 0, got.snap.columns,
                     got.snap.process_names)
    ctx.conntrack = {"joined": joined, "ranges": ranges, "limits": limits}


def attach_all(ctxs: list[Context | None], samples: list[LiveSample | None],
               spaces: list[Any], target: Target) -> None:
    """Every namespace of a sweep: each table with entries, joined with every socket."""
    for i, one in enumerate(samples):
        if one is not None:
            _empty(ctxs[i], one.kernel, spaces[i].label)
    chosen = [i for i, s in enumerate(samples)
              if s is not None and ctxs[i] is not None and _has_entries(s.kernel)]
    if os.geteuid() != 0 or not chosen:
        return
    from tcpdoctor.sources import every_netns
    from tcpdoctor.sources.conntrack.gather import addresses_of, read_tables

    got = read_tables(target, spaces, chosen, strict=False)
    if not got.tables:
        return
    where = [ns.as_json() for ns in spaces]
    sockets = every_netns.combine(where, samples, [], ct.JOIN_COLUMNS)
    addresses = addresses_of(spaces)
    for i, table in got.tables:
        context = ctxs[i]
        assert context is not None
        context.conntrack = {"joined": ct.join(table, where, addresses, i, sockets.columns,
                                               sockets.process_names),
                             "ranges": got.ranges.get(i), "limits": got.limits.get(i, {})}
