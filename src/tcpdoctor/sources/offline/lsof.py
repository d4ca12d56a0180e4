"""`lsof -i` output (Linux, macOS, iOS; `-n`/`-P` or names; `-p PID | grep TCP`).

    COMMAND  PID USER FD   TYPE      DEVICE SIZE/OFF NODE NAME
    dotnet  9337  app 45u  IPv4 0xd3c0a1b2      0t0  TCP 10.1.2.3:51234->10.9.8.7:9443 (CLOSE_WAIT)

lsof prints one row per file descriptor: a socket shared by several descriptors (after
dup or fork) appears once per descriptor. It is counted once, by its DEVICE (the kernel's
socket address on macOS, the inode on Linux) with its endpoints and state, under the first
process that shows it. A row without a state (UDP, or a TCP socket lsof saw no state for)
is not a TCP socket row of this report.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcpdoctor.i18n import Msg
from tcpdoctor.sources.offline.fields import PID, whole
from tcpdoctor.sources.offline.textdump import Builder, _state

MAX_ROW = 2000  # characters: an lsof row is far shorter; a longer line is not one
MAX_SEEN = 1 << 20  # sockets remembered for the one-row-per-socket rule


def is_header(line: str) -> bool:
    f = line.split(None, 2) if len(line) <= MAX_ROW else []
    return len(f) == 3 and f[:2] == ["COMMAND", "PID"] and line.rstrip().endswith("NAME")


def is_row(line: str) -> bool:
    return _fields(line) is not None


def _fields(line: str) -> tuple[str, str, str, str, str] | None:
    """(command, pid, device, name, state) of a TCP row: COMMAND PID [TID] USER FD TYPE
    DEVICE [SIZE/OFF] NODE NAME (STATE). The head and the tail are fixed; what lies between
    varies with the platform and the options. Split, never a backtracking pattern: a
    300 KB line must cost what its length costs."""
    if len(line) > MAX_ROW or " TCP " not in line:
        return None
    f = line.split()
    if len(f) < 7 or f[-3] != "TCP" or not (f[-1].startswith("(") and f[-1].endswith(")")):
        return None
    if not (f[1].isascii() and f[1].isdigit()):
        return None
    kind = next((i for i in range(2, len(f) - 4) if f[i] in ("IPv4", "IPv6")), None)
    if kind is None:
        return None
    return f[0], f[1], f[kind + 1], f[-2], f[-1][1:-1]


def parse_lsof(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    seen: set[tuple[str, str, str]] = set()
    shared = 0
    for no, line in lines:
        row = _fields(line)
        if row is None:
            continue  # the header, other files, UDP rows: not TCP sockets
        cmd, pid_text, dev, name, state_text = row
        state = _state(state_text)
        local, _, remote = name.partition("->")
        key = (dev, name, state_text)
        if key in seen:
            shared += 1
            continue
        if len(seen) < MAX_SEEN:
            seen.add(key)
        if state is None or not b.add(state, local, remote or _unconnected(local)):
            b.reject(no, "an lsof TCP row: COMMAND PID ... TCP LOCAL[->REMOTE] (STATE)", line)
            continue
        pid = whole(pid_text, PID)
        if pid is not None:
            b.has_pid = True
            b.set_last("pid", pid)
            b.names.setdefault(pid, cmd[:64])
    b.shared += shared


def _unconnected(local: str) -> str:
    """A listener names no peer: the peer of the other formats' listeners, in its family."""
    return "[::]:0" if local.startswith("[") else "0.0.0.0:0"


def note(shared: int, name: str) -> str:
    return Msg("{n} row(s) of {name} repeat a socket already counted (lsof shows one row per "
               "file descriptor)", n=shared, name=name)
