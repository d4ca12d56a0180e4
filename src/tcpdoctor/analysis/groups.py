"""Group-by over snapshot columns: one np.unique over the key columns, one bincount for states."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.analysis.cost import SocketCost
from tcpdoctor.analysis.dimensions import GROUP_KEYS, HISTORY_DIMENSIONS, WATCH_DIMENSIONS
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import format_addr, is_v4, parse_addr, prefix_masks
from tcpdoctor.model.columns import among_ports, factorize
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import NUM_STATES, STATE_NAMES, parse_state_option

# Re-exported: the names live in a numpy-free module that option parsers can import.
__all__ = ["GROUP_KEYS", "HISTORY_DIMENSIONS", "WATCH_DIMENSIONS"]


@dataclass
class Grouping:
    by: list[str]
    groups: list[dict[str, Any]]
    other: int
    total: int
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"schema": 1, "by": self.by, "groups": self.groups, "other": self.other}


def parse_by(text: str, choices: tuple[str, ...] = GROUP_KEYS) -> list[str]:
    """--by KEYS: the keys in order, each once; an unknown one is an error naming the
    choices (top's groupings by default, conntrack's its own)."""
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in choices]
    if bad or not keys:
        raise TcpDoctorError(Msg("--by: unknown grouping {unknown!r} (choose from "
                                 "{choices})", unknown=', '.join(bad) or text,
                                 choices=', '.join(choices)))
    return list(dict.fromkeys(keys))


def key_columns(snap: Snapshot, key: str, prefix4: int, prefix6: int) -> list[np.ndarray]:
    c = snap.columns
    if key == "remote-ip":
        return [c["raddr_hi"], c["raddr_lo"]]
    if key == "remote-net":
        v4 = is_v4(c["raddr_hi"], c["raddr_lo"])
        hi4, lo4 = prefix_masks(96 + prefix4)
        hi6, lo6 = prefix_masks(prefix6)
        return [c["raddr_hi"] & np.where(v4, hi4, hi6), c["raddr_lo"] & np.where(v4, lo4, lo6)]
    if key == "local-port":
        return [c["sport"]]
    if key == "remote-port":
        return [c["dport"]]
    if key == "service-port":
        # The local port when it is one of this host's listeners, else the remote port: client
        # sockets then group by the service they call, not by their ephemeral port.
        return [np.where(among_ports(c["sport"], snap.listening_ports()), c["sport"], c["dport"])]
    if key == "process":
        if "pid" not in c:
            raise TcpDoctorError(Msg("--by process needs owner lookup (drop --no-processes)"))
        return [c["pid"]]
    if key in ("netns", "pod"):
        ids = c.get("netns_id", np.zeros(len(snap), np.uint16))
        if key == "pod":  # namespaces of one pod share an index (the first one's)
            first: dict[Any, int] = {}
            for i, sp in enumerate(_spaces(snap)):
                first.setdefault(sp.get("pod"), i)
            ids = np.array([first[sp.get("pod")] for sp in _spaces(snap)], np.uint16)[ids]
        return [ids]
    return [c["state"]]


def _spaces(snap: Snapshot) -> list[dict[str, Any]]:
    """The namespaces of a snapshot: its sweep's, or its own one."""
    return snap.spaces or [{"netns": snap.netns or "host", "pod": None, "container": None}]


def _format_key(snap: Snapshot, key: str, values: list[Any], prefix4: int,
                prefix6: int) -> dict[str, Any]:
    if key == "remote-ip":
        return {key: format_addr(values[0], values[1])}
    if key == "remote-net":
        addr = format_addr(values[0], values[1])
        return {key: f"{addr}/{prefix4 if '.' in addr else prefix6}"}
    if key in ("local-port", "remote-port", "service-port"):
        return {key: int(values[0])}
    if key == "process":
        pid = int(values[0])
        return {"process": snap.process_names.get(pid, "?") if pid >= 0 else None,
                "pid": pid if pid >= 0 else None}
    if key in ("netns", "pod"):
        return {key: _spaces(snap)[int(values[0])].get(key)}
    return {key: STATE_NAMES[int(values[0]) - 1]}


def owner_label(name: str | None, pid: int | None) -> str:
    """How every table, diff and view names a socket's owner: 'nginx[1234]', '(no owner)'."""
    return f"{name}[{pid}]" if pid is not None and name is not None else Msg("(no owner)")


def format_key_text(snap: Snapshot, key: str, values: list[Any]) -> str:
    """One group key as a short text: '10.0.0.7', '8080', 'nginx (1234)', 'CLOSE_WAIT'."""
    if key == "process":
        pid = int(values[0])
        return (f"{snap.process_names.get(pid, '?')} ({pid})" if pid >= 0
                else str(Msg("(no owner)")))  # TIME_WAIT and request sockets have none
    return str(next(iter(_format_key(snap, key, values, 24, 64).values())))


def group(snap: Snapshot, by: list[str], limit: int | None = 10, prefix4: int = 24,
          prefix6: int = 64, cost: SocketCost | None = None) -> Grouping:
    """Top groups by count (ties broken by key), each with its per-state breakdown; with
    cost, each group's kernel memory and file descriptors too, largest memory first.
    Rows whose addresses were redacted stay out of address keys (counted as "other")."""
    n = snap.count()
    if snap.redacted and {"remote-ip", "remote-net"} & set(by):
        keep = snap.addressed()
        snap = snap.select(keep)
        cost = None if cost is None else cost.select(keep)
    key_cols = [(k, key_columns(snap, k, prefix4, prefix6)) for k in by]
    flat = [col for _, cols in key_cols for col in cols]
    if len(snap) == 0:
        return Grouping(by, [], 0, 0)
    uniq, inverse, counts = factorize(flat, snap.weights)
    per_state = np.bincount(inverse * NUM_STATES + snap.columns["state"], snap.weights,
                            minlength=uniq[0].shape[0] * NUM_STATES).reshape(-1, NUM_STATES)
    per_state = per_state.astype(np.int64)
    rank = counts
    if cost is not None:
        memory = np.bincount(inverse, (cost.objects + cost.buffers).astype(np.float64),
                             counts.shape[0])
        fds = np.bincount(inverse, cost.fds.astype(np.float64), counts.shape[0])
        rank = memory
    order = np.argsort(-rank, kind="stable")
    if limit is not None:
        order = order[:limit]
    groups: list[dict[str, Any]] = []
    for g in order:
        key: dict[str, Any] = {}
        pos = 0
        for name, cols in key_cols:
            vals = [uniq[pos + j][g] for j in range(len(cols))]
            key.update(_format_key(snap, name, vals, prefix4, prefix6))
            pos += len(cols)
        states = {STATE_NAMES[s - 1]: int(per_state[g, s])
                  for s in range(1, len(STATE_NAMES) + 1) if per_state[g, s]}
        groups.append({"key": key, "count": int(counts[g]), "states": states})
        if cost is not None:
            groups[-1].update(memory_bytes=int(memory[g]), fds=int(fds[g]))
    shown = sum(gr["count"] for gr in groups)
    return Grouping(by, groups, n - shown, n)


def filter_mask(snap: Snapshot, states: list[str] | None = None, ports: list[int] | None = None,
                ips: list[str] | None = None, pids: list[int] | None = None) -> np.ndarray:
    """Which sockets pass the --state/--port/--ip/--pid filters (each one an OR of its values)."""
    c = snap.columns
    mask = np.ones(len(snap), dtype=bool)
    if states:
        wanted = np.zeros(NUM_STATES, dtype=bool)
        wanted[parse_state_option(states, groups=True)] = True
        mask &= wanted[c["state"]]
    if ports:
        mask &= np.isin(c["sport"], ports) | np.isin(c["dport"], ports)
    if ips:
        hit = np.zeros(len(snap), dtype=bool)
        for text in ips:
            try:
                hi, lo, prefix = parse_addr(text)
            except ValueError:
                raise TcpDoctorError(Msg("--ip: {text!r} is not an IP address or network",
                                         text=text)) from None
            mhi, mlo = prefix_masks(prefix)
            hit |= (((c["raddr_hi"] & mhi) == np.uint64(hi))
                    & ((c["raddr_lo"] & mlo) == np.uint64(lo)))
        mask &= hit
    if pids:
        if "pid" not in c:
            raise TcpDoctorError(Msg("--pid needs owner lookup (drop --no-processes)"))
        mask &= np.isin(c["pid"], pids)
    return mask


def space_summaries(snap: Snapshot) -> list[dict[str, Any]]:
    """Per namespace of a swept snapshot: its names and state counts, the largest first."""
    ids = snap.columns.get("netns_id", np.zeros(len(snap), np.uint16)).astype(np.int64)
    spaces = _spaces(snap)
    counts = np.bincount(ids * NUM_STATES + snap.columns["state"], snap.weights,
                         minlength=len(spaces) * NUM_STATES).reshape(-1, NUM_STATES)
    out = []
    for i, sp in enumerate(spaces):
        states = {name: int(counts[i, s + 1]) for s, name in enumerate(STATE_NAMES)}
        total = sum(states.values())
        out.append({**sp, "total": total, "established": states["ESTABLISHED"],
                    "non_established": total - states["ESTABLISHED"], "states": states})
    return sorted(out, key=lambda s: (-s["total"], str(s["netns"])))
