"""The text pipe (trace_pipe), when the raw per-CPU buffers cannot be read: the same events,
parsed from the lines the kernel formats. About ten times slower per event than ring.py, so
a storm loses events here (counted, like any loss).

The text of inet_sock_set_state has no socket address, so sockets are told apart by their
addresses and ports; a connect()'s first change (CLOSE -> SYN_SENT) is printed before the
kernel picks the local port, so it waits for the next change of a socket going to the same
destination, in order.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections import deque

from tcpdoctor.model.addresses import parse_addr
from tcpdoctor.model.tcp import STATE_BY_NAME, TCP_CLOSE, TCP_NEW_SYN_RECV, TCP_SYN_SENT
from tcpdoctor.model.trace import (
    RECEIVE_RESET,
    RETRANSMIT,
    SEND_RESET,
    STATE_CHANGE,
    EventBatch,
)
from tcpdoctor.sources.tracefs.formats import read_format
from tcpdoctor.sources.tracefs.ring import lost_events

LINE = re.compile(r"\s*.*-(\d+)\s+\[\d+\]\s+\S+\s+(\d+)\.(\d+): (\w+): (.*)")
KINDS = {"inet_sock_set_state": STATE_CHANGE, "tcp_send_reset": SEND_RESET,
         "tcp_receive_reset": RECEIVE_RESET, "tcp_retransmit_skb": RETRANSMIT}
STATES = {**{f"TCP_{name}": n for name, n in STATE_BY_NAME.items()},
          "TCP_NEW_SYN_RECV": TCP_NEW_SYN_RECV}
MAX_WAITING = 65_536  # connects waiting for their port, per destination
READ_SIZE = 1 << 20


def _addr(text: str) -> tuple[int, int]:
    """An address as the model's (hi, lo) halves; (0, 0) for what is not one."""
    try:
        hi, lo, _ = parse_addr(text)
    except ValueError:
        return 0, 0
    return hi, lo


def _endpoint(text: str) -> tuple[int, int, int]:
    """`1.2.3.4:80` or `[::1]:80` -> hi, lo, port."""
    host, _, port = text.rpartition(":")
    return (*_addr(host.strip("[]")), int(port) if port.isdigit() else 0)


class TextReader:
    """An instance's trace_pipe, read without blocking; same interface as RawReader."""

    def __init__(self, instance_path: str) -> None:
        events_dir = os.path.join(instance_path, "events")
        fmt = read_format(events_dir, "tcp/tcp_send_reset", ("reason",))
        self.formats = {"tcp/tcp_send_reset": fmt}
        self.reason_ids = {name: n for n, name in fmt.symbols.get("reason", {}).items()}
        self.stats = sorted(glob.glob(os.path.join(instance_path, "per_cpu", "cpu*", "stats")))
        self.fd = os.open(os.path.join(instance_path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        self.rest = b""
        self.connecting: dict[tuple[int, int, int], deque[tuple[int, int]]] = {}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def lost(self) -> int:
        return lost_events(self.stats)

    def poll(self, out: EventBatch) -> tuple[bool, int]:
        """Parse what the pipe holds now: whether more may be waiting, and (the pipe is in
        time order, so nothing waits) no time limit."""
        chunks, size = [self.rest], 0
        while size < READ_SIZE:  # the kernel hands out at most a page per read
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        lines = data.split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            self.parse(line.decode("ascii", "replace"), out)
        return size >= READ_SIZE, 1 << 63

    def parse(self, line: str, out: EventBatch) -> None:
        m = LINE.match(line)
        if m is None or m.group(4) not in KINDS:
            return
        pid, kind = int(m.group(1)), KINDS[m.group(4)]
        ts = int(m.group(2)) * 1_000_000_000 + int(m.group(3).ljust(9, "0"))
        f: dict[str, str] = {}
        for kv in m.group(5).split():
            key, _, value = kv.partition("=")
            f[key] = value
        if kind == SEND_RESET:
            shi, slo, sport = _endpoint(f.get("src", ""))
            dhi, dlo, dport = _endpoint(f.get("dest", ""))
            out.add(kind, ts, pid, self._key(shi, slo, sport, dhi, dlo, dport), 0,
                    STATES.get("TCP_" + f.get("state", ""), 0),
                    self.reason_ids.get(f.get("reason", ""), 0), 0, sport, dport,
                    shi, slo, dhi, dlo)
            return
        shi, slo = _addr(f.get("saddrv6", ""))
        dhi, dlo = _addr(f.get("daddrv6", ""))
        sport, dport = int(f.get("sport", "0")), int(f.get("dport", "0"))
        old = STATES.get(f.get("oldstate", ""), 0)
        new = STATES.get(f.get("newstate", f.get("state", "")), 0)
        family = 10 if f.get("family") == "AF_INET6" else 2
        sk = self._key(shi, slo, sport, dhi, dlo, dport)
        if kind == STATE_CHANGE and new == TCP_SYN_SENT and sport == 0:
            self._wait(ts, pid, (dhi, dlo, dport))
            return
        if kind == STATE_CHANGE and old == TCP_SYN_SENT:
            self._opened(sk, (dhi, dlo, dport), family, sport, shi, slo, out)
        out.add(kind, ts, pid, sk, old, new, 0, family, sport, dport, shi, slo, dhi, dlo)

    def _wait(self, ts: int, pid: int, dest: tuple[int, int, int]) -> None:
        queue = self.connecting.setdefault(dest, deque(maxlen=MAX_WAITING))
        queue.append((ts, pid))

    def _opened(self, sk: int, dest: tuple[int, int, int], family: int, sport: int,
                shi: int, slo: int, out: EventBatch) -> None:
        """The connect() this socket's first change belongs to: the oldest waiting one."""
        queue = self.connecting.get(dest)
        if queue:
            ts, pid = queue.popleft()
            out.add(STATE_CHANGE, ts, pid, sk, TCP_CLOSE, TCP_SYN_SENT, 0, family, sport, dest[2],
                    shi, slo, dest[0], dest[1])

    @staticmethod
    def _key(shi: int, slo: int, sport: int, dhi: int, dlo: int, dport: int) -> int:
        """A socket's stand-in for skaddr: its local and remote ends (64 bits)."""
        return hash((shi, slo, sport, dhi, dlo, dport)) & ((1 << 63) - 1)
