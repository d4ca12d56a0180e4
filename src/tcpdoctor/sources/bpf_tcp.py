"""Every TCP socket with its tcp_info and buffer figures through a BPF TCP iterator.

inet_diag builds a netlink message per socket with the whole tcp_info and its attributes,
and walks the socket hash once per dump: at a million sockets with tcp_info that is about
2 s of kernel time on the 2-core VM of docs/benchmarks.md. The iterator (bpf_tcp_prog)
walks the hash once and copies the few fields the report uses, 176 bytes a socket: about
0.6 s for the same million. The columns come out as the netlink reader's (same names,
units and rules, the conversions inet_diag makes done here on whole columns), and a live
test compares the two sources socket by socket.

Root only (CAP_BPF and CAP_PERFMON), Linux 5.9+ with BTF; anything refused answers None
and the caller dumps through sock_diag, as without it.
"""

from __future__ import annotations

import functools
import io
import mmap
import os
import queue
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.columns import INFO_COLUMNS, constant, empty_columns, wanted_columns
from tcpdoctor.model.tcp import AF_INET, AF_INET6, TCP_LISTEN, normalize_states
from tcpdoctor.sources import bpf_iter, btf
from tcpdoctor.sources.bpf_tcp_prog import (
    KIND_FULL,
    KIND_REQUEST,
    KIND_TIME_WAIT,
    RECORD,
    program,
    resolve,
)

READ_SIZE = 2 << 20  # records converted a buffer at a time: the whole table is never held
MAX_SOCKETS = 1 << 26  # 67 million: stop reading beyond (no host holds that many)
# HZ values whose jiffies convert to milliseconds exactly (jiffies_to_msecs' common case).
EXACT_HZ = (100, 200, 250, 500, 1000)
_U32 = np.uint64(0xFFFF_FFFF)
_refused: list[bool] = []  # the kernel refused the program once in this process


def available(proc_root: str) -> bool:
    """Where this reader may be tried: the host's /proc (not a fixture tree), as root,
    not switched off (TCPDOCTOR_NO_BPF, as for the owner iterator), with CLOCK_MONOTONIC
    not offset by a time namespace (the jiffies' unit is told from it)."""
    if proc_root.rstrip("/") != "/proc" or os.geteuid() != 0 or os.environ.get(
            "TCPDOCTOR_NO_BPF"):
        return False
    return _monotonic_offset("/proc/self/timens_offsets") == 0


def _monotonic_offset(path: str) -> int | None:
    """This process's time namespace's CLOCK_MONOTONIC offset in seconds (0 without time
    namespaces, before Linux 5.6); None when unreadable."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(4096).decode("ascii", "replace")
    except FileNotFoundError:
        return 0
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] in ("monotonic", "1"):
            try:
                seconds, nanoseconds = int(words[1]), int(words[2])
            except ValueError:
                return None
            return seconds or (1 if nanoseconds else 0)
    return 0


def read_sockets(want: frozenset[str], info: bool, families: tuple[int, ...],
                 ) -> dict[str, np.ndarray] | None:
    """The calling thread's network namespace's TCP sockets as columns (the netlink
    reader's, with tcp_info columns when info, else the buffer ones only); None where the
    kernel refuses the iterator or the jiffies' unit cannot be told."""
    call = bpf_iter.syscall()
    plan = _plan() if call is not None and not _refused else None
    if call is None or plan is None:
        return None
    target, code = plan
    fds: list[int] = []
    try:
        fd = bpf_iter.start(call, code, target, b"tcpdoctor_tcp", fds)
    except OSError:
        # Refused (no CAP_BPF in a container, lockdown, a verifier that says no): the
        # same answer next time, so a long-running exporter stops asking.
        _refused.append(True)
        for fd in fds:
            os.close(fd)
        return None
    try:
        cols = _read(fd, want, info)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)
    if cols is not None and set(families) != {AF_INET, AF_INET6}:
        keep = np.isin(cols["family"], families)
        cols = {k: v[keep] for k, v in cols.items()}
    return cols


@functools.cache
def _plan() -> tuple[int, bytes] | None:
    """The iterator's BTF id and the program, worked out once per process from the
    kernel's BTF (a scrape of the exporter does not read it again); None without them."""
    try:
        with btf.borrowed() as types:
            if types is None:
                return None
            with types.lock:  # the owner iterator may be looking up its types meanwhile
                target = types.find(btf.KIND_FUNC, "bpf_iter_tcp")
                loads = resolve(types.field) if target is not None else None
    except (ValueError, struct.error):  # a BTF blob that does not hold together
        return None
    return None if target is None or loads is None else (target, program(loads))


def _read(fd: int, want: frozenset[str], info: bool) -> dict[str, np.ndarray] | None:
    """The iterator's records, converted a buffer at a time into preallocated columns.

    A thread reads (the kernel's walk, without the GIL) while this one converts the
    buffer read before: on two CPUs the walk and the conversion overlap."""
    names = wanted_columns(want | {"family", "state"})
    names.update(INFO_COLUMNS)
    sink = _Sink(names, _estimate())
    started = time.clock_gettime(time.CLOCK_MONOTONIC)
    reader = _Reader(fd)
    hz = 0
    try:
        for recs in reader.batches():
            hz = hz or jiffies_hz(int(recs["jiffies"][0]), started)
            if not hz:
                return None
            sink.add(convert(recs, hz, info))
            if sink.count >= MAX_SOCKETS:
                break
    finally:
        reader.stop()
    return sink.columns()


class _Reader:
    """Reads the iterator on its own thread into a few reused buffers, each handed over
    holding whole records (a read gives at most what the kernel's seq_file holds, 32 KB;
    a buffer gathers READ_SIZE before it is handed over)."""

    def __init__(self, fd: int, buffers: int = 2) -> None:
        self.fd = fd
        self.free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(buffers):
            self.free.put(np.empty(READ_SIZE + RECORD.itemsize, np.uint8))
        self.full: queue.Queue[tuple[np.ndarray, int] | BaseException | None] = queue.Queue()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tcpdoctor-tcp-iter",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with io.FileIO(self.fd, "r", closefd=False) as fh:
                carry = b""
                while not self.halt.is_set():
                    buf = self.free.get()
                    fill = len(carry)
                    buf[:fill] = np.frombuffer(carry, np.uint8)
                    ended = False
                    while fill < buf.shape[0] - RECORD.itemsize:
                        got = fh.readinto(buf[fill:].data)
                        if not got:
                            ended = True
                            break
                        fill += got
                    whole = fill // RECORD.itemsize * RECORD.itemsize
                    carry = bytes(buf[whole:fill])  # a record split across two reads
                    self.full.put((buf, whole))
                    if ended:
                        break
            self.full.put(None)
        except BaseException as exc:  # handed to the converting thread
            self.full.put(exc)

    def batches(self) -> Iterator[np.ndarray]:
        while True:
            item = self.full.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            buf, size = item
            if size:
                yield buf[:size].view(RECORD)
            self.free.put(buf)

    def stop(self) -> None:
        """End the thread before the caller closes the descriptor it reads: a reader
        waiting for a buffer gets one, sees the halt after its next hand-over, and ends."""
        self.halt.set()
        self.free.put(np.empty(RECORD.itemsize * 2, np.uint8))
        self.thread.join()


def jiffies_hz(jiffies: int, monotonic: float) -> int:
    """The kernel's HZ from a jiffies64 reading and CLOCK_MONOTONIC's seconds: jiffies
    start at INITIAL_JIFFIES = 2**32 - 300 * HZ at boot and count HZ a second. 0 when no
    exact-millisecond HZ fits within 2% (the first seconds after boot, or an odd HZ:
    the netlink reader then serves)."""
    if abs(monotonic - 300.0) < 10.0:
        return 0
    estimate = (jiffies - 2**32) / (monotonic - 300.0)
    for hz in EXACT_HZ:
        if abs(estimate - hz) <= 0.02 * hz:
            return hz
    return 0


def convert(recs: np.ndarray, hz: int, info: bool) -> dict[str, np.ndarray]:
    """Records to the netlink reader's columns, with inet_diag's rules: timers
    (inet_sk_diag_fill, inet_twsk_diag_fill, inet_req_diag_fill), queues
    (tcp_diag_get_info), tcp_info's idle times (tcp_get_info) and skmem
    (sk_get_meminfo)."""
    kind = recs["kind"]
    full, tw, req = kind == KIND_FULL, kind == KIND_TIME_WAIT, kind == KIND_REQUEST
    state = normalize_states(recs["state"])
    cols: dict[str, np.ndarray] = {"family": recs["family"].astype(np.uint8),
                                   "state": state}
    ports = recs["portpair"]
    cols["sport"] = (ports >> 16).astype(np.uint16)
    cols["dport"] = (ports & 0xFFFF).astype(np.uint16).byteswap()
    cols.update(_addresses(recs))
    cols.update(_timers(recs, full, tw, req, hz))
    listen = full & (state == TCP_LISTEN)
    backlog = recs["rcv_nxt"] - recs["copied_seq"]
    cols["rqueue"] = np.where(listen, recs["ack_backlog"], np.where(
        full & (backlog.view(np.int32) > 0), backlog, 0)).astype(np.uint32)
    cols["wqueue"] = np.where(listen, recs["max_ack_backlog"], np.where(
        full, recs["write_seq"] - recs["snd_una"], 0)).astype(np.uint32)
    cols["uid"] = np.where(full, recs["uid"], 0).astype(np.uint32)
    cols["inode"] = np.where(full, recs["ino"], 0).astype(np.uint32)
    cols["cookie"] = recs["cookie"].copy()
    cols["ifindex"] = recs["ifindex"].copy()
    cols.update(_info(recs, full, listen, hz, info))
    return cols


def _addresses(recs: np.ndarray) -> dict[str, np.ndarray]:
    """IPv4 as ::ffff:a.b.c.d, IPv6 as two big-endian halves (the netlink decoder's)."""
    v4 = recs["family"] == AF_INET
    pair = recs["addrpair"]  # skc_daddr, then skc_rcv_saddr, in network order
    out = {}
    for prefix, v6, v4_addr in (("laddr", recs["saddr6"], pair >> np.uint64(32)),
                                ("raddr", recs["daddr6"], pair & _U32)):
        swapped = (v4_addr & _U32).astype(np.uint32).byteswap().astype(np.uint64)
        out[f"{prefix}_hi"] = np.where(v4, np.uint64(0), v6[:, 0].byteswap())
        out[f"{prefix}_lo"] = np.where(v4, swapped | V4_MAPPED, v6[:, 1].byteswap())
    return out


def _timers(recs: np.ndarray, full: np.ndarray, tw: np.ndarray, req: np.ndarray,
            hz: int) -> dict[str, np.ndarray]:
    """idiag_timer, idiag_retrans and idiag_expires (ms, never negative)."""
    pending = recs["pending"]
    # ICSK_TIME_RETRANS, LOSS_PROBE, REO_TIMEOUT: "on" (1); PROBE0: the zero-window probe
    # (4); else the keepalive timer (2) when armed.
    retrans = full & np.isin(pending, (1, 5, 6))
    probe = full & (pending == 3) & ~retrans
    keepalive = full & ~retrans & ~probe & (recs["sk_timer_armed"] != 0)
    timer = np.select([retrans, probe, keepalive, tw, req], [1, 4, 2, 3, 1], 0)
    deadline = np.where(keepalive, recs["sk_timer"], recs["timeout"])
    left = (deadline - recs["jiffies"]).view(np.int64)
    expires = np.where((timer > 0) & (left > 0), left, 0) * (1000 // hz)
    count = np.select([retrans | req, probe | keepalive], [recs["retransmits"],
                                                          recs["probes_out"]], 0)
    return {"timer": timer.astype(np.uint8), "retrans": count.astype(np.uint8),
            "expires": expires.astype(np.uint32)}


def _info(recs: np.ndarray, full: np.ndarray, listen: np.ndarray, hz: int,
          info: bool) -> dict[str, np.ndarray]:
    """tcp_info's idle times and RTT (info only; a listener's are zero: tcp_get_info
    returns before them), skmem (every full socket, as inet_diag)."""
    out: dict[str, np.ndarray] = {}
    timed = full & ~listen & info
    now = (recs["jiffies"] & _U32).astype(np.uint32)
    for name, stamp in (("lastsnd", "lsndtime"), ("lastrcv", "lrcvtime"),
                        ("lastack", "rcv_tstamp")):
        # u32 arithmetic, as jiffies_to_msecs(tcp_jiffies32 - stamp) wraps
        ms = (now - recs[stamp]) * np.uint32(1000 // hz)
        out[name] = np.where(timed, ms, 0).astype(np.uint32)
    out["rtt"] = np.where(timed, recs["srtt_us"] >> 3, 0).astype(np.uint32)
    out["has_info"] = full & info
    for name in ("rmem_alloc", "rcvbuf", "wmem_queued", "sndbuf", "fwd_alloc", "optmem"):
        out[name] = np.where(full, recs[name], 0).astype(np.uint32)
    out["has_mem"] = full.copy()
    return out


class _Sink:
    """Columns preallocated for the expected sockets (np.empty: pages the table does not
    reach are never touched), grown by half when more come; no list of pieces joined at
    the end (that would hold the table twice). A column that has held one value so far
    (IPv4's high address halves, a uid, an unused buffer) is kept as that value and
    becomes an array only when another comes: at a million sockets, the tens of MB of
    pages such columns would take are never touched."""

    def __init__(self, names: dict[str, str], expect: int) -> None:
        self.names = names
        self.count = 0
        self.capacity = expect
        self.cols: dict[str, np.ndarray] = {}
        self.same: dict[str, Any] = {}  # column -> its only value so far

    def add(self, part: dict[str, np.ndarray]) -> None:
        n = part["state"].shape[0]
        if self.count + n > self.capacity:
            self.capacity = max(self.count + n, self.count * 3 // 2)
            for name, col in self.cols.items():
                bigger = _unfilled(self.capacity, col.dtype)
                bigger[:self.count] = col[:self.count]
                self.cols[name] = bigger
        for name, dtype in self.names.items():
            values = part[name]
            if name not in self.cols:
                first = values[0] if not self.count else self.same[name]
                if bool((values == first).all()):
                    self.same[name] = first
                    continue
                col = self.cols[name] = _unfilled(self.capacity, dtype)
                col[:self.count] = first
                self.same.pop(name, None)
            self.cols[name][self.count:self.count + n] = values
        self.count += n

    def columns(self) -> dict[str, np.ndarray]:
        if not self.count:
            return empty_columns(self.names)
        return {name: self.cols[name][:self.count] if name in self.cols
                else constant(self.same[name], self.count, dtype)
                for name, dtype in self.names.items()}


def _unfilled(n: int, dtype: Any) -> np.ndarray:
    """np.empty, in small pages: numpy asks for huge pages on big arrays, and a column
    filled to 80% of its room would then hold up to 2 MB it never uses (measured at a
    million sockets: 27 MB more than the netlink reader's joined columns)."""
    size = n * np.dtype(dtype).itemsize
    if size < 4 << 20:
        return np.empty(n, dtype)
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    area.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(area, dtype, n)


def _estimate() -> int:
    """TCP sockets of this thread's namespace now (sockstat's inuse and tw), with room."""
    try:
        with open("/proc/thread-self/net/sockstat", "rb") as fh:
            text = fh.read(4096).decode("ascii", "replace")
    except OSError:
        return 4096
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["TCP:"]:
            pairs = dict(zip(words[1::2], words[2::2], strict=False))
            try:
                known = int(pairs.get("inuse", "0")) + int(pairs.get("tw", "0"))
            except ValueError:
                return 4096
            return min(known + known // 4 + 4096, MAX_SOCKETS)
    return 4096
