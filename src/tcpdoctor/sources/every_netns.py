"""Reads across many network namespaces (--netns all): one process, a small pool of helper
threads that setns() from one namespace to the next, each namespace's socket table read
once, and one owner scan for all of them (socket inodes are unique host-wide).

A cheap first pass reads each namespace's sockstat: namespaces without a TCP socket are
not dumped at all, so time and memory follow sockets, not namespaces.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model import kernel_state
from tcpdoctor.model.columns import BASE_COLUMNS
from tcpdoctor.model.kernel_state import CPU_COUNTER_PREFIXES, GLOBAL_SYSCTLS, KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.times import iso
from tcpdoctor.sources import kstate, namespaces, netns, procfs
from tcpdoctor.sources.live import LiveSample
from tcpdoctor.sources.namespaces import Netns
from tcpdoctor.sources.target import Target

T = TypeVar("T")
# Threads that setns and dump. Where namespaces share the established hash, most of a
# dump is the kernel walking it (the GIL released: more threads help, 4 beat 2 on 2 CPUs);
# where each has its own, Python's decoding dominates (2 beat 4). One more than CPUs.
WORKERS = min(8, (os.cpu_count() or 1) + 1)


def in_each(spaces: list[Netns], fn: Callable[[Netns], T],
            workers: int = WORKERS) -> list[T | BaseException]:
    """fn(ns) inside each namespace, in order; a namespace that vanished (or any error)
    yields its exception instead of a result."""
    results: list[T | BaseException] = [LookupError(Msg("not run"))] * len(spaces)
    order = itertools.count()
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(order)
            if i >= len(spaces):
                return
            try:
                fd = namespaces.open_netns(spaces[i])
                try:
                    netns.enter_fd(fd, Msg("network namespace {name}",
                                           name=spaces[i].label))
                finally:
                    os.close(fd)
                results[i] = fn(spaces[i])
            except BaseException as exc:  # reported per namespace by the caller
                results[i] = exc

    threads = [threading.Thread(target=work, daemon=True, name="tcpdoctor-sweep")
               for _ in range(max(1, min(workers, len(spaces))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@dataclass
class Swept:
    """What a sweep read: per namespace, its sample (None when it had no TCP socket or
    vanished), and notes about the sweep itself."""

    spaces: list[Netns]
    samples: list[LiveSample | None]
    notes: list[str] = field(default_factory=list)


def _busy(state: KernelState | BaseException) -> bool:
    """Whether sockstat says the namespace holds TCP sockets (unknown counts as yes), or
    its conntrack table holds entries (a NAT gateway without a socket of its own still
    holds its pods' connections: the diagnosis must look at it)."""
    if tcp_sockets(state) != 0:
        return True
    return isinstance(state, KernelState) and (state.conntrack_entries() or 0) > 0


def tcp_sockets(state: KernelState | BaseException) -> int:
    """TCP sockets sockstat counts (in use, TIME_WAIT, IPv6 in use); -1 when unknown."""
    if isinstance(state, BaseException) or "TCP" not in state.sockstat:
        return -1
    tcp, tcp6 = state.sockstat.get("TCP", {}), state.sockstat.get("TCP6", {})
    return int(tcp.get("inuse", 1) + tcp.get("tw", 0) + tcp6.get("inuse", 0))


def _snapshot(target: Target, info: bool, mem: bool, want: frozenset[str] | None,
              ) -> Callable[[Netns], Snapshot]:
    from tcpdoctor.sources import netlink

    fams = tuple(f for f, on in ((2, target.ipv4), (10, target.ipv6)) if on)
    wanted = frozenset(BASE_COLUMNS) if want is None else want | {"state", "inode"}

    def read(ns: Netns) -> Snapshot:
        try:
            cols = netlink.read_sockets(wanted, info, fams, parallel=False, mem=mem)
            used = "netlink"
        except netlink.NetlinkUnavailable:
            cols, _ = procfs.read_sockets(target.proc_root, fams)
            used = "procfs"
        return Snapshot(cols, used, host=socket.gethostname(), kernel=os.uname().release,
                        taken_at=iso(), netns=ns.label)
    return read


def sample_all(target: Target, spaces: list[Netns], interval: float, info: bool = True,
               mem: bool = False, want: frozenset[str] | None = None,
               kernel: bool = True, previous: dict[int, KernelState] | None = None) -> Swept:
    """Counters (when kernel), the snapshots, owners once, counters again after interval.

    previous (namespace inode -> its last counters, kept by a repeated sweep such as the
    exporter's): the rates are taken since then, and it is updated."""
    out = Swept(spaces, [None] * len(spaces))
    started = time.monotonic()
    host_globals = kstate.read_sysctls(target.proc_root, tuple(GLOBAL_SYSCTLS))
    host = _host_wide(target, out) if kernel else None
    firsts = (in_each(spaces, lambda ns: _kernel(target, host_globals, host)) if host
              else sockstats(target, spaces))
    busy = [i for i, k in enumerate(firsts) if _busy(k)]
    snaps = in_each([spaces[i] for i in busy], _snapshot(target, info, mem, want))
    vanished = []
    for i, snap in zip(busy, snaps, strict=True):
        if isinstance(snap, BaseException):
            vanished.append(f"{spaces[i].label} ({snap})")
            continue
        first = firsts[i]
        state = first if isinstance(first, KernelState) else KernelState(time.monotonic())
        one = out.samples[i] = LiveSample(snap, state, None, 0.0, None)
        if previous is not None:
            before = previous.get(spaces[i].inode)
            if before is not None and before.counters and state.counters:
                one.deltas = kernel_state.deltas(before, state)
                one.interval = state.taken - before.taken
            previous[spaces[i].inode] = state
    if target.owners:
        _owners([s for s in out.samples if s is not None], target.proc_root)
    if kernel and interval > 0:
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
        later = _host_wide(target)
        seconds = in_each([spaces[i] for i in busy], lambda ns: _kernel(target, None, later))
        for i, second in zip(busy, seconds, strict=True):
            got = out.samples[i]
            if got is not None and isinstance(second, KernelState) and got.kernel.counters:
                second.sysctls = got.kernel.sysctls
                got.deltas = kernel_state.deltas(got.kernel, second)
                got.interval = second.taken - got.kernel.taken
                got.kernel = second
    if vanished:
        out.notes.append(Msg("{n} namespace(s) could not be read (vanished during the sweep, "
                             "or no permission): {which}", n=len(vanished),
                             which="; ".join(vanished[:5])))
    idle = len(spaces) - len(busy)
    if idle:
        out.notes.append(Msg("{idle} namespace(s) without TCP sockets or conntrack entries "
                             "were not read", idle=idle))
    return out


def sockstats(target: Target, spaces: list[Netns]) -> list[KernelState | BaseException]:
    """Each namespace's sockstat, read through /proc/PID/net of a process inside it where
    there is one (no thread has to enter it), else from inside."""
    out: list[KernelState | BaseException] = []
    entered = []
    for i, ns in enumerate(spaces):
        path = f"{target.proc_root}/{ns.pid}" if ns.pid is not None else None
        try:
            if path is None or os.stat(f"{path}/ns/net").st_ino != ns.inode:
                raise LookupError(Msg("no process inside"))
            out.append(_sockstat(target, f"{path}/net"))
        except (OSError, LookupError, TcpDoctorError):
            out.append(LookupError(Msg("not read")))
            entered.append(i)
    for i, got in zip(entered, in_each([spaces[i] for i in entered],
                                       lambda ns: _sockstat(target)), strict=True):
        out[i] = got
    return out


def _sockstat(target: Target, net: str | None = None) -> KernelState:
    """Just sockstat: enough to skip namespaces without TCP sockets (states, top)."""
    state = KernelState(time.monotonic())
    net = net or procfs.net_dir(target.proc_root)
    for name in ("sockstat", "sockstat6"):
        with open(f"{net}/{name}", encoding="utf-8", errors="replace") as fh:
            state.sockstat.update(kstate.parse_key_value_lines(fh.read(), f"{net}/{name}"))
    return state


def _host_wide(target: Target, out: Swept | None = None) -> KernelState:
    """The figures every namespace shares (slab sizes, RAM, CPU time), read once per
    reading, not once per namespace; what could not be read is noted once, in out."""
    host = KernelState(time.monotonic())
    kstate.read_costs(host, target.proc_root)
    if out is not None:
        out.notes.extend(host.notes)
    return host


def _kernel(target: Target, host_globals: dict[str, str | None] | None,
            host: KernelState) -> KernelState:
    state = kstate.read_state(target.proc_root, with_sysctls=host_globals is not None,
                              host_wide=False)
    if host_globals is not None:
        kernel_state.fill_global_sysctls(state, host_globals)
    state.slab, state.mem_total, state.page_size = host.slab, host.mem_total, host.page_size
    state.counters.update({k: v for k, v in host.counters.items()
                           if k.startswith(CPU_COUNTER_PREFIXES)})
    return state


def _owners(samples: list[LiveSample], proc_root: str) -> None:
    """One /proc/*/fd scan serves every namespace: socket inodes are unique host-wide."""
    from tcpdoctor.sources import owners

    table = owners.scan(proc_root)
    for s in samples:
        s.snap.columns["pid"] = owners.lookup(table, s.snap.columns["inode"])
        used = np.unique(s.snap.columns["pid"])
        s.snap.process_names = {int(p): table.names.get(int(p), "?") for p in used if p >= 0}
        s.owners = table
    if samples:
        samples[0].snap.notes.extend(table.notes())


def discover(target: Target) -> namespaces.Discovered:
    return namespaces.discover(target.proc_root)


def merged(target: Target, spec: str = "all", mem: bool = False,
           want: frozenset[str] | None = None, info: bool = False,
           kernel: bool = False) -> Snapshot:
    """One snapshot of every namespace --netns SPEC names, with a `netns_id` column and
    the namespaces in `spaces` (states, top)."""
    found = discover(target)
    spaces = namespaces.select(found, spec)
    got = sample_all(target, spaces, 0.0, info=info, mem=mem, want=want, kernel=kernel)
    snap = combine([ns.as_json() for ns in spaces], got.samples, found.notes + got.notes)
    snap.netns = spec
    for s in got.samples:
        if s is not None:
            snap.notes.extend(s.snap.notes)
    return snap


def combine(where: list[dict[str, Any]], samples: list[LiveSample | None],
            notes: list[str], keep: frozenset[str] | None = None) -> Snapshot:
    """The sockets of many namespaces as one snapshot: a `netns_id` column indexes
    `where` (idle namespaces, whose sample is None, keep their place). keep: only these
    columns are joined (a join by 4-tuple needs no tcp_info)."""
    from tcpdoctor.model.columns import concat_columns

    parts: list[dict[str, np.ndarray]] = []
    names: dict[int, str] = {}
    for i, s in enumerate(samples):
        if s is not None:
            cols = {k: v for k, v in s.snap.columns.items() if keep is None or k in keep}
            cols["netns_id"] = np.full(len(s.snap), i, np.uint16)
            parts.append(cols)
            names.update(s.snap.process_names)
    common = set.intersection(*(set(p) for p in parts)) if parts else {"state"}
    dtypes = {k: str(parts[0][k].dtype) if parts else "u1" for k in common}
    cols = concat_columns(parts, dtypes)
    cols.setdefault("netns_id", np.zeros(0, np.uint16))
    kernels = [s.kernel if s is not None else None for s in samples]
    return Snapshot(cols, "netlink", host=socket.gethostname(), kernel=os.uname().release,
                    taken_at=iso(), netns="all", notes=list(notes),
                    process_names=names, spaces=list(where),
                    space_kernels=kernels if any(k is not None for k in kernels) else [])
