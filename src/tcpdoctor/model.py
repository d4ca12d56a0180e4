"""The columnar snapshot every view is built on: one numpy array per socket attribute.

Addresses are stored as two big-endian uint64 halves of an IPv6 address, IPv4 mapped
into ::ffff:a.b.c.d, so that one pair of columns holds both families, sorts naturally and
takes prefix masks (/24, /64) as plain integer operations.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.kernel import STATE_NAMES, TCP_LISTEN, state_counts

V4_MAPPED = np.uint64(0xFFFF_0000_0000)

# Column name -> dtype. Sources fill the base columns; the rest appear when requested.
BASE_COLUMNS: dict[str, str] = {
    "family": "u1",
    "state": "u1",  # kernel number, NEW_SYN_RECV already folded into SYN_RECV
    "timer": "u1",  # inet_diag / procfs timer code, see kernel.TIMER_*
    "retrans": "u1",
    "sport": "u2",
    "dport": "u2",
    "laddr_hi": "u8",
    "laddr_lo": "u8",
    "raddr_hi": "u8",
    "raddr_lo": "u8",
    "expires": "u4",  # milliseconds until the timer fires
    "rqueue": "u4",  # LISTEN: accept queue length
    "wqueue": "u4",  # LISTEN: accept queue limit (netlink only)
    "uid": "u4",
    "inode": "u4",
}
INFO_COLUMNS: dict[str, str] = {
    "lastsnd": "u4",  # ms since data was last sent (tcp_info.tcpi_last_data_sent)
    "lastrcv": "u4",  # ms since data was last received
    "lastack": "u4",  # ms since the last ACK was received
    "rtt": "u4",  # microseconds
    "has_info": "?",  # tcp_info present for this socket (full sockets only)
}
OWNER_COLUMNS: dict[str, str] = {"pid": "i4"}  # -1 = owner unknown
# A reduced snapshot (offline analysis of huge dumps) has one row per distinct combination
# of the kept columns, and this column says how many sockets each row stands for.
WEIGHT = "weight"


def empty_columns(names: dict[str, str]) -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype=dt) for name, dt in names.items()}


def concat_columns(parts: list[dict[str, np.ndarray]],
                   names: dict[str, str]) -> dict[str, np.ndarray]:
    if not parts:
        return empty_columns(names)
    return {
        name: np.concatenate([p[name] for p in parts]).astype(dt, copy=False)
        for name, dt in names.items()
        if all(name in p for p in parts)
    }


def constant(value: Any, n: int, dtype: Any) -> np.ndarray:
    """A read-only column of n equal values that takes no memory (a stride-0 view): the
    columns a dump does not carry (no timers, no owners) cost nothing per socket."""
    return np.broadcast_to(np.array(value, dtype=dtype), (n,))


def is_constant(col: np.ndarray) -> bool:
    return col.ndim == 1 and col.strides == (0,)


def concat_keep_constant(arrays: list[np.ndarray]) -> np.ndarray:
    """np.concatenate, except that equal constant columns stay a constant view."""
    if arrays and all(is_constant(a) for a in arrays) and len(
            {a[0].item() for a in arrays if a.shape[0]}) <= 1:
        first = next((a for a in arrays if a.shape[0]), arrays[0])
        value = first[0] if first.shape[0] else 0
        return constant(value, sum(a.shape[0] for a in arrays), arrays[0].dtype)
    return np.concatenate(arrays)


def v4_to_mapped(addr_be32: np.ndarray) -> np.ndarray:
    """IPv4 addresses (host integers of the big-endian value) -> low half of ::ffff:a.b.c.d."""
    return addr_be32.astype(np.uint64) | V4_MAPPED


def format_addr(hi: int, lo: int) -> str:
    value = (int(hi) << 64) | int(lo)
    addr = ipaddress.IPv6Address(value)
    mapped = addr.ipv4_mapped
    return str(mapped) if mapped is not None else str(addr)


def parse_addr(text: str) -> tuple[int, int, int]:
    """'10.0.0.0/8', '::1', '2001:db8::/32' -> (hi, lo, prefix length in the 128-bit space)."""
    net = ipaddress.ip_network(text.strip("[]"), strict=False)
    if isinstance(net, ipaddress.IPv4Network):
        value = (0xFFFF << 32) | int(net.network_address)
        prefix = 96 + net.prefixlen
    else:
        value = int(net.network_address)
        prefix = net.prefixlen
    return value >> 64, value & ((1 << 64) - 1), prefix


def prefix_masks(prefix: int) -> tuple[np.uint64, np.uint64]:
    full = (1 << 128) - 1
    mask = full ^ ((1 << (128 - prefix)) - 1) if prefix < 128 else full
    return np.uint64(mask >> 64), np.uint64(mask & ((1 << 64) - 1))


def is_v4(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))


def factorize(cols: list[np.ndarray], weights: np.ndarray | None = None,
              ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Distinct combinations of several key columns: (values per column, group of each row,
    rows per group, or the sum of the rows' weights), groups in lexical order of the keys.
    Key values are read back from the first row of each group."""
    first, inverse, counts = group_rows(cols, weights)
    return [c[first] for c in cols], inverse, counts


def group_rows(cols: list[np.ndarray], weights: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first row of each group, group of each row, rows or summed weights per group).

    Constant columns (an IPv4-only high address half, say) take no part in the sort; a
    single varying column is one np.unique; several are one stable lexsort, then runs of
    equal keys (measured at 1M rows and three keys: about 3.5x faster than np.unique per
    column plus a mixed-radix np.unique, with two thirds of the scratch memory).
    """
    n = cols[0].shape[0]
    varying = [c for c in cols if not (n and (is_constant(c) or c.min() == c.max()))]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(varying) <= 1:
        if varying:
            _, first, inverse, counts = np.unique(varying[0], return_index=True,
                                                  return_inverse=True, return_counts=True)
            inverse = inverse.ravel()
        else:
            first, inverse, counts = np.zeros(1, np.int64), np.zeros(n, np.int64), np.array([n])
        if weights is not None:
            counts = np.bincount(inverse, weights, minlength=first.shape[0]).astype(np.int64)
        return first, inverse, counts
    order = np.lexsort(varying[::-1])
    new_run = np.zeros(n, dtype=bool)
    new_run[0] = True
    for col in varying:
        ordered = col[order]
        new_run[1:] |= ordered[1:] != ordered[:-1]
        del ordered
    starts = np.flatnonzero(new_run)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(new_run) - 1
    del new_run
    if weights is None:
        counts = np.diff(np.append(starts, n))
    else:
        counts = np.add.reduceat(np.asarray(weights, dtype=np.int64)[order], starts)
    return order[starts], inverse, counts


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

    def has(self, name: str) -> bool:
        return name in self.columns

    def select(self, mask: np.ndarray) -> Snapshot:
        cols = {k: v[mask] for k, v in self.columns.items()}
        return Snapshot(cols, self.source, self.host, self.kernel, self.taken_at, self.netns,
                        list(self.notes), dict(self.process_names))

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
        return np.unique(self.columns["sport"][self.columns["state"] == TCP_LISTEN])


__all__ = ["STATE_NAMES", "Snapshot"]
