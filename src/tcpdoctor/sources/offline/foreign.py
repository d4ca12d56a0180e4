"""Saved `netstat` output of other systems: Windows (`netstat -ano`, any display language:
the headers are translated, the rows keep their layout) and macOS / FreeBSD (`netstat -an`,
with or without the socket-address columns of -A)."""

from __future__ import annotations

from collections.abc import Iterable

from tcpdoctor.sources.offline.fields import PID, rejoined, whole
from tcpdoctor.sources.offline.textdump import Builder, _foreign, _queues, _state


def parse_windows(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    """Windows netstat -ano / -an / -anob: TCP rows with [::] IPv6, an optional PID column
    and, with -b, the executable's name in brackets on a line after its row."""
    last_pid = -1
    for no, line in rejoined(lines, ("TCP",), 4):
        f = line.split()
        text = line.strip()
        if last_pid >= 0 and text.startswith("[") and text.endswith("]") and len(text) > 2:
            b.names.setdefault(last_pid, text[1:-1][:64])
            continue
        if len(f) >= 3 and ":" in f[0] and ":" in f[1] and _state(f[2]) is not None:
            f.insert(0, "TCP")  # the protocol cell was lost in the copy
        if not f or f[0] != "TCP":
            if f and _foreign(f):
                b.reject(no, "a Windows netstat line (this one is from another tool's "
                         "output)", line)
            continue
        last_pid = -1
        state = _state(f[3]) if len(f) > 3 else None
        if state is None or not b.add(state, f[1], f[2]):
            b.reject(no, "a Windows netstat line: TCP LOCAL FOREIGN STATE [PID]", line)
            continue
        if len(f) == 5 and f[4].isalpha():
            continue  # an owner word, not a PID (WSL prints InHost for the host's sockets)
        if len(f) > 4:
            pid = whole(f[4], PID)
            if pid is None:
                b.drop_last()
                b.reject(no, "a PID after the state", line)
                continue
            b.has_pid = True
            b.set_last("pid", pid)
            last_pid = pid


BSD_PROTOS = ("tcp4", "tcp6", "tcp46")
BSD_ROW = ("tcp", *BSD_PROTOS)


def bsd_proto_at(f: list[str]) -> int | None:
    """Where the protocol word of a BSD row is: first, or after -A's socket address
    (FreeBSD: Tcpcb; macOS: Socket and Flowhash)."""
    for i, word in enumerate(f[:3]):
        if word in BSD_ROW:
            return i if all(_hex(w) for w in f[:i]) else None
    return None


def _hex(word: str) -> bool:
    return bool(word) and all(ch in "0123456789abcdefABCDEF" for ch in word)


def parse_bsd(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    """macOS / FreeBSD netstat -an[A]: tcp4/tcp6/tcp46 rows, addresses as a.b.c.d.PORT."""
    for no, line in lines:
        f = line.split()
        at = bsd_proto_at(f) if f else None
        if at is None:
            continue  # headers, udp, unix sockets, kernel control sockets
        f = f[at:]
        state = _state(f[5]) if len(f) > 5 else None
        queues = _queues(f[1:3]) if state is not None else None
        if state is None or queues is None or not b.add(state, _bsd(f[3]), _bsd(f[4]),
                                                        *queues):
            b.reject(no, "a BSD netstat line: tcp4 RECV-Q SEND-Q ADDR.PORT ADDR.PORT STATE",
                     line)


def _bsd(text: str) -> str:
    """'192.168.1.5.22' -> '192.168.1.5:22'; '*.*' -> '*:*'; 'fe80::1%lo0.22' -> ...:22."""
    addr, _, port = text.rpartition(".")
    return f"{addr or '*'}:{port}"
