"""Carry a relief plan out: rights and kernel support checked first, the report written
before the first socket is touched, the sockets ended at a bounded rate, and the table
read again to state what happened.

Each socket's outcome is one errno in a column: 0 ended; ENOENT (a new socket took its
4-tuple, or it is gone), ESTALE (the owner's descriptor now holds something else) and
ENOTCONN count as vanished, never as failures, and were never touched.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.relief.plan import DESTROY, GRACEFUL, METHODS, Plan
from tcpdoctor.sources import ending, netns
from tcpdoctor.util.atomic import atomic_write

CAP_NET_ADMIN = 12
VANISHED = (errno.ENOENT, errno.ESTALE, errno.ENOTCONN, errno.EBADF, errno.ESRCH)
BATCH_SECONDS = 0.1  # the rate is kept per tenth of a second


def outcome_counts(errnos: np.ndarray, gone: tuple[int, ...] = VANISHED,
                   done: str = "relieved") -> dict[str, int]:
    """Done (errno 0), vanished (an errno of `gone`: never touched) and failed."""
    vanished = np.isin(errnos, gone)
    return {done: int(np.count_nonzero(errnos == 0)),
            "vanished": int(np.count_nonzero(vanished)),
            "failed": int(np.count_nonzero((errnos != 0) & ~vanished))}


def failures(errnos: np.ndarray, gone: tuple[int, ...] = VANISHED) -> dict[str, int]:
    """Failed items per errno name (EPERM: 3, ...)."""
    failed = errnos[(errnos != 0) & ~np.isin(errnos, gone)]
    codes, counts = np.unique(failed, return_counts=True)
    return {errno.errorcode.get(int(c), str(int(c))): int(k)
            for c, k in zip(codes, counts, strict=True)}


def has_net_admin(proc_root: str = "/proc") -> bool:
    try:
        with open(f"{proc_root}/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def find_fds(plan: Plan, proc_root: str = "/proc") -> None:
    """Each owned socket's descriptor number in its owner (one listing of the owners' fd
    tables, joined on inodes with a sorted search): the graceful method needs it, and the
    report names it for every method (a reset socket's descriptor stays open too)."""
    c = plan.columns
    graceful = np.flatnonzero((c["pid"] >= 0) & (c["inode"] != 0))
    for pid in np.unique(c["pid"][graceful]):
        inodes, fds = ending.socket_fds(int(pid), proc_root)
        rows = graceful[c["pid"][graceful] == pid]
        if not inodes.size:
            continue
        order = np.argsort(inodes)
        pos = np.searchsorted(inodes[order], c["inode"][rows])
        pos = np.minimum(pos, inodes.size - 1)
        hit = inodes[order][pos] == c["inode"][rows]
        c["fd"][rows[hit]] = fds[order][pos[hit]]


def preflight(plan: Plan, reset: bool) -> list[str]:
    """Why --apply cannot go ahead (empty: it can). Graceful rows whose owner cannot be
    attached switch to DESTROY with --reset, else are dropped with the reason."""
    problems: list[str] = []
    c = plan.columns
    if np.any(c["method"] == DESTROY) or reset:
        if not has_net_admin():
            problems.append(Msg("ending sockets with SOCK_DESTROY needs CAP_NET_ADMIN (run as "
                                "root); nothing was changed"))
        else:
            code = netns.run_in(plan.netns, ending.probe_destroy)
            if code == errno.EOPNOTSUPP:
                problems.append(Msg("this kernel cannot end sockets (built without "
                                    "CONFIG_INET_DIAG_DESTROY); nothing was changed"))
    for pid in np.unique(c["pid"][c["method"] == GRACEFUL]):
        why = _attach(int(pid))
        if why is None:
            continue
        rows = (c["pid"] == pid) & (c["method"] == GRACEFUL)
        if reset:
            c["method"][rows] = DESTROY
        else:
            problems.append(Msg("cannot take descriptors from pid {pid} ({why}): a graceful "
                                "shutdown needs ptrace rights over it (root; Yama's "
                                "ptrace_scope 3 forbids it); --reset ends its sockets with a "
                                "RST instead; nothing was changed", pid=int(pid), why=why))
    return problems


def _attach(pid: int) -> str | None:
    """None when this process may take pid's descriptors, else why not."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        dup = ending.pidfd_getfd(pidfd, 0)
        os.close(dup)
    except OSError as exc:
        if exc.errno != errno.EBADF:  # no fd 0 is fine: the right was granted
            return exc.strerror or str(exc)
    finally:
        os.close(pidfd)
    return None


def socket_rows(plan: Plan) -> list[dict[str, Any]]:
    """Every socket of the plan, for the report written before acting."""
    c = plan.columns
    local = [format_addr(int(h), int(lo)) for h, lo in zip(c["laddr_hi"], c["laddr_lo"],
                                                           strict=True)]
    remote = [format_addr(int(h), int(lo)) for h, lo in zip(c["raddr_hi"], c["raddr_lo"],
                                                            strict=True)]
    return [{"local": f"{local[i]}:{int(c['sport'][i])}",
             "remote": f"{remote[i]}:{int(c['dport'][i])}",
             "state": STATE_NAMES[int(c["state"][i]) - 1], "cookie": int(c["cookie"][i]),
             "inode": int(c["inode"][i]),
             "pid": int(c["pid"][i]) if c["pid"][i] >= 0 else None,
             "fd": int(c["fd"][i]) if c["fd"][i] >= 0 else None,
             "method": METHODS[int(c["method"][i])]} for i in range(len(plan))]


def write_report(plan: Plan, path: str, meta: dict[str, Any]) -> None:
    write_rows(path, meta, "sockets", socket_rows(plan))


def write_rows(path: str, meta: dict[str, Any], key: str, rows: list[dict[str, Any]]) -> None:
    """A report of every item about to be touched (mode 0600), written before the first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps({**meta, key: rows}, indent=1) + "\n", mode=0o600)


def paced(n: int, rate: float) -> Iterator[range]:
    """n items in batches of at most `rate` a second, one batch a tick. The first batch
    waits one tick, so that the report written just before is always in place before
    anything changes."""
    per_tick = max(int(rate * BATCH_SECONDS), 1)
    tick = max(BATCH_SECONDS, per_tick / rate)
    next_at = time.monotonic() + tick
    for start in range(0, n, per_tick):
        time.sleep(max(next_at - time.monotonic(), 0))
        next_at += tick
        yield range(start, min(start + per_tick, n))


def carry_out(plan: Plan, rate: float) -> np.ndarray:
    """End the plan's sockets, at most `rate` a second (paced); one errno per socket."""
    c = plan.columns
    out = np.full(len(plan), -1, dtype=np.int32)
    destroyer = netns.run_in(plan.netns, ending.Destroyer) if np.any(
        c["method"] == DESTROY) else None
    pidfds: dict[int, int] = {}
    try:
        for batch in paced(len(plan), rate):
            _batch(c, np.arange(batch.start, batch.stop), out, destroyer, pidfds, batch.start)
    finally:
        if destroyer is not None:
            destroyer.close()
        for fd in pidfds.values():
            os.close(fd)
    return out


def _batch(c: dict[str, np.ndarray], rows: np.ndarray, out: np.ndarray,
           destroyer: ending.Destroyer | None, pidfds: dict[int, int], seq: int) -> None:
    kill = rows[c["method"][rows] == DESTROY]
    if kill.size and destroyer is not None:
        reqs = [ending.destroy_request(
            seq + k + 1, int(c["family"][i]), int(c["sport"][i]), int(c["dport"][i]),
            ending.address_bytes(int(c["family"][i]), int(c["laddr_hi"][i]),
                                 int(c["laddr_lo"][i])),
            ending.address_bytes(int(c["family"][i]), int(c["raddr_hi"][i]),
                                 int(c["raddr_lo"][i])),
            int(c["ifindex"][i]), int(c["cookie"][i])) for k, i in enumerate(kill)]
        out[kill] = destroyer.run(reqs, seq + 1)
    for i in rows[c["method"][rows] == GRACEFUL]:
        out[i] = _graceful(int(c["pid"][i]), int(c["fd"][i]), int(c["inode"][i]), pidfds)


def _graceful(pid: int, fd: int, inode: int, pidfds: dict[int, int]) -> int:
    if fd < 0:
        return errno.ESTALE  # the owner no longer holds it
    if pid not in pidfds:
        try:
            pidfds[pid] = os.pidfd_open(pid)
        except OSError as exc:
            return exc.errno or errno.ESRCH
    return ending.shutdown_owned(pidfds[pid], fd, inode)


def owner_fds_open(plan: Plan, done: np.ndarray, proc_root: str = "/proc") -> int:
    """Relieved sockets whose owner still holds the descriptor (the socket is gone from
    the table, whichever the method; the descriptor stays until the application closes it)."""
    c = plan.columns
    return sum(ending.holds(int(c["pid"][i]), int(c["fd"][i]), int(c["inode"][i]), proc_root)
               for i in np.flatnonzero(done & (c["fd"] >= 0)))


def default_report_path(state_dir: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return os.path.join(state_dir, "relief", f"relief-{stamp}-{os.getpid()}.json")
