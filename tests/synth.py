"""Build synthetic snapshots column by column for rule boundary tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.model.addresses import parse_addr
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_BY_NAME

DEFAULTS: dict[str, Any] = {"state": "ESTABLISHED", "sport": 40000, "dport": 443,
                            "laddr": "10.0.0.1", "raddr": "192.0.2.10", "timer": 0,
                            "rqueue": 0, "wqueue": 0, "inode": 1, "pid": -1, "lastrcv": 0,
                            "lastsnd": 0, "has_info": True, "uid": 0, "expires": 0,
                            "retrans": 0, "family": 2, "rmem_alloc": 0, "wmem_queued": 0,
                            "has_mem": True}


def _values(spec: dict[str, Any], key: str, n: int) -> np.ndarray:
    value = spec.get(key, DEFAULTS[key])
    if callable(value):  # a function of the row index, e.g. distinct ports or addresses
        return np.array([value(i) for i in range(n)])
    return np.full(n, value)


def snapshot(*specs: dict[str, Any], names: dict[int, str] | None = None) -> Snapshot:
    """Each spec: {"n": count, column: value or f(i)}; addresses as strings."""
    cols: dict[str, list[np.ndarray]] = {}
    for spec in specs:
        n = int(spec.get("n", 1))
        if n == 0:
            continue
        for key in ("laddr", "raddr"):
            addrs = _values(spec, key, n)
            pairs = [parse_addr(str(a))[:2] for a in addrs]
            cols.setdefault(f"{key}_hi", []).append(np.array([p[0] for p in pairs], np.uint64))
            cols.setdefault(f"{key}_lo", []).append(np.array([p[1] for p in pairs], np.uint64))
        state = spec.get("state", DEFAULTS["state"])
        cols.setdefault("state", []).append(np.full(n, STATE_BY_NAME[state], np.uint8))
        for key in ("sport", "dport", "timer", "rqueue", "wqueue", "inode", "pid", "lastrcv",
                    "lastsnd", "has_info", "uid", "expires", "retrans", "family",
                    "rmem_alloc", "wmem_queued", "has_mem"):
            cols.setdefault(key, []).append(_values(spec, key, n))
    dtypes = {**BASE_COLUMNS, **INFO_COLUMNS, "pid": "i4"}
    out = {k: np.concatenate(v).astype(dtypes[k]) for k, v in cols.items()}
    if not out:
        out = {k: np.zeros(0, dtype=dt) for k, dt in dtypes.items()}
    return Snapshot(out, "synthetic", process_names=names or {})
