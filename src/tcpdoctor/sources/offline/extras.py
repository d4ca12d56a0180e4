"""The optional fields of ss and netstat lines (-p users, -o timers, -e inode and uid,
-i tcp_info, -m skmem), read with the checked converters: a malformed one makes None, and its line
then counts as unparsed."""

from __future__ import annotations

import re

from tcpdoctor.model.tcp import (
    TIMER_KEEPALIVE,
    TIMER_NONE,
    TIMER_PROBE,
    TIMER_RETRANSMIT,
    TIMER_TIME_WAIT,
)
from tcpdoctor.sources.offline.fields import PID, U32, scaled, whole

# ss -o and netstat -o timer names -> inet_diag timer codes.
TIMERS = {"on": TIMER_RETRANSMIT, "keepalive": TIMER_KEEPALIVE, "timewait": TIMER_TIME_WAIT,
          "persist": TIMER_PROBE, "probe": TIMER_PROBE, "off": TIMER_NONE}
USERS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')
SS_TIMER = re.compile(r"timer:\((\w+),(?:(\d+)min)?(?:([\d.]+)sec)?(?:([\d.]+)ms)?")
NETSTAT_TIMER = re.compile(r"(\w+) \(([\d.]+)/")
# ss -m: skmem:(r,rb,t,tb,f,w,o,...) (iproute2 misc/ss.c print_skmeminfo).
SKMEM = re.compile(r"skmem:\(r(\d+),rb(\d+),t\d+,tb(\d+),f(\d+),w(\d+),o(\d+)")
SKMEM_NAMES = ("rmem_alloc", "rcvbuf", "sndbuf", "fwd_alloc", "wmem_queued", "optmem")
INFO = re.compile(r"\b(lastsnd|lastrcv|lastack):(\d+)|\brtt:([\d.]+)/")


def _users(line: str, out: dict[str, int], names: dict[int, str]) -> bool:
    found = USERS.findall(line)
    if found:
        name, pid_text = found[0]
        pid = whole(pid_text, PID)
        if pid is None:
            return False
        out["pid"] = pid
        names[pid] = name
    return True


def ss_extras(text: str, names: dict[int, str]) -> dict[str, int] | None:
    """The -p/-o/-e/-i fields of an ss line (or its continuation) as column values; None
    when one of them is malformed (the line then counts as unparsed)."""
    out: dict[str, int] = {}
    if "users:(" in text and not _users(text, out, names):
        return None
    if "timer:(" in text and (m := SS_TIMER.search(text)):
        minutes = whole(m.group(2) or "0", 10**6)
        sec = scaled(m.group(3) or "0", 1000)
        ms = scaled(m.group(4) or "0", 1)
        if minutes is None or sec is None or ms is None:
            return None
        out["timer"] = TIMERS.get(m.group(1), 0)
        out["expires"] = min(minutes * 60_000 + sec + ms, U32)
    for key in ("ino", "uid"):
        if f"{key}:" in text and (m := re.search(rf"\b{key}:(\d+)", text)):
            value = whole(m.group(1), U32)
            if value is None:
                return None
            out["inode" if key == "ino" else "uid"] = value
    if ("last" in text or "rtt:" in text) and (hits := INFO.findall(text)):
        out["has_info"] = 1
        for key, value, rtt in hits:
            got = whole(value, U32) if key else scaled(rtt, 1000)
            if got is None:
                return None
            out[key or "rtt"] = got
    if "skmem:(" in text and (m := SKMEM.search(text)):
        values = [whole(v, U32) for v in m.groups()]
        if None in values:
            return None
        out.update(zip(SKMEM_NAMES, values, strict=True))  # type: ignore[arg-type]
        out["has_mem"] = 1
    return out


def netstat_extras(rest: list[str], line: str, names: dict[int, str]) -> dict[str, int] | None:
    """-p (PID/Program) and -o (timer) fields; None when one is malformed."""
    out: dict[str, int] = {}
    # -p's PID/Program is the first such field; -e puts User and Inode before it.
    at = next((i for i, w in enumerate(rest[:3]) if "/" in w and w[:1].isdigit()), None)
    if at is None and rest and "/" in rest[0]:
        at = 0  # malformed: rejected below
    if at is not None:
        pid_text, _, name = rest[at].partition("/")
        pid = whole(pid_text, PID)
        if pid is None:
            return None
        out["pid"] = pid
        names[pid] = " ".join([name, *rest[at + 1:]]).split(" (")[0].split(" off")[0]
        if at == 2 and rest[1].isdigit():  # -e: the inode column
            inode = whole(rest[1], U32)
            if inode is not None:
                out["inode"] = inode
    if "(" in line and (m := NETSTAT_TIMER.search(line)) and m.group(1) in TIMERS:
        expires = scaled(m.group(2), 1000)
        if expires is None:
            return None
        out["timer"] = TIMERS[m.group(1)]
        out["expires"] = expires
    return out
