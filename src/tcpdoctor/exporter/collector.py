"""Prometheus exporter: a custom collector that takes a fresh snapshot per scrape.

Label cardinality is bounded whatever the socket count: per-port and per-remote series are
limited to the top N groups plus one "other" series per state. Concurrent scrapes share the
snapshot in flight; a snapshot slower than --max-scrape-seconds is answered with the
previous one, flagged by tcpdoctor_scrape_stale.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tcpdoctor.analysis import groups
from tcpdoctor.analysis.registry import Finding
from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.diagnose.repeat import Repeated
from tcpdoctor.model.conntrack import CT_STATE_NAMES
from tcpdoctor.model.kernel_state import RATE_COUNTERS, KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_NAMES, TCP_LISTEN
from tcpdoctor.sources.target import Target
from tcpdoctor.util.text import visible


@dataclass
class Sample:
    snap: Snapshot
    kernel: KernelState | None
    findings: list[Finding]
    duration: float
    taken: float = field(default_factory=time.monotonic)
    cost: dict[str, Any] = field(default_factory=dict)  # the report's cost section
    forecasts: list[dict[str, Any]] = field(default_factory=list)  # the report's forecasts
    # With --trace: connect() calls refused a local port since the exporter started, per
    # (reason, destination): a counter, as Prometheus wants it.
    connect_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    conntrack: dict[str, Any] | None = None  # the report's conntrack section


# Every namespace of the host (--all-netns): each namespace's names and its sample.
EveryNetnsSample = list[tuple[dict[str, Any], Sample]]


def readings(target: Target, thresholds: Thresholds | None, every_netns: bool = False,
             trace: bool = False, on_round: Callable[[list[tuple[dict[str, Any], Finding]]],
                                                     None] | None = None,
             ) -> Callable[[], Sample | EveryNetnsSample]:
    """Diagnoses of one namespace (or every one), each with the counter rates since the
    previous scrape, so that rate-based findings (ListenOverflows, TCPTimeWaitOverflow,
    syncookies) reach Prometheus exactly as `check` reports them. trace: one trace all
    along (one namespace), read in windows between scrapes; on_round: given each round's
    findings with where they were found."""
    repeat = Repeated(target, thresholds, every_netns=every_netns, trace=trace)
    failures: Counter[tuple[str, str]] = Counter()

    def take() -> Sample | EveryNetnsSample:
        seen = []
        for s in repeat():
            for f in (s.report.trace or {}).get("connect_failures", []):
                failures[(f["reason"], f["destination"])] += f["count"]
            seen.append((s.where, Sample(s.report.snap, s.sample.kernel, s.report.findings,
                                         s.duration, cost=s.report.cost,
                                         forecasts=s.report.forecasts or [],
                                         connect_failures=dict(failures),
                                         conntrack=s.report.conntrack)))
        if on_round is not None:  # e.g. post the findings to Alertmanager
            on_round([(where, f) for where, sample in seen for f in sample.findings])
        return seen if every_netns else seen[0][1]
    return take


T = TypeVar("T")


class Shared(Generic[T]):
    """Callers arriving while a value is being computed wait for that same computation.

    Used twice: per namespace for the sample, and around the whole exposition, so that 200
    simultaneous scrapes cost one sample and one rendering.
    """

    def __init__(self, fn: Callable[[], T], max_seconds: float | None = None) -> None:
        self._fn = fn
        self._max = max_seconds
        self._lock = threading.Lock()
        self._inflight: Future[T] | None = None
        self.last: T | None = None

    def _run(self, fut: Future[T]) -> None:
        try:
            result = self._fn()
        except BaseException as exc:  # handed to every waiting scrape
            with self._lock:
                self._inflight = None
            fut.set_exception(exc)
            return
        with self._lock:
            self.last = result
            self._inflight = None
        fut.set_result(result)

    def get(self) -> tuple[T, bool]:
        """(value, stale). Raises what fn raised if there is no previous value."""
        with self._lock:
            fut = self._inflight
            if fut is None:
                fut = self._inflight = Future()
                threading.Thread(target=self._run, args=(fut,), daemon=True,
                                 name="tcpdoctor-sample").start()
        try:
            return fut.result(timeout=self._max), False
        except FutureTimeout:
            if self.last is not None:
                return self.last, True
            return fut.result(), False


def _label_groups(snap: Snapshot, key: str, top_n: int) -> list[tuple[str, dict[str, int]]]:
    """Top N groups by count with their states, then 'other' with the rest's states."""
    if len(snap) == 0:
        return []
    result = groups.group(snap, [key], None)
    out = [(str(g["key"][key]), g["states"]) for g in result.groups[:top_n]]
    rest: dict[str, int] = {}
    for g in result.groups[top_n:]:
        for state, n in g["states"].items():
            rest[state] = rest.get(state, 0) + n
    if rest:
        out.append(("other", rest))
    return out


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


class TcpCollector(Collector):
    """Builds fresh metric families on every scrape, so no series goes stale."""

    def __init__(self, readers: dict[str, Shared[Sample | EveryNetnsSample]], top_n: int = 10,
                 on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self.readers = readers
        self.top_n = top_n
        self.on_error = on_error or (lambda netns, exc: None)

    def collect(self) -> Iterator[Metric]:
        fams = _Families()
        for netns, reader in self.readers.items():
            try:
                got, stale = reader.get()
            except Exception as exc:  # the namespace vanished, a permission error...
                fams.up.add_metric([netns], 0)
                fams.error.add_metric([netns, _reason(exc)], 1)
                self.on_error(netns, exc)
                continue
            fams.up.add_metric([netns], 1)
            fams.stale.add_metric([netns], 1 if stale else 0)
            if isinstance(got, list):
                self._every_netns(fams, got)
            else:
                self._one(fams, netns, got)
        yield from fams.all()

    def _every_netns(self, f: _Families, items: EveryNetnsSample) -> None:
        """The top N namespaces by sockets under their own label (and an info series with
        their pod and container), the rest summed under netns="other"."""
        items = sorted(items, key=lambda it: (-it[1].snap.count(), str(it[0]["netns"])))
        for where, sample in items[:self.top_n]:
            f.info.add_metric([str(where["netns"]), str(where["netns_inode"]),
                               where["pod"] or "", where["container"] or ""], 1)
            self._one(f, str(where["netns"]), sample)
        rest = items[self.top_n:]
        if not rest:
            return
        states = dict.fromkeys(STATE_NAMES, 0)
        found: dict[tuple[str, str], int] = {}
        for _, sample in rest:
            for state, n in sample.snap.state_counts().items():
                states[state] += n
            for finding in sample.findings:
                key = (finding.id, str(finding.severity))
                found[key] = found.get(key, 0) + 1
        for state, n in states.items():
            f.sockets.add_metric(["other", state], n)
        f.total.add_metric(["other"], sum(states.values()))
        f.non_est.add_metric(["other"], sum(states.values()) - states["ESTABLISHED"])
        for (fid, sev), n in found.items():
            f.finding.add_metric(["other", fid, sev], n)

    def _one(self, f: _Families, ns: str, s: Sample) -> None:
        summary = s.snap.summary()
        for state in STATE_NAMES:
            f.sockets.add_metric([ns, state], summary["states"][state])
        f.total.add_metric([ns], summary["total"])
        f.non_est.add_metric([ns], summary["non_established"])
        for port, states in _label_groups(s.snap, "service-port", self.top_n):
            for state, n in states.items():
                f.by_port.add_metric([ns, port, state], n)
        for remote, states in _label_groups(s.snap, "remote-ip", self.top_n):
            for state, n in states.items():
                f.by_remote.add_metric([ns, remote, state], n)
        for finding in s.findings:
            f.finding.add_metric([ns, finding.id, finding.severity], 1)
        f.duration.add_metric([ns], s.duration)
        self._listeners(f, ns, s.snap)
        self._cost(f, ns, s.cost)
        # Only what runs out (a plateau has no time left); the nearest top N, bounded.
        ending = [x for x in s.forecasts if x["seconds_left"] is not None][:self.top_n]
        for x in ending:
            f.exhaustion.add_metric([ns, x["resource"], x["scope"]], x["seconds_left"])
        self._failures(f, ns, s.connect_failures)
        if s.kernel is not None:
            self._kernel(f, ns, s.kernel)
        if s.conntrack is not None:
            self._conntrack(f, ns, s.conntrack)

    def _conntrack(self, f: _Families, ns: str, table: dict[str, Any]) -> None:
        """The table by state (every state, zeros too), its ghosts, and who fills it: the
        top N origins and destinations, the rest as "other"."""
        for state in CT_STATE_NAMES:
            f.ct_entries.add_metric([ns, state], table["states"].get(state, 0))
        f.ct_ghosts.add_metric([ns], table["ghosts"])
        for rows, family, key in ((table["by_namespace"], f.ct_by_origin, "namespace"),
                                  (table["by_destination"], f.ct_by_destination,
                                   "destination")):
            shown = rows[:self.top_n]
            for row in shown:
                family.add_metric([ns, visible(str(row[key]))], row["entries"])
            rest = table["entries"] - sum(r["entries"] for r in shown)
            if rest:
                family.add_metric([ns, "other"], rest)
        for row in table["snat"][:self.top_n]:
            labels = [ns, row["translated_source"], row["destination"]]
            f.snat_used.add_metric(labels, row["ports_used"])
            f.snat_available.add_metric(labels, row["ports_available"])

    def _failures(self, f: _Families, ns: str, failures: dict[tuple[str, str], int]) -> None:
        """The top N destinations by name, the rest summed as destination="other" (a
        destination seen once stays: counters must not go back)."""
        ranked = sorted(failures.items(), key=lambda kv: -kv[1])
        other: Counter[str] = Counter()
        for i, ((reason, dest), n) in enumerate(ranked):
            if i < self.top_n:
                f.connect_failures.add_metric([ns, reason, dest], n)
            else:
                other[reason] += n
        for reason, n in other.items():
            f.connect_failures.add_metric([ns, reason, "other"], n)

    def _listeners(self, f: _Families, ns: str, snap: Snapshot) -> None:
        c = snap.columns
        idx = np.flatnonzero((c["state"] == TCP_LISTEN) & (c["wqueue"] > 0))
        fill = c["rqueue"][idx] / c["wqueue"][idx]
        for i in idx[np.argsort(-fill, kind="stable")][:self.top_n]:
            labels = [ns, str(int(c["sport"][i]))]
            f.lq_len.add_metric(labels, int(c["rqueue"][i]))
            f.lq_limit.add_metric(labels, int(c["wqueue"][i]))

    def _cost(self, f: _Families, ns: str, cost: dict[str, Any]) -> None:
        for state, row in cost.get("by_state", {}).items():
            f.memory.add_metric([ns, state], row["memory_bytes"])
        for p in cost.get("processes", [])[:self.top_n]:
            labels = [ns, str(p["pid"]), p["name"]]
            f.proc_memory.add_metric(labels, p["memory_bytes"])
            f.proc_fds.add_metric(labels, p["fds"])

    def _kernel(self, f: _Families, ns: str, k: KernelState) -> None:
        tcp = k.sockstat.get("TCP", {})
        for key, value in tcp.items():
            f.sockstat.add_metric([ns, key], value)
        mem = k.sysctl_ints("net.ipv4.tcp_mem")
        ratios = {
            "tw_buckets": _ratio(tcp.get("tw"), k.sysctl_int("net.ipv4.tcp_max_tw_buckets")),
            "orphans": _ratio(tcp.get("orphan"), k.sysctl_int("net.ipv4.tcp_max_orphans")),
            "tcp_mem": _ratio(tcp.get("mem"), mem[2] if mem and len(mem) == 3 else None),
            "conntrack": _ratio(k.sysctl_int("net.netfilter.nf_conntrack_count"),
                                k.sysctl_int("net.netfilter.nf_conntrack_max")),
        }
        for name, ratio in ratios.items():
            if ratio is not None:
                f.usage.add_metric([ns, name], ratio)
        for name in RATE_COUNTERS:
            if name in k.counters:
                f.counters.add_metric([ns, name], k.counters[name])


class _Families:
    def __init__(self) -> None:
        g = GaugeMetricFamily
        self.up = g("tcpdoctor_up", "1 if the namespace could be sampled", labels=["netns"])
        self.error = g("tcpdoctor_scrape_error", "1 while sampling the namespace fails, with "
                       "the reason (bounded: the error's first 120 characters)",
                       labels=["netns", "error"])
        self.stale = g("tcpdoctor_scrape_stale",
                       "1 if this scrape served the previous sample (the new one was too slow)",
                       labels=["netns"])
        self.sockets = g("tcpdoctor_sockets", "TCP sockets per state (request sockets count "
                         "as SYN_RECV)", labels=["netns", "state"])
        self.total = g("tcpdoctor_sockets_all", "TCP sockets, LISTEN included, as ss -tan lists "
                       "them", labels=["netns"])
        self.non_est = g("tcpdoctor_sockets_non_established", "TCP sockets not ESTABLISHED",
                         labels=["netns"])
        self.by_port = g("tcpdoctor_sockets_by_port", "TCP sockets per service port (the local "
                         "port of this host's listeners, else the remote port; top N, the rest "
                         "in port=\"other\") and state", labels=["netns", "port", "state"])
        self.by_remote = g("tcpdoctor_sockets_by_remote", "TCP sockets per remote address (top "
                           "N, the rest in remote=\"other\") and state",
                           labels=["netns", "remote", "state"])
        self.finding = g("tcpdoctor_finding", "1 while a finding is active (with --all-netns, "
                         "netns=\"other\" counts the namespaces beyond the top N that have it)",
                         labels=["netns", "id", "severity"])
        self.info = g("tcpdoctor_netns_info", "With --all-netns: the pod and container of each "
                      "namespace exported by name", labels=["netns", "netns_inode", "pod",
                                                            "container"])
        self.duration = g("tcpdoctor_scrape_duration_seconds", "Time taken by the sample",
                          labels=["netns"])
        self.lq_len = g("tcpdoctor_listen_queue_length", "Accept queue length of the fullest "
                        "listeners", labels=["netns", "port"])
        self.lq_limit = g("tcpdoctor_listen_queue_limit", "Accept queue limit (backlog) of the "
                          "fullest listeners", labels=["netns", "port"])
        self.sockstat = g("tcpdoctor_sockstat_tcp", "/proc/net/sockstat TCP figures (mem in "
                          "pages; tw includes FIN_WAIT2 minisockets)", labels=["netns", "key"])
        self.usage = g("tcpdoctor_usage_ratio", "Usage against the kernel limit: tw_buckets "
                       "(tcp_max_tw_buckets), orphans (tcp_max_orphans), tcp_mem (high), "
                       "conntrack (nf_conntrack_max)", labels=["netns", "limit"])
        self.memory = g("tcpdoctor_socket_memory_bytes", "Kernel memory the sockets hold per "
                        "state: slab objects (socket, inode, file) plus buffers (skmem)",
                        labels=["netns", "state"])
        self.proc_memory = g("tcpdoctor_process_socket_memory_bytes", "Kernel memory held by "
                             "the sockets of the processes holding the most (top N)",
                             labels=["netns", "pid", "process"])
        self.proc_fds = g("tcpdoctor_process_socket_fds", "Socket file descriptors of the same "
                          "processes", labels=["netns", "pid", "process"])
        self.exhaustion = g("tcpdoctor_exhaustion_seconds", "Seconds until a resource runs "
                            "out at the rate measured since the previous scrape (ports per "
                            "destination, tw_buckets, orphans, tcp_mem, conntrack, open_files "
                            "per process); absent when nothing runs out",
                            labels=["netns", "resource", "scope"])
        self.connect_failures = CounterMetricFamily(
            "tcpdoctor_connect_failures", "With --trace: connect() calls refused a local port "
            "(EADDRNOTAVAIL) since the exporter started, per destination (top N, the rest as "
            "destination=\"other\")", labels=["netns", "reason", "destination"])
        self.ct_entries = g("tcpdoctor_conntrack_entries", "TCP entries of the namespace's "
                            "conntrack table per state", labels=["netns", "state"])
        self.ct_ghosts = g("tcpdoctor_conntrack_ghost_entries", "Open conntrack entries whose "
                           "local socket is gone", labels=["netns"])
        self.ct_by_origin = g("tcpdoctor_conntrack_entries_by_origin", "Conntrack entries per "
                              "originating namespace or pod (top N, the rest as \"other\"; "
                              "\"elsewhere\": not this host)", labels=["netns", "origin"])
        self.ct_by_destination = g("tcpdoctor_conntrack_entries_by_destination", "Conntrack "
                                   "entries per original destination ip:port (top N, the rest "
                                   "as \"other\")", labels=["netns", "destination"])
        self.snat_used = g("tcpdoctor_snat_ports_used", "Source ports NAT maps towards one "
                           "destination from one translated address (top N)",
                           labels=["netns", "source", "destination"])
        self.snat_available = g("tcpdoctor_snat_ports_available", "Source ports the NAT range "
                                "offers for the same mapping", labels=["netns", "source",
                                                                       "destination"])
        self.counters = CounterMetricFamily("tcpdoctor_kernel_counter", "TcpExt/Tcp/conntrack "
                                            "counters since boot", labels=["netns", "counter"])

    def all(self) -> list[Metric]:
        return [v for v in vars(self).values() if isinstance(v, Metric)]


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]


def build_registry(readers: dict[str, Callable[[], Sample | EveryNetnsSample]], top_n: int,
                   max_seconds: float,
                   on_error: Callable[[str, BaseException], None] | None = None,
                   ) -> CollectorRegistry:
    """readers: netns label ("host" for the host) -> a function reading one Sample (see
    readings())."""
    shared = {label: Shared(fn, max_seconds) for label, fn in readers.items()}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TcpCollector(shared, top_n, on_error))
    return registry
