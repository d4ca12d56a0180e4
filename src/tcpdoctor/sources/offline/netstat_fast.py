"""Vectorized parsing of the common `netstat -an` line, a block of lines at a time.

`tcp  RECV-Q SEND-Q A.B.C.D:PORT A.B.C.D:PORT STATE` (six tokens, IPv4, a kernel state
name) is by far the most frequent line of a pasted netstat; it is decoded here with array
operations over the block's bytes (token boundaries from one comparison, fields gathered
at their offsets), no Python object per line. Every other line (headers, tcp6, -p/-o
columns, UDP and UNIX sections, damaged lines) goes back, with its line number, to the
per-line parser in textdump, which handles and reports it exactly as before.
"""

from __future__ import annotations

import numpy as np

from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.tcp import AF_INET, STATE_BY_NAME

PAD = 32  # zero bytes after the block so that fixed-width gathers never run off its end
STATE_WIDTH = 12
_STATES = [(np.frombuffer(name.encode().ljust(STATE_WIDTH, b"\0"), dtype=np.uint8), number)
           for name, number in STATE_BY_NAME.items()]


def parse(block: bytes, first_line: int,
          ) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """(columns of the lines decoded here, [(line number, text)] of the others)."""
    arr = np.frombuffer(block + b"\0" * PAD, dtype=np.uint8)
    n = len(block)
    nl = np.flatnonzero(arr[:n] == 10)
    lines = nl.shape[0] + (0 if n and block.endswith(b"\n") else 1)
    tstart, tend, line = _tokens(arr, n, nl)
    counts = np.bincount(line, minlength=lines)
    first_token = np.cumsum(counts) - counts
    # Other control characters and non-ASCII bytes (Unicode spaces such as U+00A0 split
    # differently) send their line to the per-line parser, which splits like str.split().
    raw = arr[:n]
    odd = np.flatnonzero(((raw < 32) & (raw != 9) & (raw != 10) & (raw != 13)) | (raw > 126))
    counts[np.searchsorted(nl, odd)] = 0
    six = np.flatnonzero(counts == 6)
    tok = first_token[six][:, None] + np.arange(6)[None, :]
    pos, length = tstart[tok], tend[tok] - tstart[tok]
    ok, cols = _decode(arr, pos, length)
    decoded = np.zeros(lines, dtype=bool)
    decoded[six[ok]] = True
    line_starts = np.concatenate(([0], nl + 1))[:lines]
    line_ends = np.concatenate((nl, [n]))[:lines]
    rest = [(first_line + int(i),
             block[line_starts[i]:line_ends[i]].decode("utf-8", "replace").rstrip("\r"))
            for i in np.flatnonzero(~decoded & (line_ends > line_starts))]
    return cols, rest


def _tokens(arr: np.ndarray, n: int, nl: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end (exclusive) and line index of every whitespace-separated token."""
    word = arr[:n] > 32
    edge = np.diff(np.concatenate(([False], word, [False])).view(np.int8))
    tstart = np.flatnonzero(edge == 1)
    tend = np.flatnonzero(edge == -1)
    return tstart, tend, np.searchsorted(nl, tstart)


def _gather(arr: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    return arr[pos[:, None] + np.arange(width)[None, :]]


def _decode(arr: np.ndarray, pos: np.ndarray, length: np.ndarray,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    proto = _gather(arr, pos[:, 0], 3)
    ok = (length[:, 0] == 3) & (proto == np.frombuffer(b"tcp", dtype=np.uint8)).all(axis=1)
    rq, ok_rq = _number(_gather(arr, pos[:, 1], 9), length[:, 1], 9)
    sq, ok_sq = _number(_gather(arr, pos[:, 2], 9), length[:, 2], 9)
    lip, lport, ok_l = _ipv4_port(arr, pos[:, 3], length[:, 3])
    rip, rport, ok_r = _ipv4_port(arr, pos[:, 4], length[:, 4])
    state = _state(_gather(arr, pos[:, 5], STATE_WIDTH), length[:, 5])
    ok &= ok_rq & ok_sq & ok_l & ok_r & (state > 0)
    mapped = V4_MAPPED
    cols = {
        "family": np.full(int(ok.sum()), AF_INET, dtype=np.uint8),
        "state": state[ok],
        "sport": lport[ok].astype(np.uint16),
        "dport": rport[ok].astype(np.uint16),
        "laddr_lo": lip[ok] | mapped,
        "raddr_lo": rip[ok] | mapped,
        "rqueue": rq[ok].astype(np.uint32),
        "wqueue": sq[ok].astype(np.uint32),
    }
    return ok, cols


_IS_DIGIT = np.zeros(256, dtype=bool)
_IS_DIGIT[48:58] = True
# _POWERS[w][n]: place values of the first w characters of an n-digit number (0 beyond it).
_POWERS = {w: np.array([[10 ** (n - 1 - j) if j < n else 0 for j in range(w)]
                        for n in range(w + 1)], dtype=np.int64) for w in (3, 5, 9)}


def _number(chars: np.ndarray, length: np.ndarray, width: int,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Decimal fields of the given lengths (1..width digits) at the start of each row."""
    fits = (length >= 1) & (length <= width)
    places = _POWERS[width][np.where(fits, length, 0)]
    ok = fits & (_IS_DIGIT[chars] | (places == 0)).all(axis=1)
    digits = chars.astype(np.int64) - 48
    return (digits * places).sum(axis=1), ok


def _ipv4_port(arr: np.ndarray, pos: np.ndarray, length: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """'A.B.C.D:PORT' or 'A.B.C.D:*' -> (address as uint64, port, parsed correctly)."""
    width = 21  # "255.255.255.255:65535"
    chars = _gather(arr, pos, width)
    inside = np.arange(width)[None, :] < length[:, None]
    sep = ((chars == 46) | (chars == 58)) & inside
    ok = (length <= width) & (sep.sum(axis=1) == 4)
    rows = np.flatnonzero(ok)
    where = np.nonzero(sep[rows])[1].reshape(-1, 4)  # the four separators, left to right
    seps = chars[rows[:, None], where]
    ok[rows] &= (seps == np.array([46, 46, 46, 58], dtype=np.uint8)).all(axis=1)
    starts = np.concatenate((np.zeros((rows.shape[0], 1), np.int64), where + 1), axis=1)
    ends = np.concatenate((where, length[rows][:, None]), axis=1)
    ip = np.zeros(pos.shape[0], dtype=np.uint64)
    port = np.zeros(pos.shape[0], dtype=np.int64)
    for field in range(4):
        value, good = _number(_gather(arr, pos[rows] + starts[:, field], 3),
                              ends[:, field] - starts[:, field], 3)
        ok[rows] &= good & (value <= 255)
        ip[rows] |= value.astype(np.uint64) << np.uint64(24 - 8 * field)
    plen = ends[:, 4] - starts[:, 4]
    pchars = _gather(arr, pos[rows] + starts[:, 4], 5)
    star = (plen == 1) & (pchars[:, 0] == 42)  # 'A.B.C.D:*': a listener's wildcard peer
    value, good = _number(pchars, plen, 5)
    ok[rows] &= star | (good & (value <= 65535))
    port[rows] = np.where(star, 0, value)
    return ip, port, ok


def _state(chars: np.ndarray, length: np.ndarray) -> np.ndarray:
    masked = np.where(np.arange(STATE_WIDTH)[None, :] < length[:, None], chars, 0)
    out = np.zeros(chars.shape[0], dtype=np.uint8)
    for pattern, number in _STATES:
        out[(masked == pattern[None, :]).all(axis=1) & (length <= STATE_WIDTH)] = number
    return out
