"""Tables of other tools, read by their header: any listing whose header names a local
column, a remote (foreign, peer) column and a state column, in any order (a router's or an
embedded system's `show net`, a vendor's connection table, a home-made pcblist).

Columns are not aligned by position: a cell may hold spaces ("srtt (ms)" over "2 ± 0").
A row is what holds one TCP state word and two endpoints (ADDRESS:PORT, BSD's
ADDRESS.PORT, `*:*`); the header's order says which endpoint is the local one. Rows of
another protocol (a udp cell) are left out; a row with a state and not two endpoints is
counted as unread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tcpdoctor.sources.offline.foreign import _bsd
from tcpdoctor.sources.offline.textdump import Builder, _state

LOCAL = ("local", "laddr", "source", "src", "本地", "本机")
REMOTE = ("foreign", "remote", "peer", "destination", "dst", "raddr", "外部", "远程", "对端")
STATE = ("state", "status", "状态")
OTHER_PROTOCOLS = {"udp", "udp4", "udp6", "udp46", "raw", "icmp", "unix", "sctp"}
HEADER_MAX = 300  # characters: a header line is short
_WORD = re.compile(r"[\w\u4e00-\u9fff]+")
_BSD = re.compile(r"(?:\d{1,3}\.){4}(?:\d{1,5}|\*)|\*\.(?:\d{1,5}|\*)")


def header_order(line: str) -> tuple[int, int] | None:
    """Where the local and the remote column are named in a header (character offsets),
    or None when the line does not name a local, a remote and a state column."""
    if len(line) > HEADER_MAX:
        return None
    low = line.lower()
    words = [(m.start(), m.group()) for m in _WORD.finditer(low)]

    def find(names: tuple[str, ...]) -> int | None:
        return next((at for at, w in words if any(w.startswith(n) for n in names)), None)

    local, remote, state = find(LOCAL), find(REMOTE), find(STATE)
    if local is None or remote is None or state is None:
        return None
    return local, remote


def parse_table(lines: Iterable[tuple[int, str]], b: Builder) -> None:
    local_first = True
    for no, line in lines:
        order = header_order(line)
        if order is not None:
            local_first = order[0] < order[1]
            continue
        words = line.split()
        if any(w.lower() in OTHER_PROTOCOLS for w in words[:3]):
            continue
        states = [s for w in words if (s := _state(w.strip("()[]"))) is not None]
        ends = [e for w in words if (e := _endpoint(w)) is not None]
        if not states and len(ends) < 2:
            continue  # prose, separators, a title
        if len(states) != 1 or len(ends) != 2:
            b.reject(no, "a table row: one TCP state and two ADDRESS:PORT endpoints", line)
            continue
        local, remote = ends if local_first else ends[::-1]
        if not b.add(states[0], local, remote):
            b.reject(no, "ADDRESS:PORT pairs", line)


def _endpoint(word: str) -> str | None:
    """An endpoint cell as ADDRESS:PORT, or None."""
    word = word.rstrip(",;")
    if _BSD.fullmatch(word):
        return _bsd(word)
    addr, colon, port = word.rpartition(":")
    if colon and addr and (port == "*" or (port.isascii() and port.isdigit()
                                            and len(port) <= 5)):
        return word
    return None
