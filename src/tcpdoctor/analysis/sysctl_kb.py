"""What tcpdoctor knows about each sysctl it audits: one entry per key, each with its source.

This is the one definition of a harmful setting: the UNSAFE_SYSCTL rule judges running
values with it, `tune` judges running and configured ones. Facts follow docs/kernel.md
(checked against Linux 6.18: Documentation/networking/ip-sysctl.rst,
net/ipv4/sysctl_net_ipv4.c, tcp_ipv4.c, tcp.c). Defaults that scale with memory or the hash
size are computed from the running kernel, never quoted from a blog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tcpdoctor.i18n import Msg, joined
from tcpdoctor.model.tcp import DEFAULT_PORT_RANGE

INT_MAX = 2**31 - 1
IP_SYSCTL = "Documentation/networking/ip-sysctl.rst"
NF_SYSCTL = "Documentation/networking/nf_conntrack-sysctl.rst"
FS_SYSCTL = "Documentation/admin-guide/sysctl/fs.rst"

EHASH_FALLBACK = 262144  # tcp_ehash_entries when the kernel does not say (pre-6.1)
# Limits of the harm checks; the UNSAFE_SYSCTL rule exposes them as its thresholds.
HARM_LIMITS = {"tw_buckets_warning": 32768.0, "tw_buckets_critical": 10000.0}

# (values, ehash entries of this machine, limits) -> (severity, reason) when the value is
# harmful. Some defaults scale with the established hash, so "lowered" is judged against it.
Harm = Callable[[list[int], int, Mapping[str, float]], tuple[str, str] | None]


@dataclass(frozen=True)
class Knob:
    key: str
    meaning: str
    default: str  # the default, and how the kernel computes it
    valid: tuple[int, int] | None  # inclusive range of each integer value (None: free-form)
    count: int = 1  # integers in the value (3 for tcp_mem); 0 = free-form list
    per_netns: bool = True
    history: str = ""  # kernel versions that added, changed or removed it
    myths: tuple[str, ...] = ()
    source: str = IP_SYSCTL
    harm: Harm | None = None  # returns (severity, why) for a harmful value
    removed_in: tuple[int, int] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def parse(self, text: str) -> list[int] | None:
        """The integers of a value, or None if it is not of this key's shape or range."""
        if self.count == 0:
            return []
        words = text.replace(",", " ").split()
        if any(len(w) > 20 for w in words):  # int() of thousands of digits raises
            return None
        try:
            values = [int(x) for x in words]
        except ValueError:
            return None
        if len(values) != self.count:
            return None
        if self.valid and not all(self.valid[0] <= v <= self.valid[1] for v in values):
            return None
        return values


def _below_half_ehash(why: str) -> Harm:
    return lambda v, ehash, lim: ("warning", why) if v and v[0] < min(4096, ehash // 2) else None


def _equals(bad: int, sev: str, why: str) -> Harm:
    return lambda v, ehash, lim: (sev, why) if v and v[0] == bad else None


def _tw_buckets(v: list[int], ehash: int, lim: Mapping[str, float]) -> tuple[str, str] | None:
    default = ehash // 2
    if not v or v[0] >= min(lim["tw_buckets_warning"], default):
        return None
    if v[0] <= min(lim["tw_buckets_critical"], default // 4):
        return ("critical", Msg("past this cap the kernel destroys TIME_WAIT sockets early "
                                "(TCPTimeWaitOverflow, no log line): delayed segments can "
                                "corrupt new connections. The docs say never lower it "
                                "artificially."))
    return ("warning", Msg("below this machine's default (half the established hash): TIME_WAIT "
                           "may be skipped under load."))


def _port_range(v: list[int], ehash: int, lim: Mapping[str, float]) -> tuple[str, str] | None:
    if len(v) != 2:
        return None
    if v[0] > v[1]:
        return ("critical", Msg("the low end is above the high end: the kernel rejects it."))
    if v[0] < 1024:
        return ("warning", Msg("ephemeral ports below 1024 collide with privileged service "
                               "ports."))
    if v[0] < DEFAULT_PORT_RANGE[0] and v[0] % 2 == v[1] % 2:
        return ("warning", Msg("collides with service ports (a later bind() fails with "
                               "EADDRINUSE) and same-parity ends draw a kernel warning; reserve "
                               "service ports in ip_local_reserved_ports when widening."))
    return None


def _triplet(v: list[int], ehash: int, lim: Mapping[str, float]) -> tuple[str, str] | None:
    if len(v) == 3 and not v[0] <= v[1] <= v[2]:
        return ("critical", Msg("the three values must be ordered min <= default/pressure <= "
                                "max."))
    return None


KNOBS: tuple[Knob, ...] = (
    Knob("net.ipv4.tcp_tw_recycle",
         Msg("Fast recycling of TIME_WAIT sockets using per-host timestamps."),
         Msg("gone: the key does not exist since Linux 4.12"), (0, 1),
         history=Msg("removed in Linux 4.12 (commit 4396e46187ca, 2017)"),
         myths=(Msg("'Set tcp_tw_recycle = 1 to get rid of TIME_WAIT': it silently dropped SYNs "
                    "from clients behind NAT, broke for everyone once timestamps got "
                    "per-connection offsets, and was removed; `sysctl -p` errors on it."),),
         harm=_equals(1, "critical", Msg("removed in Linux 4.12: it dropped SYNs from clients "
                                         "behind NAT. Remove the line.")),
         removed_in=(4, 12)),
    Knob("net.ipv4.tcp_tw_reuse",
         Msg("Lets outgoing connect() reuse a TIME_WAIT 4-tuple whose connection used "
             "timestamps and is older than tcp_tw_reuse_delay. 0 off, 1 on, 2 loopback only."),
         Msg("2 (loopback only) since Linux 4.19"), (0, 2),
         history=Msg("per namespace since 4.11; value 2 added in 4.19 (2018) and made default"),
         myths=(Msg("'tcp_tw_reuse = 1 removes TIME_WAIT': it only helps this host's outgoing "
                    "connections; a server's inbound TIME_WAIT is untouched."),)),
    Knob("net.ipv4.tcp_tw_reuse_delay",
         Msg("Minimum age (ms) of a TIME_WAIT socket before tcp_tw_reuse may reuse it. It is "
             "not the TIME_WAIT length."), "1000 ms", (1, 60000),
         history=Msg("new in recent kernels (2025, 6.1x); absent before: detected, not assumed")),
    Knob("net.ipv4.tcp_tw_timeout",
         Msg("Vendor key (Alibaba Cloud Linux) setting the TIME_WAIT length."),
         Msg("60 s where it exists; no upstream kernel has it"), (1, 600),
         history=Msg("vendor kernels only"),
         myths=(Msg("No upstream sysctl changes TIME_WAIT's 60 s (TCP_TIMEWAIT_LEN)."),)),
    Knob("net.ipv4.tcp_fin_timeout",
         Msg("How long an orphaned FIN_WAIT2 socket waits for the peer's FIN."), "60 s", (1, 600),
         myths=(Msg("'tcp_fin_timeout = 30 shortens TIME_WAIT': false. TIME_WAIT is fixed at 60 "
                    "s (TCP_TIMEWAIT_LEN) and restarts when a segment arrives; this key bounds "
                    "orphaned FIN_WAIT2 only. 30 is harmless, it just does not do what the blog "
                    "post promised."),)),
    Knob("net.ipv4.tcp_max_tw_buckets",
         Msg("Maximum TIME_WAIT (and orphaned FIN_WAIT2) minisockets; past it new closes skip "
             "TIME_WAIT."), Msg("half the established hash (tcp_ehash_entries / 2)"), (0, INT_MAX),
         myths=(Msg("'tcp_max_tw_buckets = 5000 fixes TIME_WAIT': it makes the kernel destroy "
                    "them early, silently (TCPTimeWaitOverflow)."),
                Msg("'The default is 180000': that was a 2.6-era value; today it is ehash/2."),),
         harm=_tw_buckets),
    Knob("net.ipv4.tcp_syncookies",
         Msg("Answer SYNs with cookies when the SYN queue overflows. 0 off, 1 on overflow, 2 "
             "always."), "1", (0, 2),
         myths=(Msg("'Set tcp_syncookies = 1, the default is 0': the default is already 1. It "
                    "is unrelated to TIME_WAIT."),),
         harm=lambda v, ehash, lim: ("warning", Msg(
             "without cookies a SYN flood fills the SYN queue and real clients are refused."))
         if v and v[0] == 0 else
         ("warning", Msg("2 sends cookies for every SYN (a testing mode): TCP options are "
                         "degraded.")) if v and v[0] == 2 else None),
    Knob("net.ipv4.tcp_max_syn_backlog",
         Msg("SYN queue limit, enforced only while syncookies are off."),
         Msg("max(128, tcp_ehash_entries / 128)"), (1, INT_MAX),
         myths=(Msg("'tcp_max_syn_backlog = 8192 fixes dropped connections': with syncookies on "
                    "(the default) it hardly matters; the real limit is min(listen() backlog, "
                    "net.core.somaxconn)."),)),
    Knob("net.core.somaxconn",
         Msg("Cap on every listen() backlog (accept queue and SYN queue)."),
         Msg("4096 since Linux 5.4 (128 before)"), (1, INT_MAX),
         history=Msg("default raised from 128 to 4096 in 5.4")),
    Knob("net.ipv4.tcp_keepalive_time",
         Msg("Idle seconds before the first keepalive probe, for sockets that set SO_KEEPALIVE."),
         Msg("7200 s (with tcp_keepalive_intvl 75, tcp_keepalive_probes 9)"), (1, 32767),
         myths=(Msg("'tcp_keepalive_time = 1200 reduces TIME_WAIT': unrelated. It only affects "
                    "sockets whose application enabled SO_KEEPALIVE."),)),
    Knob("net.ipv4.ip_local_port_range",
         Msg("Ephemeral ports for outgoing connections (per source ip, destination ip and port)."),
         f"{DEFAULT_PORT_RANGE[0]} {DEFAULT_PORT_RANGE[1]}", (1, 65535), count=2,
         myths=(Msg("'ip_local_port_range = 1024 65000': collides with service ports and has "
                    "same-parity ends, which the kernel warns about."),),
         harm=_port_range),
    Knob("net.ipv4.ip_local_reserved_ports",
         Msg("Ports inside the ephemeral range that connect() must not pick (service ports)."),
         "empty", None, count=0),
    Knob("net.ipv4.tcp_max_orphans",
         Msg("Maximum orphaned sockets (closed by the application, still in the kernel); past "
             "it they are reset ('TCP: too many orphaned sockets')."),
         Msg("tcp_ehash_entries / 2"), (0, INT_MAX), per_netns=False,
         harm=_below_half_ehash(Msg("lowering it makes the kernel reset connections that are "
                                    "still closing; raise it, never lower it."))),
    Knob("net.ipv4.tcp_orphan_retries",
         Msg("Retries before an orphaned socket is killed (0 means 8)."), "0 (= 8)", (0, 255)),
    Knob("net.ipv4.tcp_synack_retries",
         Msg("SYN-ACK retransmissions for a half-open connection (5 = about 63 s)."), "5",
         (1, 255)),
    Knob("net.ipv4.tcp_syn_retries",
         Msg("SYN retransmissions of an outgoing connect() (6 = about 127 s)."), "6", (1, 127)),
    Knob("net.ipv4.tcp_abort_on_overflow",
         Msg("Reset new connections when the accept queue is full instead of dropping the ACK."),
         "0", (0, 1),
         harm=_equals(1, "warning", Msg("clients get resets during bursts instead of retrying; "
                                        "fix the slow accept() instead."))),
    Knob("net.ipv4.tcp_mem",
         Msg("Global TCP memory thresholds in pages: low, pressure, high."),
         Msg("computed from RAM at boot"), (0, 2**62), count=3, per_netns=False, harm=_triplet),
    Knob("net.ipv4.tcp_rmem", Msg("Receive buffer sizes in bytes: min, default, max."),
         "4096 131072 6291456", (1, INT_MAX), count=3, harm=_triplet),
    Knob("net.ipv4.tcp_wmem", Msg("Send buffer sizes in bytes: min, default, max."),
         "4096 16384 4194304", (1, INT_MAX), count=3, harm=_triplet),
    Knob("net.ipv4.tcp_timestamps",
         Msg("TCP timestamps (RFC 7323): needed by PAWS and by tcp_tw_reuse."), "1", (0, 2),
         harm=_equals(0, "warning", Msg("disables PAWS protection and makes tcp_tw_reuse "
                                        "useless."))),
    Knob("net.netfilter.nf_conntrack_max",
         Msg("Connection tracking table size ('nf_conntrack: table full, dropping packet')."),
         Msg("computed from RAM; read-only inside child namespaces"), (1, INT_MAX),
         per_netns=False, source=NF_SYSCTL),
    Knob("net.netfilter.nf_conntrack_tcp_timeout_time_wait",
         Msg("How long conntrack keeps a TIME_WAIT flow."), "120 s", (1, INT_MAX),
         source=NF_SYSCTL),
    Knob("net.netfilter.nf_conntrack_tcp_timeout_established",
         Msg("How long conntrack keeps an idle established flow."), Msg("432000 s (5 days)"),
         (1, INT_MAX), source=NF_SYSCTL),
    Knob("fs.file-max", Msg("System-wide limit of open files (ENFILE past it)."),
         Msg("about 10% of RAM in KB"), (1, 2**63 - 1), per_netns=False, source=FS_SYSCTL),
    Knob("fs.nr_open", Msg("Ceiling for any process's RLIMIT_NOFILE."), "1048576",
         (8, 2**30), per_netns=False, source=FS_SYSCTL),
)
BY_KEY: dict[str, Knob] = {k.key: k for k in KNOBS}


def normalize_key(key: str) -> str:
    """sysctl accepts net/ipv4/x and net.ipv4.x; the table uses dots."""
    return key.strip().strip("-").replace("/", ".")


def explain(key: str) -> str:
    knob = BY_KEY[normalize_key(key)]
    lines = [knob.key, "", knob.meaning,
             Msg("Default: {default}.", default=knob.default)]
    if knob.valid and knob.count:
        lines.append(Msg("Valid range: {low}..{high}", low=knob.valid[0],
                         high=knob.valid[1])
                     + (Msg(" (each of {count} values).", count=knob.count)
                        if knob.count > 1 else Msg(".")))
    lines.append(Msg("Per network namespace.") if knob.per_netns
                 else Msg("Global: exists only in the initial network namespace."))
    if knob.history:
        lines.append(Msg("History: {history}.", history=knob.history))
    for myth in knob.myths:
        lines.append(Msg("Myth: {myth}", myth=myth))
    lines.append(Msg("Source: {source} (Linux 6.18); see docs/kernel.md.",
                     source=knob.source))
    return joined(lines, "\n")


def safe_value(key: str, ehash: int) -> str | None:
    """The value to restore when a harmful one is in force (None: remove the line)."""
    return {
        "net.ipv4.tcp_max_tw_buckets": str(ehash // 2),
        "net.ipv4.tcp_max_orphans": str(ehash // 2),
        "net.ipv4.tcp_syncookies": "1",
        "net.ipv4.tcp_abort_on_overflow": "0",
        "net.ipv4.tcp_timestamps": "1",
        "net.ipv4.tcp_tw_recycle": "0",
        "net.ipv4.ip_local_port_range": f"{DEFAULT_PORT_RANGE[0]} {DEFAULT_PORT_RANGE[1]}",
    }.get(key)


def harmful(knob: Knob, value: str | None, ehash: int,
            limits: Mapping[str, float] = HARM_LIMITS) -> tuple[str, str] | None:
    """(severity, why) when this value of the key is harmful, else None."""
    if value is None or knob.harm is None:
        return None
    values = knob.parse(value)
    if values is None:
        return ("warning", Msg("{value!r} is not a valid value ({count} "
                               "integer(s) in {valid}).", value=value,
                               count=knob.count or Msg("a list of"),
                               valid=knob.valid))
    return knob.harm(values, ehash, limits)


def ehash_entries(text: str | None) -> int:
    """tcp_ehash_entries as the kernel prints it (negative: per-netns hash), else a fallback."""
    value = (text or "").strip()
    digits = value.lstrip("-")
    if digits.isascii() and digits.isdigit() and len(digits) <= 12 and int(value):
        return abs(int(value))
    return EHASH_FALLBACK
