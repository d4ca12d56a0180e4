"""What `relieve` would end, and how: the sockets a finding names (or a filter picks),
minus those a guard refuses, each with its method. Columns throughout, no object per socket.

Methods: GRACEFUL (the owner's descriptor, duplicated, shut down: the peer reads end of
stream, the process keeps running) for sockets a process holds, unless --reset; DESTROY
(SOCK_DESTROY by 4-tuple and cookie: a RST, or TIME_WAIT removed) for ownerless sockets
and with --reset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.analysis.relief import RELIEF_STATES
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import (
    NUM_STATES,
    STATE_NAMES,
    TCP_CLOSING,
    TCP_FIN_WAIT1,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_TIME_WAIT,
)

GRACEFUL, DESTROY = 0, 1
METHODS = ("graceful", "reset")
# Before Linux 6.11 (commit bac76cf89816b) aborting an orphan in these states left it in
# memory with no timer, forever.
ORPHAN_FIX = (6, 11)
ORPHAN_STATES = (TCP_FIN_WAIT1, TCP_LAST_ACK, TCP_CLOSING)
# The columns a plan keeps of each socket (what SOCK_DESTROY and the report need).
KEPT = ("family", "state", "sport", "dport", "laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo",
        "ifindex", "cookie", "inode", "pid")


@dataclass
class Choice:
    """What the user asked to relieve."""

    finding: str | None = None
    states: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    remotes: tuple[str, ...] = ()
    pids: tuple[int, ...] = ()
    processes: tuple[str, ...] = ()
    reset: bool = False
    limit: int = 10_000

    def has_filter(self) -> bool:
        return bool(self.states or self.ports or self.remotes or self.pids or self.processes)


@dataclass
class Plan:
    netns: str | None
    columns: dict[str, np.ndarray]  # the chosen sockets (KEPT, plus "method" and "fd")
    names: dict[int, str]  # pid -> process name
    refused: list[dict[str, Any]] = field(default_factory=list)  # {state, count, reason}
    beyond_limit: int = 0  # matched, left for another run (--max)
    finding: str | None = None

    def __len__(self) -> int:
        return int(self.columns["state"].shape[0])


def kernel_version(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def choose(snap: Snapshot, findings: dict[str, np.ndarray], choice: Choice,
           filter_mask: np.ndarray) -> Plan:
    """The plan for one namespace's snapshot. findings: id -> the sockets each finding of
    a fresh diagnosis names; filter_mask: the --state/--port/--ip/--pid filter's rows."""
    c = snap.columns
    if "cookie" not in c:
        raise TcpDoctorError(Msg("relieve needs the netlink source (each socket's cookie, "
                                 "so that a replaced socket is never ended)"))
    mask = filter_mask.copy()
    if choice.processes:
        mask &= _named(snap, choice.processes)
    refused: list[dict[str, Any]] = []
    if choice.finding is not None:
        mask &= findings.get(choice.finding, np.zeros(len(snap), dtype=bool))
        allowed = np.zeros(NUM_STATES + 1, dtype=bool)
        allowed[list(RELIEF_STATES[choice.finding])] = True
        kept = allowed[c["state"]]
        if (mask & ~kept).any():  # e.g. the live connections of an exhausted destination
            refused.extend(_by_state(c["state"][mask & ~kept], Msg(
                "in use: for {finding} relief ends only {states}", finding=choice.finding,
                states=", ".join(STATE_NAMES[s - 1] for s in RELIEF_STATES[choice.finding]))))
        mask &= kept
    for guard, reason in _guards(snap, choice):
        hit = mask & guard
        if hit.any():
            refused.extend(_by_state(c["state"][hit], reason))
            mask &= ~guard
    rows = np.flatnonzero(mask)
    beyond = max(rows.shape[0] - choice.limit, 0)
    rows = rows[:choice.limit]
    cols = {k: c[k][rows] for k in KEPT if k in c}
    if "pid" not in cols:
        cols["pid"] = np.full(rows.shape[0], -1, dtype=np.int32)
    cols["inbound"] = np.isin(cols["sport"], snap.listening_ports())
    owned = (cols["pid"] >= 0) & (cols["inode"] != 0)
    cols["method"] = np.where(owned & (not choice.reset), GRACEFUL, DESTROY).astype(np.uint8)
    cols["fd"] = np.full(rows.shape[0], -1, dtype=np.int32)
    return Plan(snap.netns, cols, dict(snap.process_names), refused, beyond, choice.finding)


def _named(snap: Snapshot, names: tuple[str, ...]) -> np.ndarray:
    pids = [p for p, n in snap.process_names.items() if n in names]
    return np.isin(snap.columns.get("pid", np.full(len(snap), -1)), pids)


def _guards(snap: Snapshot, choice: Choice) -> list[tuple[np.ndarray, str]]:
    """(sockets, why relief refuses them), in the order they are checked."""
    c = snap.columns
    state = c["state"]
    pid = c.get("pid", np.full(len(snap), -1))
    out: list[tuple[np.ndarray, str]] = [
        (state == TCP_LISTEN,
         Msg("a listener: ending it resets every queued connection, and its server's next "
             "accept() fails while the process keeps running (a silent outage)")),
        (pid == os.getpid(), Msg("tcpdoctor's own socket")),
    ]
    explicit_tw = any(s.replace("_", "-").lower() == "time-wait" for s in choice.states)
    if choice.finding != "EPHEMERAL_PORT_EXHAUSTION" and not explicit_tw:
        out.append((state == TCP_TIME_WAIT,
                    Msg("TIME_WAIT ends by itself within 60 s; it is ended only for port "
                        "exhaustion (EPHEMERAL_PORT_EXHAUSTION, or --state time-wait)")))
    if kernel_version(snap.kernel or os.uname().release) < ORPHAN_FIX:
        out.append((np.isin(state, ORPHAN_STATES) & (c["inode"] == 0),
                    Msg("an orphan in FIN_WAIT1, LAST_ACK or CLOSING: before Linux 6.11 "
                        "ending it leaves it in memory forever (commit bac76cf89816b)")))
    return out


def _by_state(states: np.ndarray, reason: str) -> list[dict[str, Any]]:
    counts = np.bincount(states, minlength=NUM_STATES + 1)
    return [{"state": STATE_NAMES[s - 1], "count": int(counts[s]), "reason": reason}
            for s in np.flatnonzero(counts)]


def groups(plan: Plan) -> list[dict[str, Any]]:
    """The plan by (state, owner, service, method), largest first: what the dry-run table
    shows. A socket on a listening port is grouped by that port (its peers counted), any
    other by the remote address and port it was connected to."""
    from tcpdoctor.model.addresses import format_addr

    c = plan.columns
    if not len(plan):
        return []
    inbound = c["inbound"]
    zero = np.uint64(0)
    keys = np.stack([c["state"].astype(np.uint64),
                     (c["pid"].astype(np.int64) + 1).astype(np.uint64),
                     inbound.astype(np.uint64),
                     np.where(inbound, c["sport"].astype(np.uint64), zero),
                     np.where(inbound, zero, c["raddr_hi"]),
                     np.where(inbound, zero, c["raddr_lo"]),
                     np.where(inbound, zero, c["dport"].astype(np.uint64)),
                     c["method"].astype(np.uint64)])
    uniq, inverse, counts = np.unique(keys, axis=1, return_inverse=True, return_counts=True)
    peers = _distinct_peers(c, inverse.reshape(-1), uniq.shape[1])
    out = []
    for i in np.argsort(-counts, kind="stable"):
        state, pid1, inb, sport, rhi, rlo, dport, method = (int(x) for x in uniq[:, i])
        pid = pid1 - 1
        out.append({"state": STATE_NAMES[state - 1], "count": int(counts[i]),
                    "pid": pid if pid >= 0 else None,
                    "process": plan.names.get(pid) if pid >= 0 else None,
                    "local_port": sport if inb else None,
                    "remote": None if inb else _endpoint(format_addr(rhi, rlo), dport),
                    "peers": int(peers[i]), "method": METHODS[method]})
    return out


def _distinct_peers(c: dict[str, np.ndarray], group: np.ndarray, n: int) -> np.ndarray:
    """Distinct remote addresses per group."""
    pairs = np.unique(np.stack([group.astype(np.uint64), c["raddr_hi"], c["raddr_lo"]]),
                      axis=1)
    return np.bincount(pairs[0].astype(np.int64), minlength=n)


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
