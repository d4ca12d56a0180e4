"""The binary per-CPU ring buffers (per_cpu/cpuN/trace_pipe_raw), page by page.

A page is a header (timestamp, commit) and records; each record header holds a 5-bit type
and a 27-bit time delta (kernel/trace/ring_buffer.c). Events are decoded with the structs
formats.py built from this kernel's format files and appended as packed rows: the loop does
one unpack and one pack per event, nothing else.
"""

from __future__ import annotations

import contextlib
import glob
import os
import struct
import time
from collections.abc import Callable

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import V4_MAPPED_INT
from tcpdoctor.model.trace import (
    RECEIVE_RESET,
    RETRANSMIT,
    SEND_RESET,
    STATE_CHANGE,
    EventBatch,
)
from tcpdoctor.sources.tracefs.formats import EventFormat, read_format

PAGE_HEADER = struct.Struct("<Qq")
U32 = struct.Struct("<I")
U16 = struct.Struct("<H")
MAX_PAGES = 1024  # pages one poll reads (shared by the CPUs) before handing the batch over
MISSED_FLAGS = 3 << 30  # RB_MISSED_EVENTS | RB_MISSED_STORED in a page's commit word
MISSED_STORED = 1 << 30
PADDING, TIME_EXTEND, TIME_STAMP = 29, 30, 31
# An event stamped just before a look may still be being written on another CPU.
SLACK_NS = 2_000_000

WANTED = {
    "sock/inet_sock_set_state": ("common_pid", "skaddr", "oldstate", "newstate", "sport",
                                 "dport", "family", "saddr", "daddr", "saddr_v6", "daddr_v6"),
    "tcp/tcp_send_reset": ("common_pid", "skaddr", "state", "reason", "saddr", "daddr"),
    "tcp/tcp_receive_reset": ("common_pid", "skaddr", "sport", "dport", "family", "saddr",
                              "daddr", "saddr_v6", "daddr_v6"),
    "tcp/tcp_retransmit_skb": ("common_pid", "skaddr", "state", "sport", "dport", "family",
                               "saddr", "daddr", "saddr_v6", "daddr_v6"),
}
KINDS = {"sock/inet_sock_set_state": STATE_CHANGE, "tcp/tcp_send_reset": SEND_RESET,
         "tcp/tcp_receive_reset": RECEIVE_RESET, "tcp/tcp_retransmit_skb": RETRANSMIT}
Handler = Callable[[bytes, int, int, EventBatch], None]


def addr(family: int, v4: bytes, v6: bytes) -> tuple[int, int]:
    if family == 10:
        return int.from_bytes(v6[:8], "big"), int.from_bytes(v6[8:], "big")
    return 0, V4_MAPPED_INT | int.from_bytes(v4, "big")


def sockaddr(raw: bytes) -> tuple[int, int, int, int]:
    """A sockaddr_in/in6 as tcp_send_reset stores it: (family, port, hi, lo)."""
    family = U16.unpack_from(raw)[0]
    port = int.from_bytes(raw[2:4], "big")
    if family == 10:
        return family, port, *addr(10, b"", raw[8:24])
    return family, port, *addr(2, raw[4:8], b"")


def _at(names: tuple[str, ...], name: str) -> int:
    """Where a field is in the unpacked tuple; -1 when this kernel lacks it (a trailing
    zero is appended to every tuple, so -1 reads 0)."""
    return names.index(name) if name in names else -1


def handler(kind: int, fmt: EventFormat) -> Handler:
    """A function that decodes one event of this format into a packed row (fields by
    position, no per-event dict: this runs 150,000 times a second in a storm)."""
    unpack, names = fmt.unpack.unpack_from, fmt.fields
    pid, sk = _at(names, "common_pid"), _at(names, "skaddr")
    if kind == SEND_RESET:
        state, reason = _at(names, "state"), _at(names, "reason")
        src, dst = _at(names, "saddr"), _at(names, "daddr")

        def decode_reset(page: bytes, at: int, ts: int, out: EventBatch) -> None:
            v = (*unpack(page, at), 0)
            fam, sport, shi, slo = sockaddr(v[src])
            _, dport, dhi, dlo = sockaddr(v[dst])
            out.add(kind, ts, v[pid], v[sk], 0, v[state], v[reason], fam, sport, dport,
                    shi, slo, dhi, dlo)
        return decode_reset
    old, new = _at(names, "oldstate"), _at(names, "newstate" if kind == STATE_CHANGE
                                            else "state")
    sport, dport, family = _at(names, "sport"), _at(names, "dport"), _at(names, "family")
    s4, d4, s6, d6 = (_at(names, n) for n in ("saddr", "daddr", "saddr_v6", "daddr_v6"))

    def decode(page: bytes, at: int, ts: int, out: EventBatch) -> None:
        v = (*unpack(page, at), 0)
        fam = v[family]
        shi, slo = addr(fam, v[s4], v[s6])
        dhi, dlo = addr(fam, v[d4], v[d6])
        out.add(kind, ts, v[pid], v[sk], v[old], v[new], 0, fam, v[sport], v[dport],
                shi, slo, dhi, dlo)
    return decode


class RawReader:
    """Every CPU's raw buffer of one instance, read without blocking."""

    def __init__(self, instance_path: str) -> None:
        if "[mono]" not in _read(os.path.join(instance_path, "trace_clock")):
            raise TcpDoctorError(Msg("the tracing clock 'mono' is not available (the raw reader "
                                     "orders events from several CPUs by it)"))
        events_dir = os.path.join(instance_path, "events")
        self.formats = {e: read_format(events_dir, e, w) for e, w in WANTED.items()}
        self.handlers = {f.id: handler(KINDS[e], f) for e, f in self.formats.items()}
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.missed = 0
        self.fds: list[int] = []
        self.stats = sorted(glob.glob(os.path.join(instance_path, "per_cpu", "cpu*", "stats")))
        for raw in sorted(glob.glob(os.path.join(instance_path, "per_cpu", "cpu*",
                                                 "trace_pipe_raw"))):
            self.fds.append(os.open(raw, os.O_RDONLY | os.O_NONBLOCK))

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def poll(self, out: EventBatch, max_pages: int = MAX_PAGES) -> tuple[bool, int]:
        """Decode the pages every CPU has ready (up to max_pages): whether more may be
        waiting (max_pages were read), and the time before which every event has been
        read. Each CPU's buffer is in time order, so that is the oldest of each CPU's
        newest event, or, for a CPU found empty, the moment before it was looked at
        (trace_clock is mono: time.monotonic_ns's clock)."""
        # Every CPU gets its share of the pages at each poll: a CPU left unread would hold
        # `safe` at 0, and every event read since would wait in the reorder buffer (an
        # unpaced storm on one CPU grew it past 200 MB).
        share = max(1, max_pages // max(1, len(self.fds)))
        safe, more = 1 << 63, False
        for fd in self.fds:
            seen, pages = 0, 0
            while pages < share:
                before = time.monotonic_ns() - SLACK_NS
                try:
                    page = os.read(fd, self.page_size)
                except BlockingIOError:
                    page = b""
                if not page:
                    seen = before
                    break
                pages += 1
                seen = self.decode_page(page, out)
            more = more or pages >= share
            safe = min(safe, seen)
        return more, safe

    def decode_page(self, page: bytes, out: EventBatch) -> int:
        """Append the page's events; the time of its last one."""
        ts, commit = PAGE_HEADER.unpack_from(page)
        size = commit & ~MISSED_FLAGS & 0xFFFFFFFF
        if commit & MISSED_STORED and 16 + size + 8 <= len(page):
            self.missed += struct.unpack_from("<Q", page, 16 + size)[0]
        elif commit & MISSED_FLAGS:
            self.missed += 1  # some were lost; the kernel had no room to say how many
        pos, end, handlers = 16, 16 + size, self.handlers
        while pos < end:
            head = U32.unpack_from(page, pos)[0]
            type_len, delta = head & 31, head >> 5
            if type_len == PADDING:
                if delta == 0:
                    break
                pos += 4 + U32.unpack_from(page, pos + 4)[0]
                continue
            if type_len == TIME_EXTEND:
                ts += (U32.unpack_from(page, pos + 4)[0] << 27) + delta
                pos += 8
                continue
            if type_len == TIME_STAMP:
                ts = (U32.unpack_from(page, pos + 4)[0] << 27) + delta
                pos += 8
                continue
            ts += delta
            if type_len:
                data, pos = pos + 4, pos + 4 + type_len * 4
            else:
                data, pos = pos + 8, pos + 4 + U32.unpack_from(page, pos + 4)[0]
            fn = handlers.get(U16.unpack_from(page, data)[0])
            if fn is not None:
                fn(page, data, ts, out)
        return ts

    def lost(self) -> int:
        return lost_events(self.stats, self.missed)


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def lost_events(stats: list[str], missed: int = 0) -> int:
    """Events the kernel could not keep (overruns, drops): from every CPU's stats file."""
    total = 0
    for path in stats:
        with contextlib.suppress(OSError), open(path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("overrun", "dropped events"):
                    total += int(value.split()[0] or 0)
    return max(total, missed)
