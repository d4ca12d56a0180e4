"""The one face of the live sources: take a snapshot, or take a sample (counters, snapshot
with owners and tcp_info, counters again after an interval). Netlink first, else procfs."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model import kernel_state
from tcpdoctor.model.columns import BASE_COLUMNS, ID_COLUMNS
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import AF_INET, AF_INET6
from tcpdoctor.model.times import iso
from tcpdoctor.sources import netlink, netns
from tcpdoctor.sources.target import SOURCES, Target

if TYPE_CHECKING:
    from tcpdoctor.sources.owners import OwnerTable

def _read(source: str, families: tuple[int, ...], want: frozenset[str], info: bool,
          proc_root: str, mem: bool = False) -> tuple[dict[str, np.ndarray], str, list[str]]:
    notes: list[str] = []
    if source == "auto" and (info or mem):
        from tcpdoctor.sources import bpf_tcp

        # The per-socket figures through the kernel's TCP iterator where it may run: one
        # walk of the socket hash and no netlink message per socket (docs/benchmarks.md).
        got = bpf_tcp.read_sockets(want, info, families) if bpf_tcp.available(
            proc_root) else None
        if got is not None:
            return got, "bpf", notes
    if source in ("auto", "netlink"):
        try:
            return (netlink.read_sockets(want, info, families, mem=mem), "netlink", notes)
        except netlink.NetlinkUnavailable as exc:
            if source == "netlink":
                raise
            notes.append(Msg("netlink unavailable ({exc}); read /proc/net/tcp instead", exc=exc))
    from tcpdoctor.sources import procfs  # the fallback: loaded only when used

    cols, more = procfs.read_sockets(proc_root, families)
    if info or mem:
        notes.append(Msg("procfs has no tcp_info or buffer memory: idle-time and buffer figures "
                         "are unavailable"))
    return cols, "procfs", notes + more


def source_in_use() -> str:
    """Which source `--source auto` reads on this host, and why (for --version)."""
    from tcpdoctor.sources import bpf_tcp

    try:
        netlink.open_socket().close()
    except netlink.NetlinkUnavailable as exc:
        return Msg("/proc/net/tcp (netlink unavailable: {exc})", exc=exc)
    if bpf_tcp.available("/proc"):
        return Msg("netlink (NETLINK_SOCK_DIAG); tcp_info and buffer memory through a BPF "
                   "TCP iterator where the kernel loads it")
    return Msg("netlink (NETLINK_SOCK_DIAG)")


def take_snapshot(source: str = "auto", netns_name: str | None = None, ipv4: bool = True,
                  ipv6: bool = True, want: frozenset[str] | None = None, info: bool = False,
                  with_owners: bool = False, proc_root: str = "/proc",
                  mem: bool = False) -> Snapshot:
    """Every TCP socket of this host (or of netns_name) as a columnar Snapshot; info adds
    tcp_info and buffer memory, mem buffer memory only."""
    if source not in SOURCES:
        raise TcpDoctorError(Msg("unknown source {source!r} (choose from {choices})",
                                 source=source, choices=', '.join(SOURCES)))
    families = tuple(f for f, on in ((AF_INET, ipv4), (AF_INET6, ipv6)) if on)
    wanted = frozenset(BASE_COLUMNS) if want is None else want | {"state"}
    if with_owners:
        wanted |= {"inode"}
    cols, used, notes = netns.run_in(
        netns_name, lambda: _read(source, families, wanted, info, proc_root, mem))
    # Under `ip netns exec NAME` or in a container, the report names that namespace.
    where = netns_name or (netns.current_name(proc_root) if proc_root == "/proc" else None)
    snap = Snapshot(cols, used, host=socket.gethostname(), kernel=os.uname().release,
                    taken_at=iso(), netns=where, notes=notes)
    if with_owners:
        attach_owners(snap, proc_root)
    return snap


def attach_owners(snap: Snapshot, proc_root: str = "/proc",
                  table: OwnerTable | None = None) -> OwnerTable:
    """The owner of each socket (table: a scan already made, else one now)."""
    from tcpdoctor.sources import owners

    if table is None:
        table = owners.scan(proc_root)
    snap.columns["pid"] = owners.lookup(table, snap.columns["inode"])
    used = np.unique(snap.columns["pid"])
    snap.process_names = {int(p): table.names.get(int(p), "?") for p in used if p >= 0}
    snap.notes.extend(table.notes())
    if os.geteuid() != 0 and not table.denied:
        snap.notes.append(Msg("not running as root: owners of other users' sockets may be "
                              "missing"))
    return table


@dataclass
class LiveSample:
    snap: Snapshot
    kernel: KernelState
    deltas: dict[str, int] | None  # counter increases since the first reading
    interval: float  # seconds between the two readings (0: one reading, no rates)
    owners: OwnerTable | None
    # The table read again at the second reading (forecasts), `later_seconds` after snap,
    # and the open files then of the processes that own sockets.
    later: Snapshot | None = None
    later_seconds: float = 0.0
    later_fds: dict[int, int] | None = None


def read_kernel(target: Target, with_sysctls: bool = True) -> KernelState:
    """Kernel figures of the target namespace; global sysctls from the host's."""
    from tcpdoctor.sources import kstate

    state = netns.run_in(target.netns,
                         lambda: kstate.read_state(target.proc_root, with_sysctls))
    if with_sysctls and target.netns is not None:
        kernel_state.fill_global_sysctls(state, kstate.read_sysctls(
            target.proc_root, tuple(kernel_state.GLOBAL_SYSCTLS)))
    return state


def sample(target: Target, interval: float = 1.0,
           previous: KernelState | None = None) -> LiveSample:
    """Counters, the snapshot (tcp_info, owners), then counters again after `interval`.

    With `previous` (the kernel figures of an earlier sample, as watch, record and the
    exporter keep them), the rates are taken since then and no second reading is made."""
    first = read_kernel(target)
    # Forecasts follow sockets from one reading to the next by their cookies.
    identity = target.identity or (previous is None and interval > 0)
    want = frozenset(BASE_COLUMNS) | frozenset(ID_COLUMNS) if identity else None
    started = time.monotonic()
    scan = _Meanwhile(target.proc_root) if target.owners else None
    snap = take_snapshot(target.source, target.netns, target.ipv4, target.ipv6, want=want,
                         info=True, proc_root=target.proc_root)
    table = attach_owners(snap, target.proc_root, scan.result()) if scan else None
    if previous is not None:
        return LiveSample(snap, first, kernel_state.deltas(previous, first),
                          first.taken - previous.taken, table)
    if interval <= 0:
        return LiveSample(snap, first, None, 0.0, table)
    remaining = interval - (time.monotonic() - first.taken)
    if remaining > 0:
        time.sleep(remaining)
    second = read_kernel(target, with_sysctls=False)
    second.sysctls = dict(first.sysctls)
    _reread_counts(target, second)
    second.previous = first
    later, later_fds, gap = _read_again(target, snap, table, started)
    return LiveSample(snap, second, kernel_state.deltas(first, second),
                      second.taken - first.taken, table, later, gap, later_fds)


class _Meanwhile:
    """The owner scan, started on its own thread: it reads the processes' file tables, not
    the socket table, so it runs while the dump runs (the kernel's work of both then
    shares the CPUs)."""

    def __init__(self, proc_root: str) -> None:
        from tcpdoctor.sources import owners

        self.table: OwnerTable | None = None
        self.error: BaseException | None = None

        def scan() -> None:
            try:
                self.table = owners.scan(proc_root)
            except BaseException as exc:  # raised in the caller, by result()
                self.error = exc
        self.thread = threading.Thread(target=scan, name="tcpdoctor-owners", daemon=True)
        self.thread.start()

    def result(self) -> OwnerTable:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.table is not None
        return self.table


def _reread_counts(target: Target, state: KernelState) -> None:
    """The sysctls that are counts, not settings (conntrack entries), read again."""
    from tcpdoctor.sources import kstate

    keys = ("net.netfilter.nf_conntrack_count",)
    state.sysctls.update(netns.run_in(target.netns,
                                      lambda: kstate.read_sysctls(target.proc_root, keys)))


def _read_again(target: Target, snap: Snapshot, table: OwnerTable | None,
                started: float) -> tuple[Snapshot | None, dict[int, int] | None, float]:
    """The table once more (no tcp_info: states, addresses, timers, cookies) and the open
    files of the processes that own sockets, for the forecasts' rates."""
    if "cookie" not in snap.columns:
        return None, None, 0.0
    want = frozenset({"state", "sport", "dport", "laddr_hi", "laddr_lo", "raddr_hi",
                      "raddr_lo", "expires", "inode"}) | frozenset(ID_COLUMNS)
    gap = time.monotonic() - started
    later = take_snapshot(target.source, target.netns, target.ipv4, target.ipv6, want=want,
                          proc_root=target.proc_root)
    fds = None
    if table is not None:
        from tcpdoctor.sources.owners import count_fds

        fds = count_fds(list(snap.process_names), target.proc_root)
    return later, fds, gap
