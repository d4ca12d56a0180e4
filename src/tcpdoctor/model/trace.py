"""Traced TCP events as columns: one row per event of the kernel's tracepoints
(sock:inet_sock_set_state, tcp:tcp_send_reset, tcp:tcp_receive_reset,
tcp:tcp_retransmit_skb), addresses as the (hi, lo) halves the snapshot model uses."""

from __future__ import annotations

import struct

import numpy as np

STATE_CHANGE, SEND_RESET, RECEIVE_RESET, RETRANSMIT = 0, 1, 2, 3
KIND_NAMES = ("state", "send_reset", "receive_reset", "retransmit")

# One packed row per event: appended as bytes (one struct.pack per event, no object),
# read back as a numpy structured array of the same layout.
EVENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("kind", "B", "u1"), ("ts", "Q", "u8"), ("pid", "i", "i4"), ("skaddr", "Q", "u8"),
    ("old", "B", "u1"), ("new", "B", "u1"), ("reason", "H", "u2"), ("family", "B", "u1"),
    ("sport", "H", "u2"), ("dport", "H", "u2"), ("saddr_hi", "Q", "u8"),
    ("saddr_lo", "Q", "u8"), ("daddr_hi", "Q", "u8"), ("daddr_lo", "Q", "u8"),
)
ROW = struct.Struct("<" + "".join(code for _, code, _ in EVENT_COLUMNS))
ROW_DTYPE = np.dtype([(name, "<" + dt) for name, _, dt in EVENT_COLUMNS])
assert ROW_DTYPE.itemsize == ROW.size


class EventBatch:
    """Events being collected, as packed rows in one bytearray."""

    def __init__(self) -> None:
        self.rows = bytearray()

    def __len__(self) -> int:
        return len(self.rows) // ROW.size

    def add(self, *values: int) -> None:
        self.rows += ROW.pack(*values)

    def table(self) -> np.ndarray:
        return np.frombuffer(bytes(self.rows), dtype=ROW_DTYPE)

    def columns(self) -> dict[str, np.ndarray]:
        """The events as numpy columns, in time order (CPUs' buffers interleave)."""
        return columns(sort(self.table()))


def sort(table: np.ndarray) -> np.ndarray:
    return table[np.argsort(table["ts"], kind="stable")]


def columns(table: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(table[name]) for name, _, _ in EVENT_COLUMNS}


class Reorder:
    """Events handed on in time order across reads: those after the time up to which every
    CPU's buffer has been read wait for the next read (another CPU may still hold older
    ones)."""

    def __init__(self) -> None:
        self.held = np.empty(0, ROW_DTYPE)

    def take(self, batch: EventBatch, before_ns: int | None) -> dict[str, np.ndarray]:
        """The held and new events older than before_ns (all of them for None)."""
        table = sort(np.concatenate([self.held, batch.table()]))
        cut = len(table) if before_ns is None else int(np.searchsorted(table["ts"], before_ns))
        self.held = table[cut:].copy()
        return columns(table[:cut])
