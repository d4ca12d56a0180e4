"""Connection lifecycles from traced events: each socket followed by its kernel address
(skaddr) from its first state change to TCP_CLOSE, in bounded memory, and summed up per
remote service (connections this host opens) and per local service port (connections it
accepts).

Attribution follows where the kernel runs: connect() and close() run in the calling
process, so the CLOSE->SYN_SENT change names the opener and ESTABLISHED->FIN_WAIT1 the
process that closed first; changes made in softirq (the handshake's end, the peer's FIN)
name no process and are not used for attribution.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from tcpdoctor.model.addresses import format_endpoint
from tcpdoctor.model.tcp import (
    STATE_NAMES,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
)
from tcpdoctor.model.trace import RECEIVE_RESET, RETRANSMIT, SEND_RESET, STATE_CHANGE
from tcpdoctor.sources.owners import read_comm
from tcpdoctor.util.text import visible

SAVED_CMDLINES = "/sys/kernel/tracing/saved_cmdlines"  # pid -> comm, as events were recorded
T = TypeVar("T")
# Sockets followed at once (about 400 bytes each with their dict entry: at most ~50 MB);
# beyond, the oldest are dropped and counted. Under a storm whose events are lost, closes
# go missing and the table would otherwise grow without bound. With the reorder buffer
# kept short (ring.py), the tracer's whole RSS stays near 100 MB at most, whatever the rate.
MAX_OPEN = 1 << 17
MAX_KEYS = 10_000  # services and ports summed separately; the rest go to "other"
SAMPLE = 4096  # lifetimes kept per service for the percentiles (a reservoir)

# A followed socket: [start_ns, role, opener_pid, closer, closer_pid, established,
# last_state, last_ns, reset_received, key]
START, ROLE, OPENER, CLOSER, CLOSER_PID, EST, LAST, LAST_NS, RST, KEY = range(10)


class Comms:
    """pid -> command name and network namespace, read once per pid from /proc."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.netns: dict[int, int] = {}

    def name(self, pid: int) -> str:
        if pid <= 0:
            return "?"
        # A process already gone: the tracer's own record of the pid's name.
        return _remember(self.names, pid, lambda: read_comm("/proc", pid)
                         or self._saved().get(pid, "?"))

    def netns_of(self, pid: int) -> int:
        return _remember(self.netns, pid, lambda: _netns_inode(pid))

    @staticmethod
    def _saved() -> dict[int, str]:
        out: dict[int, str] = {}
        with contextlib.suppress(OSError), open(SAVED_CMDLINES) as fh:
            for line in fh:
                pid, _, name = line.strip().partition(" ")
                if pid.isdigit():
                    out[int(pid)] = visible(name)
        return out


def _remember(table: dict[int, T], pid: int, read: Callable[[], T]) -> T:
    """table[pid], read once; the table is emptied when it grows past 65,536 pids."""
    hit = table.get(pid)
    if hit is None:
        if len(table) > 65_536:
            table.clear()
        hit = table[pid] = read()
    return hit


def _netns_inode(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return 0


class Service:
    """What is summed for one remote service or one local port."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.by_comm: Counter[str] = Counter()
        self.closer: Counter[str] = Counter()  # local / remote / reset / aborted
        self.closer_comm: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # refused / timeout
        # Grown as lifetimes arrive (up to SAMPLE): a scan of 10,000 destinations must not
        # cost 10,000 full reservoirs.
        self.lifetimes = np.zeros(0, np.float64)
        self.kept = 0
        self.seen = 0
        self.netns: Counter[int] = Counter()

    def opened_by(self, comm: str, netns: int | None) -> None:
        """One more connection, opened (or, for a local port, served) by this process."""
        self.opened += 1
        self.by_comm[comm] += 1
        if netns is not None:
            self.netns[netns] += 1

    def lifetime(self, ms: float, rng: np.random.Generator) -> None:
        self.seen += 1
        if self.kept < SAMPLE:
            if self.kept == self.lifetimes.shape[0]:
                grown = np.zeros(min(max(16, 2 * self.kept), SAMPLE), np.float64)
                grown[:self.kept] = self.lifetimes
                self.lifetimes = grown
            self.lifetimes[self.kept] = ms
            self.kept += 1
        else:
            j = int(rng.integers(0, self.seen))
            if j < SAMPLE:
                self.lifetimes[j] = ms


class Tracker:
    """Follows sockets across batches of events (in time order)."""

    def __init__(self, comms: Comms | None = None) -> None:
        self.comms = comms or Comms()
        self.open: dict[int, list[Any]] = {}
        self.rng = np.random.default_rng(0)
        self.new_window()

    def new_window(self) -> None:
        """Start the sums afresh (`watch --trace`: one window per sample); the sockets
        being followed are kept, so a connection across two windows counts in the second."""
        self.clients: dict[tuple[int, int, int], Service] = {}
        self.servers: dict[int, Service] = {}
        self.resets_sent: Counter[tuple[str, str]] = Counter()
        self.resets_received: Counter[str] = Counter()
        self.retransmits: Counter[str] = Counter()
        self.state_ns: Counter[int] = Counter()
        self.connects: dict[tuple[int, int, int], Service] = {}  # connect() calls started
        # connect() calls that failed for want of a local port, per (destination, pid)
        self.connect_failures: Counter[tuple[int, int, int, int]] = Counter()
        self.dropped = 0
        self.events = 0
        self.first_ns = 0
        self.last_ns = 0

    def feed(self, cols: dict[str, np.ndarray], reasons: dict[int, str]) -> None:
        n = int(cols["kind"].shape[0])
        if not n:
            return
        self.events += n
        self.first_ns = self.first_ns or int(cols["ts"][0])
        self.last_ns = max(self.last_ns, int(cols["ts"][-1]))
        rows = zip(*(cols[c].tolist() for c in ("kind", "ts", "pid", "skaddr", "old", "new",
                                                  "reason", "sport", "dport", "saddr_hi",
                                                  "saddr_lo", "daddr_hi", "daddr_lo")),
                   strict=True)
        for kind, ts, pid, sk, old, new, reason, sport, dport, shi, slo, dhi, dlo in rows:
            if kind == STATE_CHANGE:
                self._change(ts, pid, sk, old, new, sport, dport, dhi, dlo)
            elif kind == SEND_RESET:
                # By the local end that sent it: the peers' ports are ephemeral.
                self.resets_sent[(reasons.get(reason, str(reason)),
                                  format_endpoint(shi, slo, sport))] += 1
            elif kind == RECEIVE_RESET:
                self.resets_received[format_endpoint(dhi, dlo, dport)] += 1
                rec = self.open.get(sk)
                if rec is not None:
                    rec[RST] = True
            elif kind == RETRANSMIT:
                self.retransmits[format_endpoint(dhi, dlo, dport)] += 1

    def _change(self, ts: int, pid: int, sk: int, old: int, new: int, sport: int,
                dport: int, dhi: int, dlo: int) -> None:
        rec = self.open.get(sk)
        if rec is None:
            if new == TCP_SYN_SENT:
                rec = [ts, "client", pid, "", 0, False, new, ts, False, None]
                self._started((dhi, dlo, dport), pid)
            elif new == TCP_SYN_RECV and old == TCP_LISTEN:
                rec = [ts, "server", 0, "", 0, False, new, ts, False, None]
            else:
                return  # began before the trace (or a listener): not a whole lifecycle
            if len(self.open) >= MAX_OPEN:
                self.open.pop(next(iter(self.open)))
                self.dropped += 1
            self.open[sk] = rec
            return
        self.state_ns[rec[LAST]] += ts - rec[LAST_NS]
        rec[LAST], rec[LAST_NS] = new, ts
        if rec[KEY] is None and sport and dport:
            rec[KEY] = (dhi, dlo, dport) if rec[ROLE] == "client" else sport
        if new == TCP_ESTABLISHED:
            rec[EST] = True
        elif old == TCP_ESTABLISHED and new == TCP_FIN_WAIT1 and not rec[CLOSER]:
            rec[CLOSER], rec[CLOSER_PID] = "local", pid
        elif old == TCP_ESTABLISHED and new == TCP_CLOSE_WAIT and not rec[CLOSER]:
            rec[CLOSER] = "remote"
        elif old == TCP_CLOSE_WAIT and new == TCP_LAST_ACK:
            rec[CLOSER_PID] = pid
        elif new == TCP_CLOSE:
            rec = self.open.pop(sk)
            # Closed before a local port was chosen, in the caller's context: the kernel
            # found no free port towards this destination (connect() gets EADDRNOTAVAIL; no
            # counter records it).
            if (old == TCP_SYN_SENT and sport == 0 and rec[OPENER] > 0
                    and len(self.connect_failures) < MAX_KEYS):
                self.connect_failures[(dhi, dlo, dport, rec[OPENER])] += 1
            self._done(rec, ts, old)

    def _started(self, dest: tuple[int, int, int], pid: int) -> None:
        """A connect() (counted when it starts: one to a dead upstream may never end)."""
        # Look the opener up now: a short-lived client may be gone by the close.
        _service(self.connects, dest, (0, 0, 0)).opened_by(self.comms.name(pid),
                                                           self._netns(pid))

    def _done(self, rec: list[Any], ts: int, old: int) -> None:
        key = rec[KEY]
        if key is None:
            return
        if rec[ROLE] == "client":
            svc, owner = _service(self.clients, key, (0, 0, 0)), rec[OPENER]
        else:
            svc, owner = _service(self.servers, key, 0), rec[CLOSER_PID]
        svc.opened_by(self.comms.name(owner), self._netns(owner))
        if not rec[EST]:
            svc.failed["refused" if rec[RST] else "timeout"] += 1
            return
        svc.closed += 1
        closer = rec[CLOSER] or ("reset" if rec[RST] else "aborted")
        svc.closer[closer] += 1
        if rec[CLOSER_PID] > 0:
            svc.closer_comm[self.comms.name(rec[CLOSER_PID])] += 1
        svc.lifetime((ts - rec[START]) / 1e6, self.rng)


    def _netns(self, pid: int) -> int | None:
        return self.comms.netns_of(pid) if pid > 0 else None


def _service(table: dict[Any, Service], key: Any, other: Any) -> Service:
    """The sums of one service or port; past MAX_KEYS new ones go to `other`."""
    svc = table.get(key)
    if svc is None:
        svc = table.setdefault(key if len(table) < MAX_KEYS else other, Service())
    return svc


def _largest(table: dict[Any, Service], keep: Callable[[Service], bool],
             limit: int) -> list[tuple[Any, Service]]:
    """The services or ports with the most connections (of the namespace kept)."""
    return sorted(((k, s) for k, s in table.items() if keep(s)),
                  key=lambda kv: -kv[1].opened)[:limit]


def percentile(svc: Service, q: float) -> float:
    return float(np.percentile(svc.lifetimes[:svc.kept], q)) if svc.kept else 0.0


def summary(t: Tracker, seconds: float, lost: int, netns: int | None = None,
            limit: int = 10) -> dict[str, Any]:
    """What the trace saw, per remote service and per local port, as plain data."""
    seconds = max(seconds, 1e-3)

    def keep(svc: Service) -> bool:
        return netns is None or netns in svc.netns

    def entry(svc: Service) -> dict[str, Any]:
        return {"opened": svc.opened, "per_second": round(svc.opened / seconds, 1),
                "processes": dict(svc.by_comm.most_common(5)),
                "lifetime_ms": {"p50": round(percentile(svc, 50), 2),
                                "p90": round(percentile(svc, 90), 2),
                                "p99": round(percentile(svc, 99), 2)},
                "closed_first_by": dict(svc.closer), "closers": dict(
                    svc.closer_comm.most_common(5)), "failed": dict(svc.failed)}

    clients = _largest(t.clients, keep, limit)
    servers = _largest(t.servers, keep, limit)
    total_state = sum(t.state_ns.values()) or 1
    return {
        "seconds": round(seconds, 3), "events": t.events, "events_lost": lost,
        "sockets_dropped": t.dropped, "followed_now": len(t.open),
        "remote_services": [{"service": format_endpoint(*k), **entry(s)}
                            for k, s in clients],
        "local_ports": [{"port": k, **entry(s)} for k, s in servers],
        "resets_sent": [{"reason": r, "local": p, "count": n}
                        for (r, p), n in t.resets_sent.most_common(limit)],
        "resets_received": [{"peer": p, "count": n}
                            for p, n in t.resets_received.most_common(limit)],
        "resets_per_second": {"sent": round(sum(t.resets_sent.values()) / seconds, 1),
                              "received": round(sum(t.resets_received.values()) / seconds,
                                                1)},
        "retransmits": [{"peer": p, "count": n} for p, n in t.retransmits.most_common(limit)],
        "connects": _connects(t, seconds, keep, limit),
        "connect_failures": _connect_failures(t, netns, limit),
        "state_time_share": {_name(s): round(ns / total_state, 3)
                             for s, ns in sorted(t.state_ns.items(), key=lambda kv: -kv[1])},
    }



def _connects(t: Tracker, seconds: float, keep: Callable[[Service], bool],
              limit: int) -> list[dict[str, Any]]:
    """connect() calls started per destination, and how many failed (refused or timed
    out) before the trace ended."""
    out = []
    for dest, svc in _largest(t.connects, keep, limit):
        done = t.clients.get(dest)
        failed = dict(done.failed) if done else {}
        out.append({"service": format_endpoint(*dest), "started": svc.opened,
                    "per_second": round(svc.opened / seconds, 1),
                    "processes": dict(svc.by_comm.most_common(5)), "failed": failed,
                    "failed_per_second": round(sum(failed.values()) / seconds, 1)})
    return out


def _connect_failures(t: Tracker, netns: int | None, limit: int) -> list[dict[str, Any]]:
    """connect() calls refused a local port, per destination and process (of the namespace
    kept)."""
    out = []
    for (dhi, dlo, dport, pid), n in t.connect_failures.most_common():
        if netns is not None and t.comms.netns_of(pid) != netns:
            continue
        out.append({"reason": "EADDRNOTAVAIL", "destination": format_endpoint(dhi, dlo, dport),
                    "process": t.comms.name(pid), "pid": pid, "count": n})
        if len(out) == limit:
            break
    return out


def _name(state: int) -> str:
    return STATE_NAMES[state - 1] if 0 < state <= len(STATE_NAMES) else str(state)
