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
from collections.abc import Callable

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
MAX_PAGES = 4096  # pages one poll reads before handing the batch over
MISSED_FLAGS = 3 << 30  # RB_MISSED_EVENTS | RB_MISSED_STORED in a page's commit word
MISSED_STORED = 1 << 30
PADDING, TIME_EXTEND, TIME_STAMP = 29, 30, 31

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


def handler(kind: int, fmt: EventFormat) -> Handler:
    """A function that decodes one event of this format into a packed row."""
    unpack, names = fmt.unpack.unpack_from, fmt.fields

    def decode(page: bytes, at: int, ts: int, out: EventBatch) -> None:
        v = dict(zip(names, unpack(page, at), strict=True))
        if kind == SEND_RESET:
            fam, sport, shi, slo = sockaddr(v["saddr"])
            _, dport, dhi, dlo = sockaddr(v["daddr"])
            out.add(kind, ts, v["common_pid"], v["skaddr"], 0, v.get("state", 0),
                    v.get("reason", 0), fam, sport, dport, shi, slo, dhi, dlo)
            return
        fam = v["family"]
        shi, slo = addr(fam, v["saddr"], v["saddr_v6"])
        dhi, dlo = addr(fam, v["daddr"], v["daddr_v6"])
        out.add(kind, ts, v["common_pid"], v["skaddr"], v.get("oldstate", 0),
                v.get("newstate", v.get("state", 0)), 0, fam, v["sport"], v["dport"],
                shi, slo, dhi, dlo)
    return decode


class RawReader:
    """Every CPU's raw buffer of one instance, read without blocking."""

    def __init__(self, instance_path: str) -> None:
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

    def poll(self, out: EventBatch, max_pages: int = MAX_PAGES) -> int:
        """Decode the pages every CPU has ready (up to max_pages); how many were read."""
        pages = 0
        for fd in self.fds:
            while pages < max_pages:
                try:
                    page = os.read(fd, self.page_size)
                except BlockingIOError:
                    break
                if not page:
                    break
                pages += 1
                self.decode_page(page, out)
        return pages

    def decode_page(self, page: bytes, out: EventBatch) -> None:
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

    def lost(self) -> int:
        """Events the kernel could not keep (overruns, drops): from every CPU's stats."""
        total = 0
        for path in self.stats:
            with contextlib.suppress(OSError), open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    if key.strip() in ("overrun", "dropped events"):
                        total += int(value.split()[0] or 0)
        return max(total, self.missed)
