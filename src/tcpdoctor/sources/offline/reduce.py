"""Bounded memory for huge dumps: one row per distinct socket *kind*, with a weight.

A 1 GB `netstat -an` holds over ten million sockets; their 4-tuples are all distinct only
because of the ephemeral port. Reduction keeps every column the rules and reports read and
folds what they do not:

- the ephemeral side's port: the remote port of a socket on a listening port (the client's
  port) becomes 0; a client socket's local port inside ip_local_port_range becomes the
  range's first port (so "inside the range" still holds; ports outside it are kept);
- queue lengths beyond what a rule compares (Recv-Q 0, 1 or more; Send-Q except LISTEN;
  both kept where data has waited a second or a zero window holds the send queue),
  the inode (kept as "has one or not"), timer expiry, retransmits, rtt and last ACK.

Sockets that agree on everything left become one row whose `weight` counts them, so memory
grows with the number of distinct (state, addresses, service port, owner, ...) kinds, not
with sockets. Counts, tops, owners and every finding are computed from the weights.
"""

from __future__ import annotations

import numpy as np

from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import WEIGHT, among_ports, constant, group_rows, is_constant
from tcpdoctor.model.tcp import TCP_LISTEN, TIMER_PROBE

FOLDED = ("expires", "retrans", "lastack", "rtt")
def note(sockets: int, rows: int, limit: int, lo: int) -> str:
    """What folding kept and what it did not, for the report's notes."""
    return Msg("{sockets:,} sockets were analysed as {rows:,} distinct kinds (over "
               "--reduce-above {limit:,}): counts and findings are exact; ephemeral ports are "
               "folded (a client's local port in ip_local_port_range shows as {lo}, a server "
               "socket's remote port as 0) and per-socket timers, rtt and queue sizes are not "
               "kept", sockets=sockets, rows=rows, limit=limit, lo=lo)


def fold(cols: dict[str, np.ndarray], listen_ports: np.ndarray,
         port_range: tuple[int, int]) -> dict[str, np.ndarray]:
    """Fold one block of columns in place of their ephemeral details (see module doc)."""
    out = dict(cols)
    state, sport, dport = cols["state"], cols["sport"], cols["dport"]
    n = state.shape[0]
    listening = state == TCP_LISTEN
    server = ~listening & among_ports(sport, listen_ports)
    client = ~listening & ~server
    lo, hi = port_range
    out["dport"] = np.where(server, 0, dport).astype(dport.dtype)
    ephemeral = client & (sport >= lo) & (sport <= hi)
    out["sport"] = np.where(ephemeral, lo, sport).astype(sport.dtype)
    # Queues the stalled-queue rules measure stay exact: data waiting a second or more
    # (tcp_info in the capture), send queues against a zero window (persist timer).
    waiting = cols["lastrcv"] >= 1000 if "lastrcv" in cols else np.zeros(n, bool)
    zero_window = cols["timer"] == TIMER_PROBE if "timer" in cols else np.zeros(n, bool)
    out["rqueue"] = np.where(listening | waiting, cols["rqueue"],
                             np.minimum(cols["rqueue"], 2)).astype(cols["rqueue"].dtype)
    out["wqueue"] = np.where(listening | zero_window, cols["wqueue"],
                             0).astype(cols["wqueue"].dtype)
    if "inode" in out and not is_constant(cols["inode"]):
        out["inode"] = np.minimum(cols["inode"], 1).astype(cols["inode"].dtype)
    for name in FOLDED:
        if name in out and not is_constant(cols[name]):
            out[name] = constant(0, n, cols[name].dtype)
    if WEIGHT not in out:
        out[WEIGHT] = constant(1, n, np.uint32)
    return out


def combine(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge rows that agree on every column, summing their weights. Takes ownership of
    cols (emptied as it goes, so that the inputs are freed before the result is built)."""
    n = cols["state"].shape[0]
    if n == 0:
        return cols
    names = [k for k in cols if k != WEIGHT]
    # Constant columns need no sort: only the varying ones form the key.
    fixed = {k: cols[k][0] for k in names if is_constant(cols[k])
             or cols[k].min() == cols[k].max()}
    varying = [k for k in names if k not in fixed]
    dtypes = {k: cols[k].dtype for k in cols}
    if not varying:
        total = int(cols[WEIGHT].sum(dtype=np.int64))
        return {**{k: constant(v, 1, dtypes[k]) for k, v in fixed.items()},
                WEIGHT: np.array([total], dtype=np.uint32)}
    key = [cols.pop(k) for k in varying]
    weights = cols.pop(WEIGHT)
    cols.clear()
    first, inverse, counts = group_rows(key, weights)
    del weights, inverse
    rows = counts.shape[0]
    out = {k: constant(v, rows, dtypes[k]) for k, v in fixed.items()}
    for i, name in enumerate(varying):  # free each input column once it is copied
        out[name] = key[i][first]
        key[i] = key[i][:0]
    out[WEIGHT] = counts.astype(np.uint32)
    return out
