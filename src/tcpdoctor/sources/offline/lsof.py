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

import re
from collections.abc import Iterable

from tcpdoctor.i18n import Msg
from tcpdoctor.sources.offline.fields import PID, whole
from tcpdoctor.sources.offline.textdump import Builder, _state

# COMMAND PID [TID] USER FD TYPE DEVICE [SIZE/OFF] NODE NAME (STATE): the head and the tail
# are fixed; what lies between varies with the platform and the options.
ROW = re.compile(r"^(?P<cmd>\S+)\s+(?P<pid>[0-9]+)\s+.*?\b(?P<type>IPv[46])\s+(?P<dev>\S+)"
                 r"\s+(?:\S+\s+)?TCP\s+(?P<name>\S+)\s+\((?P<state>[A-Z_0-9]+)\)\s*$")
HEADER = re.compile(r"^COMMAND\s+PID\s+.*\bNAME\s*$")
MAX_SEEN = 1 << 20  # sockets remembered for the one-row-per-socket rule


def is_header(line: str) -> bool:
    return bool(HEADER.match(line))


def is_row(line: str) -> bool:
    return bool(ROW.match(line))


def parse_lsof(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    seen: set[tuple[str, str, str]] = set()
    shared = 0
    for no, line in lines:
        m = ROW.match(line)
        if m is None:
            continue  # the header, other files, UDP rows: not TCP sockets
        state = _state(m["state"])
        local, _, remote = m["name"].partition("->")
        key = (m["dev"], m["name"], m["state"])
        if key in seen:
            shared += 1
            continue
        if len(seen) < MAX_SEEN:
            seen.add(key)
        if state is None or not b.add(state, local, remote or _unconnected(local)):
            b.reject(no, "an lsof TCP row: COMMAND PID ... TCP LOCAL[->REMOTE] (STATE)", line)
            continue
        pid = whole(m["pid"], PID)
        if pid is not None:
            b.has_pid = True
            b.set_last("pid", pid)
            b.names.setdefault(pid, m["cmd"][:64])
    b.shared += shared


def _unconnected(local: str) -> str:
    """A listener names no peer: the peer of the other formats' listeners, in its family."""
    return "[::]:0" if local.startswith("[") else "0.0.0.0:0"


def note(shared: int, name: str) -> str:
    return Msg("{n} row(s) of {name} repeat a socket already counted (lsof shows one row per "
               "file descriptor)", n=shared, name=name)
