"""The columnar snapshot every view is built on: one numpy array per socket attribute."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.model.addresses import REDACTED_HI
from tcpdoctor.model.columns import WEIGHT, owner_slots
from tcpdoctor.model.tcp import TCP_LISTEN, state_counts


@dataclass
class Snapshot:
    """Every TCP socket of one namespace at one moment, as columns."""

    columns: dict[str, np.ndarray]
    source: str
    host: str = ""
    kernel: str = ""
    taken_at: str = ""
    netns: str | None = None
    notes: list[str] = field(default_factory=list)
    process_names: dict[int, str] = field(default_factory=dict)
    unparsed: int = 0  # lines of a saved input that could not be read (lost rows)
    # Several namespaces in one snapshot (--netns all): the `netns_id` column indexes this
    # list of {"netns", "netns_inode", "pod", "container"}.
    spaces: list[dict[str, Any]] = field(default_factory=list)
    # Each space's own kernel figures (KernelState or None), where a sweep kept them.
    space_kernels: list[Any] = field(default_factory=list)
    # Where a pasted capture was taken: "linux", or "windows" / "bsd", whose advice differs.
    platform: str = "linux"
    # The listening ports of the whole table this one was selected from: groupings that
    # need LISTEN rows (service-port) stay right after a filter drops them.
    listeners: np.ndarray | None = None
    # Counts per state only (a pasted `uniq -c`): rows without addresses, ports or owners.
    counts_only: bool = False
    # Rows of a pasted capture whose addresses its poster redacted (see addressed()).
    redacted: int = 0
    # owner_slots() of the whole table, kept: the cost and the rules group by owner often.
    _slots: tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, repr=False, compare=False)

    def __len__(self) -> int:
        """Rows. A reduced snapshot's rows stand for several sockets each: count() them."""
        return int(self.columns["state"].shape[0])

    @property
    def weights(self) -> np.ndarray | None:
        return self.columns.get(WEIGHT)

    def count(self, mask: np.ndarray | None = None) -> int:
        """Sockets (not rows) in mask, or in the snapshot."""
        w = self.weights
        if w is None:
            return len(self) if mask is None else int(np.count_nonzero(mask))
        return int(w.sum(dtype=np.int64) if mask is None else w[mask].sum(dtype=np.int64))

    def select(self, mask: np.ndarray, whole_table: bool = True) -> Snapshot:
        """The rows of mask; what is worked out on the whole table (the listening ports)
        is kept from it, so a filter applied first cannot change a grouping. whole_table=
        False: the rows are a table of their own (one namespace out of many)."""
        cols = {k: v[mask] for k, v in self.columns.items()}
        return Snapshot(cols, self.source, self.host, self.kernel, self.taken_at, self.netns,
                        list(self.notes), dict(self.process_names), self.unparsed,
                        self.spaces, self.space_kernels, self.platform,
                        self.listening_ports() if whole_table else None,
                        counts_only=self.counts_only, redacted=self.redacted)

    def addressed(self, mask: np.ndarray | None = None, remote: bool = False) -> np.ndarray:
        """mask (default: every row) without the rows whose local or remote address (only
        the remote one: remote=True) was redacted: every grouping by address takes this,
        so that a hundred "..." are not one peer. Live tables have none, and pay nothing."""
        base = np.ones(len(self), bool) if mask is None else mask
        if not self.redacted:
            return base
        c = self.columns
        known = c["raddr_hi"] != REDACTED_HI
        return base & known if remote else base & known & (c["laddr_hi"] != REDACTED_HI)

    def owner_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """(the owners' pids after -1, each row's slot in them), worked out once."""
        pid = self.columns["pid"]
        key = (id(pid), len(self.process_names))
        if self._slots is None or self._slots[0] != key:
            self._slots = (key, owner_slots(pid, self.process_names))
        return self._slots[1]

    def state_counts(self) -> dict[str, int]:
        return state_counts(self.columns["state"], self.weights)

    def summary(self) -> dict[str, Any]:
        states = self.state_counts()
        total = self.count()
        return {
            "total": total,
            "established": states["ESTABLISHED"],
            "non_established": total - states["ESTABLISHED"],
            "states": states,
        }

    def listening_ports(self) -> np.ndarray:
        if self.listeners is not None:
            return self.listeners
        return np.unique(self.columns["sport"][self.columns["state"] == TCP_LISTEN])

