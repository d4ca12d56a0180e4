"""The kernel figures behind the rules (sockstat, counters, sysctls, file-nr), as data.

Sources fill a KernelState; analysis reads it. The tables here say which figures exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Sysctls the rules read (names as `sysctl` prints them). Global keys exist only in the
# initial namespace (docs/kernel.md); inside another namespace they are read from the host.
SYSCTLS: tuple[str, ...] = (
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_tw_recycle",
    "net.ipv4.tcp_tw_timeout",  # Alibaba Cloud Linux only: detect, never assume
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_orphan_retries",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_ehash_entries",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "fs.file-max",
    "fs.nr_open",
)
GLOBAL_SYSCTLS = frozenset({"net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans", "fs.file-max",
                            "fs.nr_open"})
# TcpExt/Tcp counters that mean something only as rates (monotonic since boot).
RATE_COUNTERS: tuple[str, ...] = (
    "TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPTimeWaitOverflow",
    "TcpExt.TCPReqQFullDrop", "TcpExt.TCPReqQFullDoCookies", "TcpExt.SyncookiesSent",
    "TcpExt.SyncookiesRecv", "TcpExt.SyncookiesFailed", "TcpExt.TCPAbortOnMemory",
    "TcpExt.TCPAbortOnTimeout", "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData",
    "TcpExt.TCPMemoryPressures", "TcpExt.TW", "TcpExt.TWRecycled", "TcpExt.PAWSEstab",
    "Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.EstabResets",
    "Tcp.RetransSegs", "Tcp.OutRsts", "conntrack.drop", "conntrack.early_drop",
    "conntrack.insert_failed",
)
# CPU time in softirq context and the networking softirqs (read host-wide from /proc/stat
# and /proc/softirqs): "cpu.softirq"/"cpu.total" in clock ticks, one pair per CPU as
# "cpuN.softirq"/"cpuN.total", and "softirq.NET_RX"/"softirq.NET_TX" (times raised).
CPU_COUNTER_PREFIXES = ("cpu", "softirq.")
# sysctl.d(5): where configuration files live, in precedence order, and the classic file.
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
               "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"
# Slab caches whose object sizes price a socket (docs/kernel.md "What sockets cost").
SLAB_CACHES = ("TCP", "TCPv6", "tw_sock_TCP", "tw_sock_TCPv6", "request_sock_TCP",
               "request_sock_TCPv6", "sock_inode_cache", "filp")


def sysctl_path(key: str, proc_root: str = "/proc") -> str:
    """net.ipv4.tcp_mem -> /proc/sys/net/ipv4/tcp_mem (sysctl also accepts slashes)."""
    return f"{proc_root}/sys/{key.strip().replace('.', '/')}"


@dataclass
class KernelState:
    taken: float  # time.monotonic() when read
    sockstat: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    sysctls: dict[str, str | None] = field(default_factory=dict)
    file_nr: tuple[int, int, int] | None = None
    notes: list[str] = field(default_factory=list)
    # Slab cache -> (bytes per object, objects in use), from /proc/slabinfo (root only).
    slab: dict[str, tuple[int, int]] = field(default_factory=dict)
    mem_total: int | None = None  # bytes of RAM (/proc/meminfo MemTotal)
    page_size: int = 4096
    # Saved inputs that hold two readings (collect bundles): the earlier one, for rates.
    previous: KernelState | None = None
    # Saved inputs only: open files and RLIMIT_NOFILE of the processes that own sockets
    # (live reads take them from the owner scan and /proc/PID/limits).
    fd_counts: dict[int, int] = field(default_factory=dict)
    nofile: dict[int, int] = field(default_factory=dict)
    # Saved inputs only: the conntrack table, the namespace's addresses and NAT ranges
    # ({"table", "addresses", "ranges"}, a collect bundle's sockets/conntrack.txt).
    conntrack: dict[str, Any] | None = None

    def sysctl_int(self, key: str) -> int | None:
        value = self.sysctls.get(key)
        if value is None:
            return None
        words = value.split()
        # A kernel prints at most 20 digits (a u64); anything longer, or a float's
        # overflow in a rule's arithmetic, is not a value it could have printed.
        if not words or len(words[0]) > 20:
            return None
        try:
            number = int(words[0])
        except ValueError:
            return None
        return number if -(1 << 63) <= number < (1 << 64) else None

    def conntrack_entries(self) -> int | None:
        """nf_conntrack_count: the namespace's table size, None where conntrack is absent."""
        return self.sysctl_int("net.netfilter.nf_conntrack_count")

    def sysctl_ints(self, key: str) -> list[int] | None:
        value = self.sysctls.get(key)
        if value is None:
            return None
        words = value.split()
        if any(len(w) > 20 for w in words):  # not a number a kernel prints
            return None
        try:
            return [int(w) for w in words]
        except ValueError:
            return None


def fill_global_sysctls(state: KernelState, host: dict[str, str | None]) -> None:
    """Inside a child namespace the global keys are absent: take the host's values."""
    for key in GLOBAL_SYSCTLS:
        if state.sysctls.get(key) is None and host.get(key) is not None:
            state.sysctls[key] = host[key]


def deltas(before: KernelState, after: KernelState) -> dict[str, int]:
    keys = [*RATE_COUNTERS, *(k for k in after.counters if k.startswith(CPU_COUNTER_PREFIXES))]
    return {k: after.counters[k] - before.counters[k] for k in keys
            if k in before.counters and k in after.counters}


@dataclass(frozen=True)
class Setting:
    """One `key = value` line of a sysctl configuration file."""

    key: str
    value: str
    path: str
    line: int
    ignore_errors: bool = False  # a leading '-' (sysctl.d: ignore failures for this key)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"
