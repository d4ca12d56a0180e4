"""Kernel figures behind the rules: sockstat, TCP counters, sysctls, conntrack, file limits.

Pure readers over an injectable proc root. A file or key the kernel lacks becomes None
plus a note, never an exception: rules that need it are skipped and say why.
"""

from __future__ import annotations

import os
import time

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.kernel_state import SLAB_CACHES, SYSCTLS, KernelState, sysctl_path
from tcpdoctor.sources.procfs import net_dir


def parse_key_value_lines(text: str, source: str) -> dict[str, dict[str, int]]:
    """sockstat format: `TCP: inuse 4 orphan 0 tw 4 alloc 17 mem 1` per line."""
    out: dict[str, dict[str, int]] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or len(words) % 2:
            raise ParseError(source, no, Msg("'PROTO: key value key value ...'"), line)
        try:
            out[head.strip()] = {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}
        except ValueError:
            raise ParseError(source, no, Msg("integer values"), line) from None
    return out


def parse_counter_pairs(text: str, source: str) -> dict[str, int]:
    """/proc/net/netstat and /proc/net/snmp: a header line then a value line per group."""
    out: dict[str, int] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for i in range(0, len(lines) - 1, 2):
        head, values = lines[i].split(), lines[i + 1].split()
        if not head or head[0] != values[0] or len(head) != len(values):
            raise ParseError(source, i + 2, Msg("values for the {header} header",
                                                header=head[0] if head else '?'),
                             lines[i + 1])
        group = head[0].rstrip(":")
        for name, value in zip(head[1:], values[1:], strict=True):
            try:
                out[f"{group}.{name}"] = int(value)
            except ValueError:
                raise ParseError(source, i + 2, Msg("an integer for {group}.{name}", group=group,
                                                    name=name), value) from None
    if len(lines) % 2:
        raise ParseError(source, len(lines), Msg("a value line after the last header"), lines[-1])
    return out


def parse_conntrack_stat(text: str, source: str) -> dict[str, int]:
    """/proc/net/stat/nf_conntrack: a header, then one row of hex numbers per CPU; summed."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return {}
    head = lines[0]
    totals = dict.fromkeys(head, 0)
    for no, row in enumerate(lines[1:], 2):
        if len(row) != len(head):
            raise ParseError(source, no, Msg("{n} hex columns", n=len(head)),
                             " ".join(row))
        try:
            for name, value in zip(head, row, strict=True):
                totals[name] += int(value, 16)
        except ValueError:
            raise ParseError(source, no, Msg("hex numbers"), " ".join(row)) from None
    totals.pop("entries", None)  # a gauge repeated per CPU, not a counter
    return {f"conntrack.{k}": v for k, v in totals.items()}


def read_text(path: str) -> str | None:
    """A small text file (/proc, saved copies), or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def read_sysctls(proc_root: str = "/proc",
                 keys: tuple[str, ...] = SYSCTLS) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key in keys:
        text = read_text(sysctl_path(key, proc_root))
        out[key] = " ".join(text.split()) if text is not None else None
    return out


def read_state(proc_root: str = "/proc", with_sysctls: bool = True,
               host_wide: bool = True) -> KernelState:
    """Read every kernel figure available in the calling thread's network namespace;
    host_wide=False leaves out the figures that are the same in every namespace (slab
    sizes, RAM, CPU time: read_costs), for a caller that reads them once for many."""
    state = KernelState(taken=time.monotonic())
    net = net_dir(proc_root)
    for name in ("sockstat", "sockstat6"):
        text = read_text(f"{net}/{name}")
        if text is not None:
            state.sockstat.update(parse_key_value_lines(text, f"{net}/{name}"))
        elif name == "sockstat":
            state.notes.append(Msg("{net}/sockstat unreadable: orphan and memory rules skipped",
                                   net=net))
    for name in ("netstat", "snmp"):
        text = read_text(f"{net}/{name}")
        if text is None:
            state.notes.append(Msg("{net}/{name} unreadable: counter-based evidence skipped",
                                   net=net, name=name))
            continue
        state.counters.update(parse_counter_pairs(text, f"{net}/{name}"))
    ct = read_text(f"{net}/stat/nf_conntrack")
    if ct is not None:
        state.counters.update(parse_conntrack_stat(ct, f"{net}/stat/nf_conntrack"))
    if with_sysctls:
        state.sysctls = read_sysctls(proc_root)
    text = read_text(f"{proc_root}/sys/fs/file-nr")
    words = text.split() if text is not None else []
    # A saved copy (analyze --proc-dir, a bundle) may hold anything: three numbers or none.
    if len(words) == 3 and all(w.isascii() and w.isdigit() and len(w) <= 20 for w in words):
        a, b, c = (int(x) for x in words)
        state.file_nr = (a, b, c)
    elif text is not None:
        state.notes.append(Msg("{path}: expected three numbers, got {got!r}: open files "
                               "were not read", path=f"{proc_root}/sys/fs/file-nr",
                               got=text[:40]))
    if host_wide:
        read_costs(state, proc_root)
    return state


def read_costs(state: KernelState, proc_root: str = "/proc") -> None:
    """Host-wide figures that price sockets: slab object sizes, RAM, softirq CPU time."""
    state.page_size = os.sysconf("SC_PAGE_SIZE")
    text = read_text(f"{proc_root}/slabinfo")
    if text is None:
        state.notes.append(Msg("/proc/slabinfo unreadable (needs root): socket object sizes "
                               "unknown, only buffer memory is priced"))
    else:
        state.slab = parse_slabinfo(text, f"{proc_root}/slabinfo")
    text = read_text(f"{proc_root}/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:") and line.split()[1].isdigit():
            state.mem_total = int(line.split()[1]) * 1024
    for name, parse in (("stat", parse_cpu_stat), ("softirqs", parse_softirqs)):
        text = read_text(f"{proc_root}/{name}")
        if text is not None:
            state.counters.update(parse(text, f"{proc_root}/{name}"))


def parse_slabinfo(text: str, source: str) -> dict[str, tuple[int, int]]:
    """`name active_objs num_objs objsize ...` rows of the caches in SLAB_CACHES."""
    out: dict[str, tuple[int, int]] = {}
    for no, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if words and words[0] in SLAB_CACHES:
            if len(words) < 4 or not (words[1].isdigit() and words[3].isdigit()):
                raise ParseError(source, no, Msg("name active_objs num_objs objsize"), line)
            out[words[0]] = (int(words[3]), int(words[1]))
    return out


def parse_cpu_stat(text: str, source: str) -> dict[str, int]:
    """/proc/stat `cpu` lines: softirq ticks (the 7th value) and all ticks, per CPU too."""
    out: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or not words[0].startswith("cpu"):
            continue
        if len(words) < 8 or not all(w.isdigit() for w in words[1:]):
            raise ParseError(source, no, Msg("cpu tick counts"), line)
        ticks = [int(w) for w in words[1:]]
        # guest time is already counted in user time: leave it out of the total.
        key = "cpu" if words[0] == "cpu" else words[0]
        out[f"{key}.softirq"] = ticks[6]
        out[f"{key}.total"] = sum(ticks[:8])
    return out


def parse_softirqs(text: str, source: str) -> dict[str, int]:
    """/proc/softirqs: times NET_RX and NET_TX were raised, summed over CPUs."""
    out: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), 1):
        head, _, rest = line.partition(":")
        if head.strip() in ("NET_RX", "NET_TX"):
            words = rest.split()
            if not all(w.isdigit() for w in words):
                raise ParseError(source, no, Msg("per-CPU counts"), line)
            out[f"softirq.{head.strip()}"] = sum(int(w) for w in words)
    return out


def nofile_limit(pid: int, proc_root: str = "/proc") -> int | None:
    """Soft RLIMIT_NOFILE of a process from /proc/PID/limits (None if gone or unreadable)."""
    text = read_text(f"{proc_root}/{pid}/limits")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    return None

