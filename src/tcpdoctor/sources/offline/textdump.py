"""Saved `ss` and `netstat` output (Linux and Windows) into snapshot columns.

Offline inputs come pasted into tickets: every line is parsed on its own, unparsable lines
are counted and reported (or fatal with strict=True), and addresses are interned so that
each distinct address is parsed once. Values accumulate in typed arrays, not objects.
"""

from __future__ import annotations

import ipaddress
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import REDACTED_HI, V4_MAPPED_INT
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS, constant, is_constant
from tcpdoctor.model.tcp import (
    AF_INET,
    AF_INET6,
    SERVICE_PORTS,
    STATE_ALIASES,
    TIMER_TIME_WAIT,
)
from tcpdoctor.sources.offline.extras import netstat_extras, ss_extras
from tcpdoctor.sources.offline.fields import (
    PORT,
    U32,
    is_chatter,
    is_redacted,
    looks_like_row,
    lost_first_cell,
    rejoined,
    whole,
)
from tcpdoctor.util.text import visible

# The Netid column of `ss -a` (iproute2 misc/ss.c): only tcp rows are read.
SS_NETIDS = ("tcp", "udp", "raw", "dccp", "sctp", "mptcp", "u_str", "u_dgr", "u_seq", "nl",
             "p_raw", "p_dgr", "v_str", "v_dgr", "xdp", "tipc", "icmp6", "icmp", "???")
SS_STATES = {"ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT",
             "UNCONN", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING"}
OPAQUE_NET = 0x0100_0000_0000_0000  # 100::/64 (RFC 6666 discard-only): truncated addresses
NAMED_NET = OPAQUE_NET + 1  # 100:0:0:1::/64: host names (no -n), apart from any address
LOCAL_NAMES = {"localhost": "127.0.0.1", "localhost.localdomain": "127.0.0.1",
               "ip6-localhost": "::1", "ip6-loopback": "::1"}


# Columns every line fills; the others (pid, timers, tcp_info, ...) are set on some lines only
# and are kept sparsely as (row, value) pairs, then scattered once per block.
DENSE = ("family", "state", "sport", "dport", "laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo",
         "rqueue", "wqueue")
SPEC = {**BASE_COLUMNS, **INFO_COLUMNS, "pid": "i4"}
TYPECODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i4": "i", "?": "B"}


@dataclass
class Builder:
    """Columns under construction (typed arrays, no object per socket).

    With a sink, every `block` sockets are handed over as numpy columns and the arrays start
    again, so that a parser's memory stays bounded however long its input is.
    """

    source: str
    strict: bool
    sink: Callable[[dict[str, np.ndarray]], None] | None = None
    block: int = 65_536
    cols: dict[str, array[int]] = field(default_factory=dict)
    extra: dict[str, tuple[array[int], array[int]]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    bad: list[int] = field(default_factory=list)
    bad_text: list[str] = field(default_factory=list)  # the first few, as they were
    bad_count: int = 0
    opaque: int = 0
    named: int = 0  # host names (a capture without -n), kept as opaque keys
    unknown_services: int = 0  # service names not in SERVICE_PORTS (counted with port 0)
    shared: int = 0  # rows repeating a socket already counted (lsof: a row per descriptor)
    redacted: int = 0  # rows whose local or remote address the poster redacted
    rows: int = 0
    has_pid: bool = False
    has_info: bool = False
    _addr: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.cols = {name: array(TYPECODES[SPEC[name]]) for name in DENSE}
        self.extra = {name: (array("I"), array(TYPECODES[dt])) for name, dt in SPEC.items()
                      if name not in DENSE}

    def owner_names(self) -> dict[int, str]:
        """The process names the capture gave, as a report may show them: every text reader
        (ss, netstat, Windows, BSD, lsof) fills `names`, and a pasted name is as untrusted
        as a live one (escape sequences become visible escapes)."""
        return {pid: visible(name) for pid, name in self.names.items()}

    def notes(self, name: str) -> list[str]:
        """What the report says about the rows as read: keys kept opaque, redactions."""
        out: list[str] = []
        if self.opaque:
            out.append(Msg("{n} truncated address(es) in {name} (netstat without -W) kept "
                           "as opaque keys", n=self.opaque, name=name))
        if self.named:
            out.append(Msg("{n} host name(s) in {name} (a capture taken without -n) kept as "
                           "opaque keys in 100:0:0:1::/64: they cannot be grouped by network; "
                           "capture with -n for addresses", n=self.named, name=name))
        if self.redacted:
            out.append(Msg("{n} row(s) of {name} have redacted addresses: counted in the "
                           "states, left out of every grouping by address", n=self.redacted,
                           name=name))
        if self.unknown_services:
            out.append(Msg("{n} port(s) in {name} named by a service tcpdoctor "
                           "does not know were counted as port 0; capture with -n for numbers",
                           n=self.unknown_services, name=name))
        return out

    def reject(self, line_no: int, expected: str, line: str) -> None:
        if line and (is_chatter(line) or not looks_like_row(line)):
            return  # a fence, a prompt or prose around the table: no row was lost
        if self.strict:
            raise ParseError(self.source, line_no, expected, line)
        self.bad_count += 1
        if len(self.bad) < 5:
            self.bad.append(line_no)
            self.bad_text.append(line.strip()[:80])

    def address(self, text: str) -> tuple[int, int, int]:
        """'1.2.3.4', '[::1]', '*', 'fe80::1%eth0' -> (family, hi, lo)."""
        hit = self._addr.get(text)
        if hit is None:
            if len(self._addr) >= 1 << 16:  # bounded: a dump of random (spoofed) addresses
                self._addr.clear()
            hit = self._addr[text] = self._parse_address(text)
        return hit

    def _parse_address(self, text: str) -> tuple[int, int, int]:
        if is_redacted(text):
            return AF_INET, REDACTED_HI, 0
        quad = text.split(".")
        octets = [o for q in quad if (o := whole(q, 255)) is not None]
        if len(quad) == 4 and len(octets) == 4:  # a dotted quad: the common case
            a, b, c, d = octets
            return AF_INET, 0, V4_MAPPED_INT | (a << 24) | (b << 16) | (c << 8) | d
        raw = text.strip("[]").split("%", 1)[0]
        if raw in ("*", ""):
            raw = "0.0.0.0"
        raw = LOCAL_NAMES.get(raw, raw)
        if any(ch.isalpha() for ch in raw) and ":" not in raw:
            # A host name (taken without -n): apart from every address, opaquely.
            self.named += 1
            return AF_INET6, NAMED_NET, zlib.crc32(raw.encode())
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            # netstat without -W truncates long IPv6 addresses: keep them apart, opaquely.
            self.opaque += 1
            return AF_INET6, OPAQUE_NET, zlib.crc32(raw.encode())
        if isinstance(ip, ipaddress.IPv4Address):
            return AF_INET, 0, V4_MAPPED_INT | int(ip)
        value = int(ip)
        return AF_INET6, value >> 64, value & ((1 << 64) - 1)

    def port(self, text: str) -> int | None:
        """'8080', '*', or a service name (without -n: 'ssh', 'https')."""
        if text == "*":
            return 0
        if text[:1].isdigit():
            return whole(text, PORT)
        if not text or not all(ch.isalnum() or ch in "-_." for ch in text):
            return None
        if text.lower() not in SERVICE_PORTS:
            self.unknown_services += 1
        return SERVICE_PORTS.get(text.lower(), 0)

    def add(self, state: int, local: str, peer: str, rq: int = 0, wq: int = 0) -> bool:
        laddr, _, lport = local.rpartition(":")
        raddr, _, rport = peer.rpartition(":")
        if not laddr or not raddr:  # a redacted cell without a port ("..."), or no endpoint
            (laddr, _, lport), (raddr, _, rport) = _endpoint(local), _endpoint(peer)
        if not laddr or not raddr:
            return False
        sport, dport = self.port(lport), self.port(rport)
        if sport is None or dport is None:
            return False
        fam, lhi, llo = self.address(laddr)
        _, rhi, rlo = self.address(raddr)
        self.redacted += REDACTED_HI in (lhi, rhi)
        if self.sink is not None and len(self.cols["state"]) >= self.block:
            self.flush()
        c = self.cols
        c["family"].append(fam)
        c["state"].append(state)
        c["sport"].append(sport)
        c["dport"].append(dport)
        c["laddr_hi"].append(lhi)
        c["laddr_lo"].append(llo)
        c["raddr_hi"].append(rhi)
        c["raddr_lo"].append(rlo)
        c["rqueue"].append(rq)
        c["wqueue"].append(wq)
        self.rows += 1
        return True

    def drop_last(self) -> None:
        """Take back the last socket added (a later field of its line proved bad)."""
        last = len(self.cols["state"]) - 1
        self.redacted -= REDACTED_HI in (self.cols["laddr_hi"][last],
                                         self.cols["raddr_hi"][last])
        for arr in self.cols.values():
            arr.pop()
        for rows, values in self.extra.values():
            while len(rows) and rows[-1] == last:
                rows.pop()
                values.pop()
        self.rows -= 1

    def set_all(self, values: dict[str, int]) -> None:
        for name, value in values.items():
            self.set_last(name, value)

    def set_last(self, name: str, value: int) -> None:
        rows, values = self.extra[name]
        rows.append(len(self.cols["state"]) - 1)
        values.append(value)

    def columns(self, complete: bool = False) -> dict[str, np.ndarray]:
        """The sockets not yet handed to the sink, as numpy columns. complete=True keeps the
        pid and tcp_info columns even when no line so far had them (blocks must agree).
        Columns no line set (and IPv4-only address halves) are constant views: no memory."""
        n = len(self.cols["state"])
        out = {name: np.frombuffer(arr, dtype=arr.typecode).astype(SPEC[name])
               if n else np.zeros(0, dtype=SPEC[name]) for name, arr in self.cols.items()}
        out = self._complete(out, n)
        for name, (rows, values) in self.extra.items():
            if len(rows):
                if is_constant(out[name]):
                    out[name] = np.array(out[name])
                out[name][np.frombuffer(rows, dtype=rows.typecode)] = np.frombuffer(
                    values, dtype=values.typecode)
        if not self.has_pid and not complete:
            del out["pid"]
        if not self.has_info and not complete:
            for name in INFO_COLUMNS:
                del out[name]
        return out

    @staticmethod
    def _complete(dense: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Every SPEC column: the given ones, the rest at their defaults (constant views)."""
        out = dict(dense)
        for half in ("laddr_hi", "raddr_hi"):
            if half not in out or (n and not out[half].any()):
                out[half] = constant(0, n, SPEC[half])
        # TIME_WAIT lines carry no timer word: their timer is the TIME_WAIT timer.
        out["timer"] = np.where(out["state"] == 6, TIMER_TIME_WAIT, 0).astype(SPEC["timer"])
        for name in SPEC:
            if name not in out:
                out[name] = constant(-1 if name == "pid" else 0, n, SPEC[name])
        return out

    def add_block(self, dense: dict[str, np.ndarray]) -> None:
        """Sockets decoded elsewhere (a vectorized parser), handed straight to the sink."""
        assert self.sink is not None
        n = int(dense["state"].shape[0])
        if n:
            self.flush()
            self.rows += n
            self.sink(self._complete(dense, n))

    def flush(self) -> None:
        """Hand the pending sockets to the sink (at the end of the input, too)."""
        if self.sink is not None and len(self.cols["state"]):
            self.sink(self.columns(complete=True))
            self._reset()


def _endpoint(cell: str) -> tuple[str, str, str]:
    """ADDRESS:PORT split; a redacted cell without a port ("...") has an unknown port."""
    return (cell, ":", "*") if ":" not in cell and is_redacted(cell) else cell.rpartition(":")


def _state(word: str) -> int | None:
    return STATE_ALIASES.get(word.upper())


def _queues(words: list[str]) -> tuple[int, int] | None:
    rq, wq = (whole(w, U32) for w in words)
    return None if rq is None or wq is None else (rq, wq)


def _extras(b: Builder, no: int, line: str) -> bool:
    """Add the extra fields to the last socket, or take it back when one is malformed."""
    got = ss_extras(line, b.names)
    if got is None:
        b.drop_last()
        b.reject(no, "well-formed ss fields (users, timer, ino, uid, tcp_info)", line)
        return False
    if "pid" in got:
        b.has_pid = True
    if "has_info" in got or "has_mem" in got:
        b.has_info = True
    b.set_all(got)
    return True


def parse_ss(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    """ss -tan with any of -p -o -i -m -e -H, with or without the Netid column."""
    last_ok = False
    for no, line in _unwrapped(lines):
        if not line.strip():
            continue
        if line[0] in " \t":  # -i/-m/-e continuation of the previous socket
            if last_ok:
                last_ok = _extras(b, no, line)
            continue
        f = line.split()
        if f[0] in ("State", "Netid"):
            continue
        if f[0] in SS_NETIDS:
            if f[0] != "tcp":
                last_ok = False
                continue
            f = f[1:]
        state = _state(f[0]) if f and f[0] in SS_STATES else None
        queues = _queues(f[1:3]) if len(f) >= 5 else None
        if state is None or queues is None:
            b.reject(no, "an ss line: STATE RECV-Q SEND-Q LOCAL:PORT PEER:PORT [...]", line)
            last_ok = False
            continue
        last_ok = b.add(state, f[3], f[4], *queues)
        if not last_ok:
            b.reject(no, "ADDRESS:PORT pairs", line)
            continue
        if len(f) > 5:
            last_ok = _extras(b, no, line)


def _unwrapped(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Rows ss broke in two on a narrow terminal ("tcp SYN-RECV" on one line, the queues
    and addresses on the next) joined again."""
    held: tuple[int, str] | None = None
    for no, line in lines:
        if held is not None:
            if line[:1].isdigit():
                yield held[0], f"{held[1]} {line}"
                held = None
                continue
            yield held
            held = None
        f = line.split()
        if 0 < len(f) <= 2 and f[-1] in SS_STATES and (len(f) == 1 or f[0] in SS_NETIDS):
            held = (no, line)
            continue
        yield no, line
    if held is not None:
        yield held


NETSTAT_PROTOS = ("tcp", "tcp6")


def parse_netstat(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    """Linux netstat -an/-ant/-antp/-anto, tcp and tcp6 rows (the rest is skipped)."""
    for no, line in rejoined(lines, NETSTAT_PROTOS, 6):
        f = line.split()
        if f and lost_first_cell(f):
            f.insert(0, "tcp")
        if not f or f[0] not in NETSTAT_PROTOS:
            if f and _foreign(f):
                b.reject(no, "a netstat line (this one is from another tool's output)", line)
            continue  # headers, udp, unix sockets
        if len(f) == 5 and is_redacted(f[3]) and _state(f[4]) is not None:
            f[3:4] = [f[3], f[3]]  # both addresses replaced by one "..." cell
        if len(f) > 6 and _state(f[5]) is None and _state(f"{f[5]} {f[6]}") is not None:
            f[5:7] = [f"{f[5]} {f[6]}"]  # a translated state of two words (cs: POSLEDNÍ ACK)
        state = _state(f[5]) if len(f) > 5 else None
        queues = _queues(f[1:3]) if state is not None else None
        extras = netstat_extras(f[6:], line, b.names) if queues is not None else None
        if state is None or queues is None or extras is None:
            b.reject(no, "a netstat line: tcp RECV-Q SEND-Q LOCAL FOREIGN STATE [PID/NAME]", line)
            continue
        if not b.add(state, f[3], f[4], *queues):
            b.reject(no, "ADDRESS:PORT pairs", line)
            continue
        if "pid" in extras or (f[6:] and f[6] == "-"):
            b.has_pid = True
        b.set_all(extras)


def _foreign(f: list[str]) -> bool:
    """A TCP row of another format inside a netstat paste (ss, Linux netstat, /proc)."""
    return (f[0] in SS_STATES or (f[0] in ("tcp", "tcp6") and len(f) > 5)
            or (f[0].endswith(":") and f[0][:-1].isdigit() and len(f) > 9))
