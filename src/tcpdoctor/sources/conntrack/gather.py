"""What the conntrack view needs from a live host: the tables of the namespaces asked for,
and, from every namespace, its addresses and sockets (an entry's ends live anywhere)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import BASE_COLUMNS
from tcpdoctor.model.conntrack import ConntrackTable
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.sources import every_netns, namespaces
from tcpdoctor.sources.conntrack import natrange
from tcpdoctor.sources.ifaddrs import read_addresses
from tcpdoctor.sources.target import Target


@dataclass
class Gathered:
    spaces: list[dict[str, Any]]  # every namespace (as_json), the host first
    addresses: list[list[int]]  # each namespace's addresses
    sockets: Snapshot  # every namespace's sockets, netns_id indexing spaces
    tables: list[tuple[int, ConntrackTable]]  # (namespace index, its table)
    ranges: dict[int, dict[int, tuple[int, int]]]  # namespace index -> NAT port ranges
    limits: dict[int, dict[str, int | None]]  # namespace index -> count, max, timeouts
    notes: list[str] = field(default_factory=list)


def _current(spaces: list[namespaces.Netns]) -> int:
    """The namespace tcpdoctor runs in (`ip netns exec` or a container), else the host."""
    try:
        mine = os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0
    return next((i for i, ns in enumerate(spaces) if ns.inode == mine), 0)


def gather(target: Target, spec: str | None) -> Gathered:
    """spec: --netns (a name, pod:..., all), None for the namespace tcpdoctor runs in."""
    found = every_netns.discover(target)
    spaces = found.namespaces
    chosen = ([_current(spaces)] if spec is None else
              [spaces.index(ns) for ns in namespaces.select(found, spec)])
    got = read_tables(target, spaces, chosen, strict=spec != "all")
    want = frozenset(BASE_COLUMNS)
    swept = every_netns.sample_all(Target(source=target.source, owners=target.owners,
                                          proc_root=target.proc_root),
                                   spaces, 0.0, info=False, want=want, kernel=False)
    where = [ns.as_json() for ns in spaces]
    sockets = every_netns.combine(where, swept.samples, swept.notes)
    got.spaces, got.addresses, got.sockets = where, addresses_of(spaces), sockets
    got.notes[:0] = found.notes
    return got


Table = tuple[ConntrackTable, dict[int, tuple[int, int]], dict[str, int | None]]


def _table_here(proc_root: str) -> Table:
    """The calling thread's namespace's table, NAT port ranges and limits."""
    from tcpdoctor.sources.conntrack import read_here

    return read_here(proc_root), natrange.read_ranges(), read_limits(proc_root)


def read_one(target: Target) -> tuple[Table, list[int]]:
    """The table (with ranges and limits) and the addresses of the target's namespace."""
    from tcpdoctor.sources import netns

    return netns.run_in(target.netns, lambda: (_table_here(target.proc_root),
                                               read_addresses()))


def addresses_of(spaces: list[namespaces.Netns]) -> list[list[int]]:
    """Each namespace's addresses (none for one that could not be entered)."""
    found = every_netns.in_each(spaces, lambda ns: read_addresses())
    return [a if isinstance(a, list) else [] for a in found]


def read_tables(target: Target, spaces: list[namespaces.Netns], chosen: list[int],
                strict: bool = True) -> Gathered:
    """The tables (with NAT ranges and limits) of spaces[chosen]; strict: a table that
    cannot be read is an error (else a note). Sockets and addresses are left empty."""
    from tcpdoctor.sources.conntrack import ConntrackUnavailable

    got = every_netns.in_each([spaces[i] for i in chosen],
                              lambda ns: _table_here(target.proc_root))
    out = Gathered([], [], Snapshot({}, "none"), [], {}, {})
    for i, result in zip(chosen, got, strict=True):
        if isinstance(result, ConntrackUnavailable) and strict:
            raise result
        if isinstance(result, BaseException):
            out.notes.append(Msg("{netns}: {error}", netns=spaces[i].label, error=result))
            continue
        table, out.ranges[i], out.limits[i] = result
        table.netns = spaces[i].label
        out.tables.append((i, table))
    return out


# The table's size and the timeouts that keep open entries (net.netfilter.*).
LIMITS = {"count": "nf_conntrack_count", "max": "nf_conntrack_max",
          "timeout_established": "nf_conntrack_tcp_timeout_established",
          "timeout_close_wait": "nf_conntrack_tcp_timeout_close_wait",
          "timeout_fin_wait": "nf_conntrack_tcp_timeout_fin_wait",
          "timeout_syn_sent": "nf_conntrack_tcp_timeout_syn_sent"}


def read_limits(proc_root: str) -> dict[str, int | None]:
    from tcpdoctor.sources import kstate

    got = kstate.read_sysctls(proc_root, tuple(f"net.netfilter.{k}" for k in LIMITS.values()))
    out: dict[str, int | None] = {}
    for name, key in LIMITS.items():
        text = got.get(f"net.netfilter.{key}")
        out[name] = int(text) if text is not None and text.isascii() and text.isdigit() \
            else None
    return out
