"""Counts of sockets per state, as people paste them: the seed's own one-liner
(`netstat -n | awk '/^tcp/ {++S[$NF]} END {for (a in S) print a, S[a]}'`: "STATE N"),
`... | sort | uniq -c` ("N STATE") and `ss -s`'s TCP line. Often all a user has.

Read as counts, never as rows: one row per state whose weight is its count (the reduced
snapshot's form), with no address, port or owner; the snapshot says it holds counts only,
so that the rules that need rows are listed as not checked instead of run on nothing.
"""

from __future__ import annotations

import re

import numpy as np

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import BASE_COLUMNS, WEIGHT
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_ALIASES, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_TIME_WAIT

MAX_COUNT = 10**9  # sockets in one state: more is not a count
MAX_BYTES = 1 << 20  # a count per state is a few lines: what follows is not read
# A remark people add after a count ("CLOSE_WAIT 23 # far too many", "<- this one").
_REMARK = r"(?:\s+(?:#|//|<-|--)[^\n]*)?\s*$"
_AWK = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s*[:=]\s*|\s+)([0-9]{1,10})" + _REMARK)
_UNIQ = re.compile(r"^\s*([0-9]{1,10})\s+([A-Za-z][A-Za-z0-9_-]*)" + _REMARK)
# TCP:   1234 (estab 100, closed 20, orphaned 0, timewait 50/0)   (synrecv, older versions)
# anywhere in its line: a web page that squeezed `ss -s` onto one line still states it.
_SS_S = re.compile(r"(?:^|\s)TCP:\s+([0-9]{1,10})\s+\(([^()]*)\)")
_SS_S_STATES = {"estab": TCP_ESTABLISHED, "timewait": TCP_TIME_WAIT,
                "synrecv": TCP_SYN_RECV}
SS_S_LINE_MAX = 1000  # characters: a squeezed `ss -s` is one long line


def read(text: str, name: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """The counts of a pasted text as weighted columns, and notes."""
    counts: dict[int, int] = {}
    notes: list[str] = []
    for line in text.splitlines():
        found = line_counts(line)
        if found is None:
            continue
        for state, n in found:
            if n > MAX_COUNT:
                raise TcpDoctorError(Msg("{name}: {n} sockets in one state is not a count",
                                         name=name, n=n))
            counts[state] = counts.get(state, 0) + n
        if _SS_S.search(line[:SS_S_LINE_MAX]):
            notes.append(Msg("`ss -s` gives established, SYN_RECV and TIME_WAIT counts only; the "
                             "other states come from `ss -tan` itself"))
    if not counts:
        raise TcpDoctorError(Msg("{name}: no count of sockets per state found", name=name))
    states = sorted(counts)
    cols = {key: np.zeros(len(states), np.dtype(dt)) for key, dt in BASE_COLUMNS.items()}
    cols["state"] = np.array(states, np.uint8)
    cols[WEIGHT] = np.array([counts[s] for s in states], np.uint32)
    return cols, notes


def line_counts(line: str) -> list[tuple[int, int]] | None:
    """(state, count) pairs one line states, or None."""
    m = _SS_S.search(line[:SS_S_LINE_MAX])
    if m:
        pairs = [p.strip().split() for p in m.group(2).split(",")]
        # "timewait 14/0": TIME_WAIT sockets, then those whose port is bound elsewhere.
        return [(_SS_S_STATES[p[0]], n) for p in pairs
                if len(p) == 2 and p[0] in _SS_S_STATES
                and (n := _count(p[1].split("/")[0])) is not None]
    if len(line) > 200:  # a count line is short; a long one is not read by any pattern
        return None
    return _single(line) or _squeezed(line)


def _count(text: str) -> int | None:
    # Ten digits at most (a longer number is no count, and int() of thousands of digits
    # raises): past that it is MAX_COUNT + 1, refused by the caller.
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 10 else MAX_COUNT + 1


def _squeezed(line: str) -> list[tuple[int, int]] | None:
    """Count lines a web page joined into one ("1 CLOSE_WAIT 1 Foreign 13 ESTABLISHED", or
    "CLOSE_WAIT 1 ESTABLISHED 23"): pairs throughout, two states at least; words that are
    no state (the header words `uniq -c` counted too) are left out."""
    words = line.split()
    if len(words) < 4 or len(words) % 2:
        return None
    for count_at in (0, 1):
        numbers = words[count_at::2]
        names = words[1 - count_at::2]
        if all(_count(n) is not None for n in numbers):
            pairs = [(STATE_ALIASES[w.upper()], c)
                     for n, w in zip(numbers, names, strict=True)
                     if w.upper() in STATE_ALIASES and (c := _count(n)) is not None]
            return pairs if len(pairs) >= 2 else None
    return None


def _single(line: str) -> list[tuple[int, int]] | None:
    for pattern, state_at in ((_AWK, 1), (_UNIQ, 2)):
        m = pattern.match(line)
        if m:
            state = STATE_ALIASES.get(m.group(state_at).upper())
            if state is not None:
                return [(state, int(m.group(3 - state_at)))]
    return None


def snapshot(data: bytes, name: str, taken_at: str) -> Snapshot:
    """Counts per state as a snapshot of weighted rows without addresses (counts_only)."""
    cols, notes = read(data.decode("utf-8", "replace"), name)
    notes.append(Msg("this input holds counts per state only: the rules that need ports, "
                     "peers or owners were not run; `ss -tanp` (or `netstat -antp`) itself "
                     "lets them run"))
    return Snapshot(cols, f"state counts ({name})", taken_at=taken_at, notes=notes,
                    counts_only=True)
