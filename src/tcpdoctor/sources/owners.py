"""Socket owners: inode -> (pid, process name) from one pass over every open file.

As root on the host, a BPF task_file iterator walks the file tables inside the kernel
(bpf_iter: about half a second for a million sockets on a 2-core VM); elsewhere, like
`ss -p`, every fd link of every process under /proc is read once (a readlink each:
seconds at that size).
Either way the join with the socket table is a sorted search on numpy arrays.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field

import numpy as np

from tcpdoctor.i18n import Msg
from tcpdoctor.util.text import visible

SOCKET_PREFIX = "socket:["


@dataclass
class OwnerTable:
    inodes: np.ndarray  # sorted socket inodes
    pids: np.ndarray  # owner pid of each inode (the lowest pid when several share it)
    names: dict[int, str] = field(default_factory=dict)
    denied: int = 0  # processes whose fd table we could not read (EACCES)
    vanished: int = 0  # processes that exited during the scan
    # Open-file counts per pid, a by-product of the same scan (used by the FD_LIMIT rule).
    fd_counts: dict[int, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        out: list[str] = []
        if self.denied:
            out.append(Msg("owners partly unknown: {n} processes' sockets could not "
                           "be read (permission denied; run as root to see all owners)",
                           n=self.denied))
        if self.vanished:
            out.append(Msg("{n} processes exited during the owner scan",
                           n=self.vanished))
        return out


def read_comm(proc_root: str, pid: int) -> str | None:
    """The process's command name, or None when it is gone. Any process may name itself
    (prctl): control characters and invalid UTF-8 come back as visible escapes, so that a
    name cannot drive the terminal, a label or a file it reaches."""
    try:
        with open(f"{proc_root}/{pid}/comm", "rb") as fh:
            raw = fh.read(64).rstrip(b"\n")
    except OSError:
        return None  # the process exited: its sockets are already being closed
    return visible(raw.decode("utf-8", "backslashreplace"))


def scan(proc_root: str = "/proc") -> OwnerTable:
    from tcpdoctor.sources import bpf_iter

    try:
        entries = [int(e.name) for e in os.scandir(proc_root) if e.name.isdigit()]
    except OSError:
        return OwnerTable(np.zeros(0, np.uint32), np.zeros(0, np.int32))
    files = bpf_iter.open_files() if bpf_iter.available(proc_root) else None
    if files is None:
        return _scan_proc(proc_root, entries)
    table = _from_records(files, proc_root)
    # A process the iterator did not report (one that started meanwhile, say) is read
    # through /proc: the two ways together miss no process either would see.
    rest = _scan_proc(proc_root, [pid for pid in entries if pid not in table.fd_counts])
    ino = np.concatenate([table.inodes, rest.inodes])
    table.inodes, table.pids = by_inode(ino, np.concatenate([table.pids, rest.pids]))
    table.fd_counts.update(rest.fd_counts)
    table.names.update(rest.names)
    table.denied, table.vanished = rest.denied, rest.vanished
    return table


def _from_records(files: np.ndarray, proc_root: str) -> OwnerTable:
    """The table from the iterator's (pid, fd, inode) rows: what _scan_proc finds, without a
    system call per descriptor."""
    sockets = files[files["ino"] != 0]
    table = OwnerTable(*by_inode(sockets["ino"].astype(np.uint32),
                                 sockets["pid"].astype(np.int32)))
    every, counts = np.unique(files["pid"], return_counts=True)
    table.fd_counts = dict(zip(every.tolist(), counts.tolist(), strict=True))
    for pid in np.unique(table.pids).tolist():
        comm = read_comm(proc_root, pid)
        table.names[pid] = comm if comm is not None else "?"
    return table


def _scan_proc(proc_root: str, entries: list[int]) -> OwnerTable:
    """A readlink of every descriptor of these processes."""
    inodes = array("I")
    pids = array("i")
    table = OwnerTable(np.zeros(0, np.uint32), np.zeros(0, np.int32))
    for pid in entries:
        fd_dir = f"{proc_root}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            table.denied += 1
            continue
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            table.vanished += 1
            continue
        table.fd_counts[pid] = len(fds)
        found = False
        for fd in fds:
            inode = socket_inode(f"{fd_dir}/{fd}")
            if inode is not None:
                inodes.append(inode)
                pids.append(pid)
                found = True
        if found:
            comm = read_comm(proc_root, pid)
            table.names[pid] = comm if comm is not None else "?"
    ino = np.frombuffer(inodes, dtype=np.uint32) if inodes else np.zeros(0, np.uint32)
    pid_arr = np.frombuffer(pids, dtype=np.int32) if pids else np.zeros(0, np.int32)
    table.inodes, table.pids = by_inode(ino, pid_arr)
    return table


def socket_inode(fd_link: str) -> int | None:
    """The inode of the socket a /proc/PID/fd/N link names; None for anything else, or when
    the descriptor was closed meanwhile."""
    try:
        link = os.readlink(fd_link)
    except OSError:
        return None
    return int(link[len(SOCKET_PREFIX):-1]) if link.startswith(SOCKET_PREFIX) else None


def by_inode(ino: np.ndarray, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inode, pid) pairs as a lookup table: sorted by inode, one owner per inode (the
    lowest pid when a socket is shared, e.g. after fork)."""
    order = np.lexsort((pids, ino))
    ino, pids = ino[order], pids[order]
    first = np.ones(ino.shape[0], dtype=bool)
    first[1:] = ino[1:] != ino[:-1]
    return ino[first], pids[first]


def lookup(table: OwnerTable, inodes: np.ndarray) -> np.ndarray:
    """Owner pid of each socket inode, -1 if unknown (TIME_WAIT, request sockets have none)."""
    out = np.full(inodes.shape[0], -1, dtype=np.int32)
    if table.inodes.size == 0 or inodes.size == 0:
        return out
    low, high = int(table.inodes[0]), int(table.inodes[-1])
    if high - low < 8 * table.inodes.size + (1 << 20):
        # Inode numbers come from one counter, so owned sockets sit in a dense range: a
        # direct table answers a million lookups in milliseconds, where a binary search of
        # a million random keys takes a tenth of a second. Bounded to 32 bytes an owner.
        dense = np.full(high - low + 1, -1, np.int32)
        dense[table.inodes.astype(np.int64) - low] = table.pids
        inside = (inodes >= low) & (inodes <= high) & (inodes != 0)
        out[inside] = dense[inodes[inside].astype(np.int64) - low]
        return out
    idx = np.searchsorted(table.inodes, inodes)
    idx = np.minimum(idx, table.inodes.shape[0] - 1)
    hit = (table.inodes[idx] == inodes) & (inodes != 0)
    out[hit] = table.pids[idx[hit]]
    return out


def count_fds(pids: list[int], proc_root: str = "/proc") -> dict[int, int]:
    """Open files of these processes now (one listing each; gone processes left out)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = len(os.listdir(f"{proc_root}/{pid}/fd"))
        except OSError:
            continue
    return out
