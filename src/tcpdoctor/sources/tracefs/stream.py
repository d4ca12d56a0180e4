"""The event stream of `trace`: each state change with its process, addresses and the time
the socket spent in the state it leaves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tcpdoctor.model.addresses import format_addr, format_endpoint
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.model.trace import STATE_CHANGE
from tcpdoctor.sources.tracefs.follow import Comms

MAX_FOLLOWED = 1 << 20


def _state(n: int) -> str:
    return STATE_NAMES[n - 1] if 0 < n <= len(STATE_NAMES) else "NEW_SYN_RECV"


def events(cols: dict[str, np.ndarray], comms: Comms, last: dict[int, int],
           filters: dict[str, Any], netns: int | None) -> Iterator[dict[str, Any]]:
    keep = cols["kind"] == STATE_CHANGE
    if filters.get("pid") is not None:
        keep &= cols["pid"] == filters["pid"]
    if filters.get("port") is not None:
        keep &= (cols["sport"] == filters["port"]) | (cols["dport"] == filters["port"])
    start = int(cols["ts"][0]) if cols["ts"].shape[0] else 0
    for i in np.flatnonzero(keep).tolist():
        sk, ts, pid = int(cols["skaddr"][i]), int(cols["ts"][i]), int(cols["pid"][i])
        before = last.pop(sk, None)
        if len(last) >= MAX_FOLLOWED:
            last.clear()
        last[sk] = ts
        old, new = _state(int(cols["old"][i])), _state(int(cols["new"][i]))
        if filters.get("state") and filters["state"] not in (old, new):
            continue
        comm = comms.name(pid)
        if filters.get("comm") and comm != filters["comm"]:
            continue
        if netns is not None and (pid <= 0 or comms.netns_of(pid) != netns):
            continue
        ends = [(int(cols[f"{side}addr_hi"][i]), int(cols[f"{side}addr_lo"][i]),
                 int(cols[f"{side}port"][i])) for side in ("s", "d")]
        if filters.get("ip") and filters["ip"] not in [format_addr(h, lo) for h, lo, _ in ends]:
            continue
        local, remote = (format_endpoint(*end) for end in ends)
        yield {"time": (ts - start) / 1e9, "ts_ns": ts, "pid": pid, "comm": comm,
               "local": local, "remote": remote, "old": old, "new": new,
               "ms": None if before is None else (ts - before) / 1e6}
