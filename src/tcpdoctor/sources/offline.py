"""Load saved inputs for `analyze` and `diff`: detect the format, parse, make a Snapshot."""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np

from tcpdoctor import snapshot_file
from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.kernel import AF_INET, AF_INET6
from tcpdoctor.model import Snapshot
from tcpdoctor.sources import kstate, netlink, procfs, textdump
from tcpdoctor.sources.kstate import KernelState

FORMATS = ("ss -D netlink dump, tcpdoctor snapshot JSON, /proc/net/tcp{,6}, ss -tan[poime], "
           "netstat -an[tpo] or Windows netstat -ano")


def _read(path: str) -> bytes:
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise TcpDoctorError(f"{path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ParseError(path, None, f"a complete gzip stream ({exc})") from None
    if not data.strip():
        raise TcpDoctorError(f"{path}: empty file (expected {FORMATS})")
    return data


def _is_netlink(data: bytes) -> bool:
    if len(data) < 16:
        return False
    length, mtype = struct.unpack_from("=IH", data, 0)
    return 16 <= length <= len(data) and mtype in (netlink.SOCK_DIAG_BY_FAMILY,
                                                    netlink.NLMSG_DONE, netlink.NLMSG_ERROR)


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    for no, raw in enumerate(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8",
                                              errors="replace"), 1):
        yield no, raw.rstrip("\r\n")


def load(path: str, strict: bool = False) -> tuple[Snapshot, KernelState | None, list[str]]:
    data = _read(path)
    name = "stdin" if path == "-" else path
    notes: list[str] = []
    kernel = None
    if _is_netlink(data):
        cols, _ = netlink.decode(data, source=name, stop_at_done=False)
        kind = "ss -D netlink dump"
    elif snapshot_file.looks_like(data[:4096]):
        snap, kernel = snapshot_file.from_bytes(data, name)
        snap.notes.append(f"loaded tcpdoctor snapshot {name}")
        return snap, kernel, notes
    else:
        head = data[:65536]
        if b"\x00" in head:
            raise TcpDoctorError(f"{name}: binary data that is not a netlink dump (expected "
                                 f"{FORMATS})")
        kind = textdump.detect(head.decode("utf-8", "replace").splitlines()[:200]) or ""
        if not kind:
            raise ParseError(name, 1, FORMATS, head.split(b"\n", 1)[0])
        if kind == "proc":
            cols = _proc(data, name)
        else:
            b = textdump.Builder(name, strict)
            textdump.PARSERS[kind](_lines(data), b)
            cols = b.columns()
            if b.bad_count:
                notes.append(f"{b.bad_count} line(s) of {name} not understood (first at line "
                             f"{', '.join(map(str, b.bad))}); --strict makes this an error")
            if b.opaque:
                notes.append(f"{b.opaque} truncated address(es) in {name} (netstat without -W) "
                             "kept as opaque keys")
            kind = {"ss": "ss", "netstat": "netstat", "windows": "Windows netstat"}[kind]
        if not cols["state"].shape[0] and not notes:
            notes.append(f"{name}: no TCP sockets found")
    taken = datetime.fromtimestamp(os.path.getmtime(path), UTC) if path != "-" else None
    snap = Snapshot(cols, f"{kind} ({name})", taken_at=taken.isoformat(timespec="seconds")
                    if taken else "", notes=list(notes))
    if "pid" in cols and kind in ("ss", "netstat", "Windows netstat"):
        snap.process_names = dict(b.names)
    return snap, kernel, notes


def _proc(data: bytes, name: str) -> dict[str, np.ndarray]:
    first = data.split(b"\n", 2)[1] if data.count(b"\n") >= 1 else b""
    fields = first.split()
    family = AF_INET6 if len(fields) > 1 and len(fields[1]) > 13 else AF_INET
    return procfs.parse_file(io.BytesIO(data), family, name)


def merge(parts: list[Snapshot]) -> Snapshot:
    """Several inputs analysed together (e.g. /proc/net/tcp and tcp6): one snapshot."""
    if len(parts) == 1:
        return parts[0]
    common = set.intersection(*(set(p.columns) for p in parts))
    if any("pid" in p.columns for p in parts):
        common.add("pid")
    cols = {}
    for name in common:
        arrays = [p.columns[name] if name in p.columns else np.full(len(p), -1, np.int32)
                  for p in parts]
        cols[name] = np.concatenate(arrays)
    names: dict[int, str] = {}
    for p in parts:
        names.update(p.process_names)
    return Snapshot(cols, " + ".join(p.source for p in parts), parts[0].host, parts[0].kernel,
                    parts[0].taken_at, None, [n for p in parts for n in p.notes], names)


def proc_dir_state(directory: str) -> KernelState:
    """Saved /proc files: a /proc-like tree (DIR/net/sockstat, DIR/sys/...) or flat
    (DIR/sockstat, DIR/netstat, DIR/snmp)."""
    if not os.path.isdir(directory):
        raise TcpDoctorError(f"--proc-dir: {directory} is not a directory")
    if os.path.isdir(os.path.join(directory, "net")):
        return kstate.read_state(directory)
    state = KernelState(0.0)
    for fname in ("sockstat", "sockstat6", "netstat", "snmp"):
        path = os.path.join(directory, fname)
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            text = fh.read()
        if fname.startswith("sockstat"):
            state.sockstat.update(kstate.parse_key_value_lines(text, path))
        else:
            state.counters.update(kstate.parse_counter_pairs(text, path))
    if not state.sockstat and not state.counters:
        raise TcpDoctorError(f"--proc-dir: no sockstat, netstat or snmp file in {directory}")
    return state
