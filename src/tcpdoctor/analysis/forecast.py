"""How long until a resource runs out, from two readings: the rate measured between them
and, for TIME_WAIT, the schedule the kernel already knows (each socket's remaining timer).

Ports towards one destination, and TIME_WAIT against tcp_max_tw_buckets, follow Little's
law: at a steady close rate R, TIME_WAIT settles at R x its lifetime (60 s), so a ramp either
levels off below the limit or reaches it at a moment found by projecting, second by second,
the existing TIME_WAIT expiring on their timers and new ones arriving at R. Orphans, TCP
memory, conntrack entries and a process's open files are projected at their measured net
rate (a leak has no plateau). One reading gives no forecast at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.analysis.context import Context, level
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.columns import among_ports, factorize, group_rows
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import TCP_LISTEN, TCP_TIME_WAIT

TIME_WAIT_SECONDS = 60.0  # TCP_TIMEWAIT_LEN: fixed in upstream kernels
MIN_SECONDS = 0.5  # readings closer than this measure noise, not a rate
STEP = 0.25  # seconds between projected points inside one TIME_WAIT lifetime
DESTINATIONS = 5  # port forecasts kept, the nearest to exhaustion first


@dataclass
class Forecast:
    resource: str  # ports, tw_buckets, orphans, tcp_mem, conntrack, open_files
    scope: str  # a destination ip:port, "pid N (name)", the namespace, or "host"
    used: int
    limit: int
    per_second: float  # net growth (ports, TIME_WAIT: new ones per second)
    seconds_left: float | None  # None: it levels off below the limit, or does not grow
    levels_at: int | None  # where it settles at this rate (None: no plateau, a leak)
    # ports: the destination's (raddr_hi, raddr_lo, port), for the rule that names it
    key: tuple[int, int, int] | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("key")
        out["per_second"] = round(self.per_second, 2)
        if self.seconds_left is not None:
            out["seconds_left"] = round(self.seconds_left, 1)
        return out


@dataclass
class Readings:
    """Two readings of one namespace, `seconds` apart: what every forecast measures."""

    before: Snapshot
    after: Snapshot
    seconds: float
    kernel_before: KernelState | None
    kernel_after: KernelState | None
    fds_before: dict[int, int] | None
    fds_after: dict[int, int] | None


def readings(ctx: Context) -> Readings | None:
    """check: its table and the one read at the end of --interval; watch, record and the
    exporter: the previous round's and this one's. None: one reading, no forecast."""
    if ctx.later is not None:
        pair = Readings(ctx.snap, ctx.later, ctx.later_seconds, ctx.kernel and
                        ctx.kernel.previous, ctx.kernel, ctx.fd_counts, ctx.later_fds)
    elif ctx.earlier is not None:
        pair = Readings(ctx.earlier, ctx.snap, ctx.earlier_seconds, ctx.earlier_kernel,
                        ctx.kernel, ctx.earlier_fds, ctx.fd_counts)
    else:
        return None
    usable = (pair.seconds >= MIN_SECONDS and "cookie" in pair.before.columns
              and "cookie" in pair.after.columns)
    return pair if usable else None


def forecasts(ctx: Context) -> list[Forecast]:
    """Every forecast two readings allow, the nearest exhaustion first."""
    r = readings(ctx)
    if r is None:
        return []
    out = _ports(ctx, r) + _tw_buckets(ctx, r) + _linear(ctx, r) + _open_files(ctx, r)
    return sorted(out, key=lambda f: (f.seconds_left is None, f.seconds_left or 0.0,
                                      -f.used / max(f.limit, 1)))


def _new_time_wait(r: Readings) -> np.ndarray:
    """Rows of the later reading that entered TIME_WAIT between the readings (their
    cookies were not TIME_WAIT before)."""
    a, b = r.before.columns, r.after.columns
    before = a["cookie"][a["state"] == TCP_TIME_WAIT]
    tw = b["state"] == TCP_TIME_WAIT
    return tw & ~np.isin(b["cookie"], before)


def _project(used_now: int, live_growth: float, expires_ms: np.ndarray, rate: float,
             limit: int) -> tuple[float | None, int | None]:
    """(seconds until used reaches limit, or None; the level it settles at, or None).

    used(t) = live + live_growth*t + existing TIME_WAIT still alive at t + rate*min(t, 60)."""
    live = used_now - expires_ms.shape[0]
    t = np.arange(0.0, TIME_WAIT_SECONDS + STEP, STEP)
    alive = expires_ms.shape[0] - np.searchsorted(np.sort(expires_ms) / 1000.0, t, "right")
    used = live + live_growth * t + alive + rate * t
    full = np.flatnonzero(used >= limit)
    if full.size:
        return float(t[full[0]]), None
    settled = live + rate * TIME_WAIT_SECONDS
    if live_growth > 0:  # live connections keep growing after TIME_WAIT has settled
        return TIME_WAIT_SECONDS + max(limit - settled - live_growth * TIME_WAIT_SECONDS,
                                       0.0) / live_growth, None
    return None, round(settled)


def _ports(ctx: Context, r: Readings) -> list[Forecast]:
    """Local ports per destination ip:port, against the range minus reserved ports."""
    from tcpdoctor.analysis.rules.common import port_range  # (the rules import this module)

    lo, hi = port_range(ctx)
    limit = hi - lo + 1 - _reserved_in(ctx, lo, hi)
    dt = r.seconds
    b = r.after.columns
    listening = np.union1d(r.before.listening_ports(), r.after.listening_ports())
    held = ((b["state"] != TCP_LISTEN) & (b["sport"] >= lo) & (b["sport"] <= hi)
            & ~among_ports(b["sport"], listening))
    if not held.any() or limit <= 0:
        return []
    keys, inv, counts = factorize([b["raddr_hi"][held], b["raddr_lo"][held], b["dport"][held]])
    new_tw = _new_time_wait(r)[held]
    tw = b["state"][held] == TCP_TIME_WAIT
    live_before = _live_per_destination(r, listening, lo, hi, keys)
    out = []
    for g in np.argsort(-counts)[:DESTINATIONS * 4]:
        mine = inv == g
        rate = float(np.count_nonzero(mine & new_tw)) / dt
        live_now = int(np.count_nonzero(mine & ~tw))
        growth = (live_now - live_before[g]) / dt
        if rate == 0 and growth <= 0:
            continue  # not growing: nothing to forecast
        left, level = _project(int(counts[g]), growth, b["expires"][held][mine & tw]
                               .astype(np.float64), rate, limit)
        dest = format_addr(int(keys[0][g]), int(keys[1][g]))
        scope = f"[{dest}]:{int(keys[2][g])}" if ":" in dest else f"{dest}:{int(keys[2][g])}"
        out.append(Forecast("ports", scope, int(counts[g]), limit, rate + growth, left, level,
                            (int(keys[0][g]), int(keys[1][g]), int(keys[2][g]))))
    out.sort(key=lambda f: (f.seconds_left is None, f.seconds_left or 0.0))
    return out[:DESTINATIONS]


def _live_per_destination(r: Readings, listening: np.ndarray, lo: int, hi: int,
                          keys: list[np.ndarray]) -> np.ndarray:
    """Earlier reading: non-TIME_WAIT sockets holding a port of the range, per destination
    of the later reading's groups."""
    a = r.before.columns
    m = ((a["state"] != TCP_LISTEN) & (a["state"] != TCP_TIME_WAIT) & (a["sport"] >= lo)
         & (a["sport"] <= hi) & ~among_ports(a["sport"], listening))
    out = np.zeros(keys[0].shape[0], dtype=np.int64)
    if not m.any():
        return out
    # One join of both sides: the earlier rows take the group id of their destination
    # (group_rows sorts packed keys; np.unique(axis=1) sorted a void view, 1 s at 1M rows).
    ours = keys[0].shape[0]
    cols = [np.concatenate([k, a[name][m]])
            for k, name in zip(keys, ("raddr_hi", "raddr_lo", "dport"), strict=True)]
    _, inv, _ = group_rows(cols)
    group_of = np.full(int(inv.max()) + 1, -1, dtype=np.int64)
    group_of[inv[:ours]] = np.arange(ours)
    hits = group_of[inv[ours:]]
    hits = hits[hits >= 0]
    return np.bincount(hits, minlength=out.shape[0]) if hits.size else out


def _reserved_in(ctx: Context, lo: int, hi: int) -> int:
    text = ctx.kernel.sysctls.get("net.ipv4.ip_local_reserved_ports") if ctx.kernel else None
    total = 0
    for part in (text or "").replace(",", " ").split():
        a, _, b = part.partition("-")
        try:
            first, last = int(a), int(b or a)
        except ValueError:
            continue
        total += max(min(last, hi) - max(first, lo) + 1, 0)
    return total


def _tw_buckets(ctx: Context, r: Readings) -> list[Forecast]:
    limit = ctx.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    b = r.after.columns
    tw = b["state"] == TCP_TIME_WAIT
    if not limit or not tw.any():
        return []
    rate = float(np.count_nonzero(_new_time_wait(r))) / r.seconds
    if rate == 0:
        return []
    left, level = _project(int(np.count_nonzero(tw)), 0.0,
                           b["expires"][tw].astype(np.float64), rate, limit)
    return [Forecast("tw_buckets", ctx.snap.netns or "host", int(np.count_nonzero(tw)), limit,
                     rate, left, level)]


def _linear(ctx: Context, r: Readings) -> list[Forecast]:
    """Orphans, TCP memory and conntrack entries at their net rate between the readings."""
    now, before = r.kernel_after, r.kernel_before
    if now is None or before is None:
        return []
    mem = now.sysctl_ints("net.ipv4.tcp_mem")
    figures: list[tuple[str, str, Callable[[KernelState], int | None], int | None]] = [
        ("orphans", "host", lambda k: k.sockstat.get("TCP", {}).get("orphan"),
         ctx.sysctl_int("net.ipv4.tcp_max_orphans")),
        ("tcp_mem", "host", lambda k: k.sockstat.get("TCP", {}).get("mem"),
         mem[2] if mem and len(mem) == 3 else None),
        ("conntrack", ctx.snap.netns or "host",
         lambda k: k.sysctl_int("net.netfilter.nf_conntrack_count"),
         ctx.sysctl_int("net.netfilter.nf_conntrack_max")),
    ]
    out = []
    for resource, scope, read, limit in figures:
        used, earlier = read(now), read(before)
        if used is None or earlier is None or not limit:
            continue
        out.extend(_grow(resource, scope, used, earlier, limit, now.taken - before.taken))
    return out


def _grow(resource: str, scope: str, used: int, earlier: int, limit: int,
          seconds: float) -> list[Forecast]:
    if seconds < MIN_SECONDS or used <= earlier:
        return []
    rate = (used - earlier) / seconds
    return [Forecast(resource, scope, used, limit, rate, max(limit - used, 0) / rate, None)]


def _open_files(ctx: Context, r: Readings) -> list[Forecast]:
    """Processes whose open files grew between the readings, against their RLIMIT_NOFILE."""
    if not r.fds_before or not r.fds_after or ctx.nofile is None:
        return []
    out = []
    for pid, later in r.fds_after.items():
        earlier = r.fds_before.get(pid)
        if earlier is None or later <= earlier:
            continue
        limit = ctx.nofile(pid)
        if not limit:
            continue
        name = ctx.snap.process_names.get(pid, "?")
        out.extend(_grow("open_files", f"pid {pid} ({name})", later, earlier, limit,
                         r.seconds))
    return out


def nearest(found: list[Forecast], resource: str, scope: str | None = None) -> Forecast | None:
    for f in found:
        if f.resource == resource and (scope is None or f.scope == scope):
            return f
    return None


# finding id -> the resource whose forecast it quotes
QUOTED = {"EPHEMERAL_PORT_EXHAUSTION": "ports", "CLOSE_WAIT_LEAK": "open_files",
          "FD_LIMIT": "open_files", "TW_BUCKET_OVERFLOW": "tw_buckets",
          "ORPHAN_PRESSURE": "orphans", "TCP_MEMORY_PRESSURE": "tcp_mem",
          "CONNTRACK_FULL": "conntrack"}


def sentence(f: Forecast) -> str:
    """One forecast for people: what, how much of the limit, and how long is left."""
    head = Msg("{resource} ({scope}): {used:,} of {limit:,}, {rate:+,.1f}/s", resource=f.resource,
               scope=f.scope, used=f.used, limit=f.limit, rate=f.per_second)
    if f.seconds_left is not None:
        return head + ": " + Msg("runs out in about {left} at this rate",
                                 left=duration(f.seconds_left))
    if f.levels_at is not None:
        return head + ": " + Msg("levels at {level:,} of {limit:,}: no exhaustion at this rate",
                                 level=f.levels_at, limit=f.limit)
    return head


def sentence_of(saved: dict[str, Any]) -> str:
    """sentence() of a forecast as the report's JSON holds it."""
    return sentence(Forecast(saved["resource"], saved["scope"], saved["used"], saved["limit"],
                             saved["per_second"], saved["seconds_left"], saved["levels_at"]))


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def attach(findings: list[Any], found: list[Forecast], thresholds: dict[str, dict[str, float]],
           ) -> None:
    """Each finding quotes the forecast of its resource (its destination, its process), and
    one running out within the rule's horizon raises its severity."""
    for finding in findings:
        f = _quoted(finding, found)
        if f is None:
            continue
        finding.evidence["forecast"] = f.as_json()
        finding.summary = finding.summary + " " + Msg("Forecast: {text}.", text=sentence(f))
        th = thresholds.get(finding.id, {})
        if f.seconds_left is not None and "horizon_warning" in th:
            raised = level(-f.seconds_left, -th["horizon_warning"], -th["horizon_critical"])
            if raised is not None and raised > finding.severity:
                finding.severity = raised


def _quoted(finding: Any, found: list[Forecast]) -> Forecast | None:
    resource = QUOTED.get(finding.id)
    if resource is None:
        return None
    if resource == "ports":
        return nearest(found, "ports", finding.evidence.get("destination"))
    if resource == "open_files":
        pids = {p.get("pid") for p in finding.processes}
        return next((f for f in found if f.resource == "open_files"
                     and int(f.scope.split()[1]) in pids), None)
    return nearest(found, resource)


def quote_failures(findings: list[Any], trace: dict[str, Any] | None) -> None:
    """EPHEMERAL_PORT_EXHAUSTION quotes the connect() calls a trace saw fail for want of a
    port towards its destination (the kernel keeps no counter of them)."""
    failures = (trace or {}).get("connect_failures") or []
    for finding in findings:
        if finding.id != "EPHEMERAL_PORT_EXHAUSTION":
            continue
        mine = [f for f in failures if f["destination"] == finding.evidence.get("destination")]
        if not mine:
            continue
        count = sum(f["count"] for f in mine)
        finding.evidence["connect_failures"] = count
        who = ", ".join(f"{f['process']} (pid {f['pid']}): {f['count']:,}" for f in mine[:3])
        finding.summary = finding.summary + " " + Msg(
            "The trace saw {count:,} connect() calls fail there with EADDRNOTAVAIL: {who}.",
            count=count, who=who)


# What a stored history can forecast: resource -> (figure used, figure of its limit).
TREND_FIGURES = {"tw_buckets": ("sockstat.TCP.tw", "limit.tw_buckets"),
                 "orphans": ("sockstat.TCP.orphan", "limit.orphans"),
                 "tcp_mem": ("sockstat.TCP.mem", "limit.tcp_mem"),
                 "conntrack": ("conntrack.count", "limit.conntrack")}
TREND_MIN_SAMPLES = 3
TREND_MIN_SECONDS = 10.0


def trend(times: np.ndarray, figures: list[dict[str, float]], scope: str) -> list[Forecast]:
    """Forecasts from stored samples (history): each figure's least-squares slope over the
    samples, against the limit of the last one. Too few samples or too short a span: none."""
    out: list[Forecast] = []
    if times.shape[0] < TREND_MIN_SAMPLES or times[-1] - times[0] < TREND_MIN_SECONDS:
        return out
    for resource, (used_key, limit_key) in TREND_FIGURES.items():
        rows = [i for i, f in enumerate(figures) if used_key in f]
        limit = figures[-1].get(limit_key)
        if len(rows) < TREND_MIN_SAMPLES or not limit:
            continue
        t = times[rows] - times[rows[0]]
        used = np.array([figures[i][used_key] for i in rows], dtype=np.float64)
        slope = float(np.polyfit(t, used, 1)[0])
        last = int(used[-1])
        rising = slope * float(t[-1]) >= 1.0  # at least one more over the span: not noise
        left = max(limit - last, 0.0) / slope if rising else None
        out.append(Forecast(resource, scope, last, int(limit), slope, left, None))
    return sorted(out, key=lambda f: (f.seconds_left is None, f.seconds_left or 0.0))
