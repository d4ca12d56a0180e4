"""A live check: counters, snapshot (with owners and tcp_info), counters again after --interval."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tcpdoctor.model import Snapshot
from tcpdoctor.sources import kstate, netns
from tcpdoctor.sources.collect import attach_owners, take_snapshot
from tcpdoctor.sources.owners import OwnerTable


@dataclass
class LiveSample:
    snap: Snapshot
    kernel: kstate.KernelState
    deltas: dict[str, int] | None
    interval: float
    owners: OwnerTable | None


def sample(netns_name: str | None = None, interval: float = 1.0, source: str = "auto",
           ipv4: bool = True, ipv6: bool = True, with_owners: bool = True,
           proc_root: str = "/proc") -> LiveSample:
    first = netns.run_in(netns_name, lambda: kstate.read_state(proc_root))
    if netns_name is not None:
        kstate.fill_global_sysctls(first, kstate.read_sysctls(
            proc_root, tuple(kstate.GLOBAL_SYSCTLS)))
    snap = take_snapshot(source, netns_name, ipv4, ipv6, info=True, proc_root=proc_root)
    table = attach_owners(snap, proc_root) if with_owners else None
    if interval <= 0:
        return LiveSample(snap, first, None, 0.0, table)
    remaining = interval - (time.monotonic() - first.taken)
    if remaining > 0:
        time.sleep(remaining)
    second = netns.run_in(netns_name, lambda: kstate.read_state(proc_root, with_sysctls=False))
    second.sysctls = first.sysctls
    return LiveSample(snap, second, kstate.deltas(first, second),
                      second.taken - first.taken, table)
