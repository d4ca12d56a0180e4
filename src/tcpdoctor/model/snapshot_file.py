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
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS, OWNER_COLUMNS
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot

FORMAT = "tcpdoctor-snapshot"
VERSION = 1
KNOWN = {**BASE_COLUMNS, **INFO_COLUMNS, **OWNER_COLUMNS}


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
    if kernel is not None:
        out["sockstat"] = kernel.sockstat
        out["counters"] = kernel.counters
        out["sysctls"] = kernel.sysctls
        out["file_nr"] = list(kernel.file_nr) if kernel.file_nr else None
    return out


def to_bytes(name: str, snap: Snapshot, kernel: KernelState | None) -> bytes:
    """The file's bytes; gzip-compressed when name ends in .gz."""
    data = json.dumps(to_dict(snap, kernel)).encode()
    return gzip.compress(data, compresslevel=6) if name.endswith(".gz") else data


def looks_like(head: bytes) -> bool:
    return head.lstrip()[:1] == b"{" and FORMAT.encode() in head[:4096]


def from_bytes(raw: bytes, source: str) -> tuple[Snapshot, KernelState | None]:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ParseError(source, None, f"a complete gzip stream ({exc})") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ParseError(source, line, "tcpdoctor snapshot JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ParseError(source, 1, f'a JSON object with "format": "{FORMAT}"')
    if doc.get("version") != VERSION:
        raise ParseError(source, 1, f"snapshot version {VERSION}, got {doc.get('version')!r} "
                         "(written by another tcpdoctor version)")
    return _snapshot(doc, source), _kernel(doc)


def _snapshot(doc: dict[str, Any], source: str) -> Snapshot:
    count = doc.get("count")
    cols: dict[str, np.ndarray] = {}
    for name, spec in (doc.get("columns") or {}).items():
        if name not in KNOWN or not isinstance(spec, dict) or spec.get("dtype") != KNOWN[name]:
            raise ParseError(source, None, f"column {name!r} with dtype {KNOWN.get(name)}")
        try:
            data = base64.b64decode(spec["data"], validate=True)
            arr = np.frombuffer(data, dtype=np.dtype(KNOWN[name]).newbyteorder("<"))
        except (KeyError, ValueError, TypeError):
            raise ParseError(source, None, f"base64 data for column {name!r}") from None
        if arr.shape[0] != count:
            raise ParseError(source, None, f"{count} values in column {name!r}, got "
                             f"{arr.shape[0]}")
        cols[name] = arr.astype(KNOWN[name])
    if "state" not in cols:
        raise ParseError(source, None, "a 'state' column")
    names = {int(k): str(v) for k, v in (doc.get("process_names") or {}).items()
             if str(k).lstrip("-").isascii() and str(k).lstrip("-").isdigit()}
    return Snapshot(cols, str(doc.get("source", "snapshot")), str(doc.get("host", "")),
                    str(doc.get("kernel", "")), str(doc.get("taken_at", "")), doc.get("netns"),
                    [str(n) for n in doc.get("notes") or []], names)


def _kernel(doc: dict[str, Any]) -> KernelState | None:
    if "sockstat" not in doc and "sysctls" not in doc:
        return None
    file_nr = doc.get("file_nr")
    return KernelState(0.0, sockstat=doc.get("sockstat") or {}, counters=doc.get("counters") or {},
                       sysctls=doc.get("sysctls") or {},
                       file_nr=tuple(file_nr) if file_nr and len(file_nr) == 3 else None)
