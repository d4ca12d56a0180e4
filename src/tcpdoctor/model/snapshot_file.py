"""The tcpdoctor snapshot file: versioned JSON (gzip when the name ends in .gz).

Columns are stored as base64 of their little-endian bytes with their dtype, so a million
sockets serialize without a Python object per socket, and read back bit-exact.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import numpy as np

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS, OWNER_COLUMNS, constant
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import TCP_NEW_SYN_RECV, normalize_states

FORMAT = "tcpdoctor-snapshot"
VERSION = 1
KNOWN = {**BASE_COLUMNS, **INFO_COLUMNS, **OWNER_COLUMNS, "netns_id": "u2"}


def to_dict(snap: Snapshot, kernel: KernelState | None) -> dict[str, Any]:
    cols = {}
    for name, arr in snap.columns.items():
        data = np.ascontiguousarray(arr, dtype=np.dtype(KNOWN[name]).newbyteorder("<"))
        cols[name] = {"dtype": KNOWN[name], "data": base64.b64encode(data.tobytes()).decode()}
    out: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "source": snap.source, "host": snap.host,
        "kernel": snap.kernel, "taken_at": snap.taken_at, "netns": snap.netns,
        "count": len(snap), "notes": snap.notes,
        "process_names": {str(k): v for k, v in snap.process_names.items()},
        "columns": cols,
    }
    if snap.spaces:  # --netns all: the namespace of each netns_id, with its own figures
        kernels = snap.space_kernels or [None] * len(snap.spaces)
        out["spaces"] = [{**sp, **({"kernel": kernel_dict(k)} if k is not None else {})}
                         for sp, k in zip(snap.spaces, kernels, strict=True)]
    if kernel is not None:
        out.update(kernel_dict(kernel))
    return out


def kernel_dict(kernel: KernelState) -> dict[str, Any]:
    return {"sockstat": kernel.sockstat, "counters": kernel.counters, "sysctls": kernel.sysctls,
            "file_nr": list(kernel.file_nr) if kernel.file_nr else None,
            "slab": {k: list(v) for k, v in kernel.slab.items()},
            "mem_total": kernel.mem_total}


def to_bytes(name: str, snap: Snapshot, kernel: KernelState | None) -> bytes:
    """The file's bytes; gzip-compressed when name ends in .gz."""
    data = json.dumps(to_dict(snap, kernel)).encode()
    return gzip.compress(data, compresslevel=6) if name.endswith(".gz") else data


def looks_like(head: bytes) -> bool:
    """A JSON object: no text dump starts with '{' (and keys may come in any order, so the
    format key may lie far beyond the head: from_bytes checks it)."""
    return head.lstrip()[:1] == b"{"


def from_bytes(raw: bytes, source: str) -> tuple[Snapshot, KernelState | None]:
    """A snapshot, validated against its schema before use: a hand-edited file is a
    ParseError naming what is wrong, never an exception later in the analysis."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ParseError(source, None, Msg("a complete gzip stream ({exc})", exc=exc)) from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        raise ParseError(source, line, Msg("tcpdoctor snapshot JSON")) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ParseError(source, 1, Msg('a JSON object with "format": "{FORMAT}"', FORMAT=FORMAT))
    if doc.get("version") != VERSION:
        raise ParseError(source, 1, Msg("snapshot version {VERSION}, got {got!r} "
                                        "(written by another tcpdoctor version)", VERSION=VERSION,
                                        got=doc.get('version')))
    return _snapshot(doc, source), _kernel(doc, source)


def _want(ok: bool, source: str, what: str) -> None:
    if not ok:
        raise ParseError(source, None, what)


def _column(name: str, spec: Any, count: int, source: str) -> np.ndarray:
    _want(name in KNOWN and isinstance(spec, dict) and spec.get("dtype") == KNOWN[name]
          and isinstance(spec.get("data"), str), source,
          f"column {name!r} as {{\"dtype\": {KNOWN.get(name)!r}, \"data\": base64}}")
    try:
        data = base64.b64decode(spec["data"], validate=True)
        arr = np.frombuffer(data, dtype=np.dtype(KNOWN[name]).newbyteorder("<"))
    except ValueError:
        raise ParseError(source, None, Msg("base64 data for column {name!r}", name=name)) from None
    _want(arr.shape[0] == count, source, f"{count} values in column {name!r}, got "
          f"{arr.shape[0]}")
    return arr.astype(KNOWN[name])


def _snapshot(doc: dict[str, Any], source: str) -> Snapshot:
    count, columns = doc.get("count"), doc.get("columns")
    _want(isinstance(count, int) and count >= 0, source, '"count": a whole number')
    _want(isinstance(columns, dict), source, '"columns": an object of columns')
    assert isinstance(count, int) and isinstance(columns, dict)
    cols = {name: _column(name, spec, count, source) for name, spec in columns.items()}
    missing = [n for n in BASE_COLUMNS if n not in cols]
    _want(not missing, source, f"the columns {', '.join(missing)}")
    if any(n in cols for n in INFO_COLUMNS):  # partial tcp_info: the rest reads as zero
        for n, dt in INFO_COLUMNS.items():
            cols.setdefault(n, constant(0, count, dt))
    bad = (cols["state"] == 0) | (cols["state"] > TCP_NEW_SYN_RECV)
    _want(not bad.any(), source, "TCP state numbers 1-12 in column 'state'")
    cols["state"] = normalize_states(cols["state"])
    names = doc.get("process_names") or {}
    notes = doc.get("notes") or []
    _want(isinstance(names, dict) and all(isinstance(v, str) for v in names.values()), source,
          '"process_names": an object of pid: name')
    _want(isinstance(notes, list) and all(isinstance(n, str) for n in notes), source,
          '"notes": a list of strings')
    pids = {int(k): v for k, v in names.items()
            if str(k).lstrip("-").isascii() and str(k).lstrip("-").isdigit()
            and len(str(k)) <= 11}
    netns = doc.get("netns")
    spaces = doc.get("spaces") or []
    _want(isinstance(spaces, list) and all(
        isinstance(sp, dict) and isinstance(sp.get("netns"), str) for sp in spaces), source,
        '"spaces": a list of {"netns": name, ...}')
    if "netns_id" in cols:
        _want(bool(spaces) and (count == 0 or int(cols["netns_id"].max()) < len(spaces)),
              source, "netns_id values that index \"spaces\"")
    # Each namespace's own figures (sysctls, counters) travel with its entry; the entries
    # the reports print stay names only.
    kernels = [_kernel(sp["kernel"], f"{source}: spaces[{i}].kernel")
               if isinstance(sp.get("kernel"), dict) else None for i, sp in enumerate(spaces)]
    return Snapshot(cols, str(doc.get("source", "snapshot")), str(doc.get("host", "")),
                    str(doc.get("kernel", "")), str(doc.get("taken_at", "")),
                    netns if isinstance(netns, str) else None, list(notes), pids,
                    spaces=[{k: v for k, v in sp.items() if k != "kernel"} for sp in spaces],
                    space_kernels=kernels if any(k is not None for k in kernels) else [])


def _kernel(doc: dict[str, Any], source: str) -> KernelState | None:
    if "sockstat" not in doc and "sysctls" not in doc:
        return None
    sockstat = doc.get("sockstat") or {}
    counters = doc.get("counters") or {}
    sysctls = doc.get("sysctls") or {}
    _want(isinstance(sockstat, dict) and all(
        isinstance(v, dict) and all(_count(x) for x in v.values()) for v in sockstat.values()),
        source, '"sockstat": {PROTO: {key: number}}')
    _want(isinstance(counters, dict) and all(_count(v) for v in counters.values()), source,
          '"counters": {name: number}')
    _want(isinstance(sysctls, dict) and all(v is None or isinstance(v, str)
                                            for v in sysctls.values()), source,
          '"sysctls": {key: text or null}')
    file_nr = doc.get("file_nr")
    good_nr = isinstance(file_nr, list) and len(file_nr) == 3 and all(map(_count, file_nr))
    slab = doc.get("slab") or {}
    _want(isinstance(slab, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(map(_count, v)) for v in slab.values()),
        source, '"slab": {cache: [bytes per object, objects]}')
    mem_total = doc.get("mem_total")
    _want(mem_total is None or _count(mem_total), source, '"mem_total": a number of bytes')
    return KernelState(0.0, sockstat=sockstat, counters=counters, sysctls=sysctls,
                       file_nr=tuple(file_nr) if good_nr else None,  # type: ignore[arg-type]
                       slab={k: (v[0], v[1]) for k, v in slab.items()}, mem_total=mem_total)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
