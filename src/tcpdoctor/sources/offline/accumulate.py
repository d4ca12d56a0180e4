"""Blocks of parsed sockets gathered into one set of columns; above a limit, folded into
weighted rows (reduce.py) so that memory follows distinct kinds of socket, not sockets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import (
    BASE_COLUMNS,
    INFO_COLUMNS,
    concat_columns,
    concat_keep_constant,
    empty_columns,
)
from tcpdoctor.model.tcp import TCP_LISTEN
from tcpdoctor.sources.offline import reduce


class Accumulator:
    """Blocks of columns from a streamed parse. Up to `limit` sockets they are kept as they
    are; beyond, every block is folded and combined (reduce.py), so that memory follows the
    number of distinct socket kinds instead of the number of sockets."""

    def __init__(self, limit: int, rescan: Callable[[], np.ndarray] | None,
                 port_range: tuple[int, int]) -> None:
        self.limit = limit
        self.rescan = rescan
        self.port_range = port_range
        self.blocks: list[dict[str, np.ndarray]] = []
        self.sockets = 0
        self.listen = np.zeros(0, np.uint16)
        self.reducing = False
        self.reduced: dict[str, np.ndarray] | None = None
        self.pending: list[dict[str, np.ndarray]] = []
        self.pending_rows = 0
        self.drop: list[str] = []
        self.notes: list[str] = []
        self.redacted = 0  # rows whose addresses the poster redacted (Builder.redacted)

    def add(self, cols: dict[str, np.ndarray]) -> None:
        self.sockets += cols["state"].shape[0]
        found = cols["sport"][cols["state"] == TCP_LISTEN]
        if found.size:
            self.listen = np.union1d(self.listen, found)
        if not self.reducing and self.sockets <= self.limit:
            self.blocks.append(cols)
            return
        if not self.reducing:
            self._start_reducing()
        self._fold(cols)

    def _start_reducing(self) -> None:
        if self.rescan is not None:
            self.listen = np.union1d(self.listen, self.rescan())
        else:
            self.notes.append(Msg("input read from a pipe: listening ports are those listed "
                                  "before the input grew past --reduce-above"))
        self.reducing = True
        while self.blocks:
            self._fold(self.blocks.pop(0))

    def _fold(self, cols: dict[str, np.ndarray]) -> None:
        self.pending.append(reduce.fold(cols, self.listen, self.port_range))
        self.pending_rows += cols["state"].shape[0]
        have = self.reduced["state"].shape[0] if self.reduced else 0
        # Combining sorts the reduced rows again: wait for an eighth of them more (amortized
        # cost), but no longer, since the pending rows are the memory peak.
        if self.pending_rows >= max(have // 8, 1 << 16):
            self._combine()

    def _combine(self) -> None:
        parts = ([self.reduced] if self.reduced else []) + self.pending
        self.reduced, self.pending, self.pending_rows = None, [], 0
        names = list(parts[0])
        joined = {}
        for k in names:
            joined[k] = concat_keep_constant([p.pop(k) for p in parts])
        del parts
        self.reduced = reduce.combine(joined)

    def finish(self, has_pid: bool, has_info: bool) -> None:
        """Columns the whole input lacked (no pid, no tcp_info) are dropped at the end."""
        if not has_pid:
            self.drop.append("pid")
        if not has_info:
            self.drop.extend(INFO_COLUMNS)

    def result(self) -> dict[str, np.ndarray]:
        if not self.reducing and not self.blocks:
            cols = empty_columns(BASE_COLUMNS)
        elif not self.reducing:
            dtypes = {k: str(v.dtype) for k, v in self.blocks[0].items()}
            cols = concat_columns(self.blocks, dtypes)
            self.blocks = []
        else:
            if self.pending:
                self._combine()
            assert self.reduced is not None
            cols = self.reduced
            self.notes.append(reduce.note(self.sockets, cols["state"].shape[0], self.limit,
                                          self.port_range[0]))
        for name in self.drop:
            cols.pop(name, None)
        return cols
