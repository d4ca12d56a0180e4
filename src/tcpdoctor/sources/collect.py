"""One entry point that picks the source (netlink, else procfs) and builds a Snapshot."""

from __future__ import annotations

import os
import platform
import socket
from datetime import UTC, datetime

import numpy as np

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.kernel import AF_INET, AF_INET6
from tcpdoctor.model import BASE_COLUMNS, Snapshot
from tcpdoctor.sources import netlink, netns, owners, procfs

SOURCES = ("auto", "netlink", "procfs")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read(source: str, families: tuple[int, ...], want: frozenset[str], info: bool,
          proc_root: str) -> tuple[dict[str, np.ndarray], str, list[str]]:
    notes: list[str] = []
    if source in ("auto", "netlink"):
        try:
            return netlink.read_sockets(want, info, families), "netlink", notes
        except netlink.NetlinkUnavailable as exc:
            if source == "netlink":
                raise
            notes.append(f"netlink unavailable ({exc}); read /proc/net/tcp instead")
    cols, more = procfs.read_sockets(proc_root, families)
    if info:
        notes.append("procfs has no tcp_info: idle-time figures are unavailable")
    return cols, "procfs", notes + more


def take_snapshot(source: str = "auto", netns_name: str | None = None, ipv4: bool = True,
                  ipv6: bool = True, want: frozenset[str] | None = None, info: bool = False,
                  with_owners: bool = False, proc_root: str = "/proc") -> Snapshot:
    """Every TCP socket of this host (or of netns_name) as a columnar Snapshot."""
    if source not in SOURCES:
        raise TcpDoctorError(f"unknown source {source!r} (choose from {', '.join(SOURCES)})")
    families = tuple(f for f, on in ((AF_INET, ipv4), (AF_INET6, ipv6)) if on)
    wanted = frozenset(BASE_COLUMNS) if want is None else want | {"state"}
    if with_owners:
        wanted |= {"inode"}
    cols, used, notes = netns.run_in(
        netns_name, lambda: _read(source, families, wanted, info, proc_root))
    snap = Snapshot(cols, used, host=socket.gethostname(), kernel=platform.release(),
                    taken_at=now_iso(), netns=netns_name, notes=notes)
    if with_owners:
        attach_owners(snap, proc_root)
    return snap


def attach_owners(snap: Snapshot, proc_root: str = "/proc") -> owners.OwnerTable:
    table = owners.scan(proc_root)
    snap.columns["pid"] = owners.lookup(table, snap.columns["inode"])
    used = np.unique(snap.columns["pid"])
    snap.process_names = {int(p): table.names.get(int(p), "?") for p in used if p >= 0}
    snap.notes.extend(table.notes())
    if os.geteuid() != 0 and not table.denied:
        snap.notes.append("not running as root: owners of other users' sockets may be missing")
    return table
