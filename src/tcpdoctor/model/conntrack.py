"""The connection-tracking table as columns: one row per TCP conntrack entry.

Addresses use the sockets' representation (model.addresses: 128-bit as two uint64 halves,
IPv4 as ::ffff:a.b.c.d), so an entry's tuple compares with a socket's columns directly.
The original tuple is the connection as its originator sent it; the reply tuple as the
responder answers it, after NAT: a source-NATed entry's reply destination is the
translated source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Column dtypes. Ports and addresses in host order.
CT_COLUMNS: dict[str, str] = {
    "family": "u1",
    "ct_state": "u1",  # enum tcp_conntrack (below)
    "status": "u4",  # IPS_* bits
    "timeout": "u4",  # seconds left
    "mark": "u4",
    "zone": "u2",
    "id": "u4",
    **{f"{d}_{a}_{h}": "u8" for d in ("orig", "reply") for a in ("src", "dst")
       for h in ("hi", "lo")},
    **{f"{d}_{p}": "u2" for d in ("orig", "reply") for p in ("sport", "dport")},
}

# enum tcp_conntrack (include/uapi/linux/netfilter/nf_conntrack_tcp.h), as conntrack -L
# and /proc/net/nf_conntrack name them (SYN_SENT2 is the simultaneous-open state).
CT_STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                  "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")
CT_STATE_CODES = {name: i for i, name in enumerate(CT_STATE_NAMES)}

# Entry status bits (enum ip_conntrack_status, include/uapi/linux/netfilter/nf_conntrack_common.h).
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_SRC_NAT = 1 << 4
IPS_DST_NAT = 1 << 5

# What a join with the sockets reads of a socket table: its state and 4-tuple.
SOCKET_KEYS = ("state", "laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo", "sport", "dport")

# The states in which an entry stands for an open connection: its sockets should exist.
OPEN_STATES = ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
               "SYN_SENT2")


@dataclass
class ConntrackTable:
    """The TCP entries of one namespace's table, with where they were read from."""

    columns: dict[str, np.ndarray]
    source: str  # "netlink" or "/proc/net/nf_conntrack"
    netns: str | None = None
    other_entries: int = 0  # UDP, ICMP, ...: counted, not kept
    notes: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.columns["ct_state"].shape[0])

    def state_counts(self) -> dict[str, int]:
        counts = np.bincount(self.columns["ct_state"], minlength=len(CT_STATE_NAMES))
        return {name: int(counts[i]) for i, name in enumerate(CT_STATE_NAMES) if counts[i]}


def empty_table(source: str, netns: str | None = None) -> ConntrackTable:
    return ConntrackTable({k: np.zeros(0, v) for k, v in CT_COLUMNS.items()}, source, netns)
