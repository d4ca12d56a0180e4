"""What a rule sees (Context) and the helpers rules share to read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.analysis.cost import SocketCost, socket_cost
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.i18n import Msg
from tcpdoctor.model import kernel_state
from tcpdoctor.model.addresses import format_addr, format_endpoint, is_v4, prefix_masks
from tcpdoctor.model.columns import distinct
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot

NOT_IN_INPUT = Msg("not in the input")


@dataclass
class Context:
    """Everything a rule may look at. kernel/deltas are None for inputs that lack them."""

    snap: Snapshot
    kernel: KernelState | None = None
    deltas: dict[str, int] | None = None  # counter increase over the sampling interval
    interval: float = 0.0
    fd_counts: dict[int, int] | None = None
    nofile: Callable[[int], int | None] | None = None
    _cost: SocketCost | None = field(default=None, repr=False)
    # Figures several rules derive from the same sockets, computed once (see service_ports).
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    # What evidence says of a figure the input does not have (a rate of a pasted netstat).
    missing: str = Msg("not measured (--interval 0)")
    # What `check --trace` saw during the sample (sources/tracefs/follow.summary's data).
    trace: dict[str, Any] | None = None
    # A second reading of the table (cookies, timers) `later_seconds` after snap, and the
    # open files per process then: what forecasts measure rates from.
    later: Snapshot | None = None
    later_seconds: float = 0.0
    later_fds: dict[int, int] | None = None
    # Or the reading before this one (watch, record, the exporter): its table, kernel
    # figures and open files, `earlier_seconds` before snap.
    earlier: Snapshot | None = None
    earlier_seconds: float = 0.0
    earlier_kernel: KernelState | None = None
    earlier_fds: dict[int, int] | None = None
    # The namespace's conntrack table joined with the sockets (rules/conntrack.py).
    conntrack: dict[str, Any] | None = None

    def forecasts(self) -> list[Any]:
        """analysis.forecast's forecasts for this context, computed once."""
        if "forecasts" not in self.memo:
            from tcpdoctor.analysis.forecast import forecasts

            self.memo["forecasts"] = forecasts(self)
        found: list[Any] = self.memo["forecasts"]
        return found

    @classmethod
    def saved(cls, snap: Snapshot, kernel: KernelState | None) -> Context:
        """What a saved input offers: rates when it holds two readings of the counters
        (a collect bundle), open files and their limits when it recorded them."""
        if kernel is None:
            return cls(snap, missing=NOT_IN_INPUT)
        deltas, interval = None, 0.0
        if kernel.previous is not None:
            deltas = kernel_state.deltas(kernel.previous, kernel)
            interval = kernel.taken - kernel.previous.taken
        ctx = cls(snap, kernel, deltas, interval, kernel.fd_counts or None,
                  kernel.nofile.get if kernel.fd_counts else None, missing=NOT_IN_INPUT)
        if kernel.conntrack is not None and not snap.counts_only:
            from tcpdoctor.analysis.conntrack import join

            saved = kernel.conntrack
            if "sockets" in saved:  # every namespace of a bundle, the analysed one first
                joined = join(saved["table"], saved["spaces"], saved["all_addresses"], 0,
                              saved["sockets"])
            else:
                joined = join(saved["table"], [{"netns": snap.netns or "host"}],
                              [saved["addresses"]], 0, snap.columns)
            ctx.conntrack = {"joined": joined, "ranges": saved["ranges"], "limits": {}}
        return ctx

    def cost(self) -> SocketCost:
        """What each socket costs (built once, on first use)."""
        if self._cost is None:
            self._cost = socket_cost(self.snap, self.kernel)
        return self._cost

    def sysctl_int(self, key: str) -> int | None:
        return self.kernel.sysctl_int(key) if self.kernel else None

    def delta(self, name: str) -> int:
        return int(self.deltas.get(name, 0)) if self.deltas else 0

    def measured(self, name: str) -> int | str:
        """A counter's rise for evidence: the number, or `missing` when there is no rate
        (never a 0 that was not measured)."""
        return self.delta(name) if self.deltas is not None else self.missing

    def said(self, *names: str) -> str:
        """A counter's rise (or several summed) as a sentence says it: "1,234", or why it
        was not measured; never a 0 that was not measured."""
        if self.deltas is None:
            return str(self.missing)
        return f"{sum(self.delta(n) for n in names):,}"

    def count(self, mask: np.ndarray) -> int:
        """Sockets in mask (rows of a reduced snapshot stand for several)."""
        return self.snap.count(mask)

    def top(self, column: str, mask: np.ndarray, limit: int = 5) -> list[tuple[Any, int]]:
        """Most common values of a column among the sockets in mask."""
        w = self.snap.weights
        return top_counts(self.snap.columns[column][mask], limit,
                          None if w is None else w[mask])

    def processes(self, mask: np.ndarray, limit: int = 5) -> list[dict[str, Any]]:
        """Owners of the sockets in mask, most sockets first."""
        if "pid" not in self.snap.columns:
            return []
        w = self.snap.weights
        table, slot = self.snap.owner_slots()
        slot = slot[mask]
        counts = np.bincount(slot, None if w is None else w[mask], table.shape[0])
        counts[0] = 0  # unknown owners
        order = [i for i in np.argsort(-counts, kind="stable")[:limit] if counts[i] > 0]
        return [{"pid": int(table[i]), "name": self.snap.process_names.get(int(table[i]), "?"),
                 "count": int(counts[i])} for i in order]


def level(value: float, warning: float, critical: float,
          escalate: bool = False) -> Severity | None:
    """The severity of value against its thresholds; critical outright when `escalate`
    (a counter that only moves when the kernel already drops or destroys something)."""
    if escalate or value >= critical:
        return Severity.CRITICAL
    if value >= warning:
        return Severity.WARNING
    return None


def top_counts(values: np.ndarray, limit: int = 5,
               weights: np.ndarray | None = None) -> list[tuple[Any, int]]:
    if values.size == 0:
        return []
    uniq, inverse = np.unique(values, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights).astype(np.int64)
    order = np.argsort(-counts, kind="stable")[:limit]
    return [(uniq[i].item() if hasattr(uniq[i], "item") else uniq[i], int(counts[i]))
            for i in order]


def top_destinations(snap: Snapshot, mask: np.ndarray, limit: int = 5,
                     with_port: bool = True) -> list[tuple[str, int]]:
    """Most common remote ip[:port] among the sockets in mask whose remote address is
    known; when the paste redacted every one, the single group "(redacted)"."""
    c = snap.columns
    known = snap.addressed(mask, remote=True)
    mask = known if known.any() else mask
    if not mask.any():
        return []
    cols = [c["raddr_hi"][mask], c["raddr_lo"][mask]]
    if with_port:
        cols.append(c["dport"][mask])

    def label(values: list[np.ndarray], i: int) -> str:
        if not with_port:
            return format_addr(values[0][i], values[1][i])
        return format_endpoint(values[0][i], values[1][i], int(values[2][i]))
    return _top_keys(snap, mask, cols, limit, label)


def top_networks(snap: Snapshot, mask: np.ndarray, limit: int = 5) -> list[tuple[str, int]]:
    """Most common remote networks (IPv4 /24, IPv6 /64) among the sockets in mask: how a
    flood from a few subnets is named."""
    c = snap.columns
    known = snap.addressed(mask, remote=True)
    mask = known if known.any() else mask
    if not mask.any():
        return []
    hi, lo = c["raddr_hi"][mask], c["raddr_lo"][mask]
    v4 = is_v4(hi, lo)
    hi4, lo4 = prefix_masks(96 + 24)
    hi6, lo6 = prefix_masks(64)

    def label(values: list[np.ndarray], i: int) -> str:
        addr = format_addr(values[0][i], values[1][i])
        return f"{addr}/{24 if '.' in addr else 64}"
    return _top_keys(snap, mask, [hi & np.where(v4, hi4, hi6), lo & np.where(v4, lo4, lo6)],
                     limit, label)


def _top_keys(snap: Snapshot, mask: np.ndarray, cols: list[np.ndarray], limit: int,
              label: Callable[[list[np.ndarray], int], str]) -> list[tuple[str, int]]:
    """The `limit` most common key combinations among the sockets in mask, labelled."""
    w = snap.weights
    values, counts = distinct(cols, None if w is None else w[mask])
    order = np.argsort(-counts, kind="stable")[:limit]
    return [(label(values, int(i)), int(counts[i])) for i in order]


def names_of(procs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['name']} (pid {p['pid']})" for p in procs[:3])


def sysctl_rec(key: str, current: Any, recommended: Any, why: str) -> dict[str, Any]:
    return {"key": key, "current": current, "recommended": recommended, "why": why}
