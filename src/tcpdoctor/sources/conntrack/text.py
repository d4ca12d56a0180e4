"""`conntrack -L` and /proc/net/nf_conntrack lines read into the table's columns.

    ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.2 dst=10.0.0.9 sport=40000
        dport=80 src=10.0.0.9 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2

(/proc adds the family columns; `conntrack -L` starts at the protocol.) Fields are found
by their keys in the whole text at once: the first `src=` of a line is the original
tuple's, the second the reply's; the state is the word before the first `src=`, the
timeout the number before the state. IPv4 addresses are parsed as columns; IPv6 ones,
rare in these tables, one by one.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import V4_MAPPED_INT
from tcpdoctor.model.conntrack import (
    CT_COLUMNS,
    CT_STATE_NAMES,
    IPS_ASSURED,
    IPS_SEEN_REPLY,
    IPS_SRC_NAT,
    ConntrackTable,
)

MAX_BYTES = 1 << 31  # 2 GB: about eight million entries
_SPACE, _NL = 32, 10


def read_file(path: str, source: str | None = None) -> ConntrackTable:
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ParseError(source or path, None, Msg("a conntrack listing under 2 GB"))
    return parse(data, source or path)


def _find(arr: np.ndarray, key: bytes) -> np.ndarray:
    """Offsets just after every ` key` in the text (a space, or a line start, before it)."""
    n = arr.shape[0] - len(key)
    if n <= 0:
        return np.zeros(0, np.int64)
    hit = arr[:n] == key[0]
    for i, ch in enumerate(key[1:], 1):
        hit &= arr[i:n + i] == ch
    at = np.flatnonzero(hit)
    before = np.where(at > 0, arr[np.maximum(at - 1, 0)], _NL)
    return at[(before == _SPACE) | (before == _NL) | (before == 9)] + len(key)


def _token_ends(arr: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    idx = np.minimum(pos[:, None] + np.arange(width)[None, :], arr.shape[0] - 1)
    chars = arr[idx]
    stop = (chars == _SPACE) | (chars == _NL) | (chars == 9) | (chars == 13)
    stop |= (pos[:, None] + np.arange(width)[None, :]) >= arr.shape[0]
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), width)
    return pos + first


def _numbers(arr: np.ndarray, pos: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Decimal numbers at arr[pos:end] (at most 10 digits); -1 where not a number."""
    width = 10
    idx = np.minimum(pos[:, None] + np.arange(width)[None, :], arr.shape[0] - 1)
    digits = arr[idx].astype(np.int64) - 48
    inside = np.arange(width)[None, :] < (end - pos)[:, None]
    ok = ((digits >= 0) & (digits <= 9)) | ~inside
    exp = (end - pos)[:, None] - 1 - np.arange(width)[None, :]
    value = (np.where(inside, digits, 0) * 10 ** np.clip(exp, 0, 9)).sum(axis=1)
    good = ok.all(axis=1) & (end > pos) & (end - pos <= width)
    return np.where(good, value, -1)


def _addresses(arr: np.ndarray, pos: np.ndarray, end: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, valid) of the addresses at arr[pos:end]: IPv4 as columns, others singly."""
    n = pos.shape[0]
    hi, lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    valid = np.zeros(n, bool)
    width = 15
    idx = np.minimum(pos[:, None] + np.arange(width)[None, :], arr.shape[0] - 1)
    chars = np.where(np.arange(width)[None, :] < (end - pos)[:, None], arr[idx], _SPACE)
    dots = chars == ord(".")
    v4 = (dots.sum(axis=1) == 3) & (end - pos <= width) & ~(chars == ord(":")).any(axis=1)
    if v4.any():
        value = np.zeros(int(v4.sum()), np.int64)
        ok = np.ones(value.shape[0], bool)
        rows = chars[v4]
        seg = np.cumsum(rows == ord("."), axis=1)
        for k in range(4):
            part = np.where((seg == k) & (rows != ord(".")) & (rows != _SPACE), rows, 0)
            nd = (part != 0).sum(axis=1)
            digits = np.where(part != 0, part.astype(np.int64) - 48, 0)
            ok &= ((digits >= 0) & (digits <= 9)).all(axis=1) & (nd >= 1) & (nd <= 3)
            # the digits of this part, in order: fold left to right
            octet = np.zeros(value.shape[0], np.int64)
            for c in range(width):
                take = part[:, c] != 0
                octet = np.where(take, octet * 10 + digits[:, c], octet)
            ok &= octet <= 255
            value = value * 256 + octet
        where = np.flatnonzero(v4)
        lo[where] = (V4_MAPPED_INT | value.astype(np.uint64)).astype(np.uint64)
        valid[where] = ok
    for i in np.flatnonzero(~v4):  # IPv6: one at a time
        text = bytes(arr[int(pos[i]):int(end[i])]).decode("ascii", "replace")
        try:
            value6 = int(ipaddress.IPv6Address(text))
        except ValueError:
            continue
        hi[i], lo[i], valid[i] = value6 >> 64, value6 & ((1 << 64) - 1), True
    return hi, lo, valid


def _line_of(starts: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The line (index into starts) of each offset."""
    return np.searchsorted(starts, pos, side="right") - 1


def parse(data: bytes, source: str) -> ConntrackTable:
    arr = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(arr == _NL)
    starts = np.concatenate(([0], nl + 1))
    # Per key, its (positions, lines) in the original tuple (a line's first) and the reply
    # tuple (its second).
    found: dict[str, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {}
    for key in ("src=", "dst=", "sport=", "dport="):
        pos = _find(arr, key.encode())
        line = _line_of(starts, pos)
        first = np.ones(line.shape[0], bool)
        first[1:] = line[1:] != line[:-1]
        second = np.zeros(line.shape[0], bool)
        second[1:] = (line[1:] == line[:-1]) & first[:-1]
        found[key] = ((pos[first], line[first]), (pos[second], line[second]))
    orig_src, lines = found["src="][0]
    total = lines.shape[0]  # entries: lines with a src= (TCP or not)
    # The state: the word right before the first src=.
    state = np.full(lines.shape[0], -1, np.int64)
    for code, name in enumerate(CT_STATE_NAMES):
        word = (name + " ").encode()
        at = orig_src - len("src=") - len(word)
        ok = at >= 0
        for i, ch in enumerate(word):
            ok &= arr[np.clip(at + i, 0, arr.shape[0] - 1)] == ch
        ok &= np.where(at > 0, arr[np.clip(at - 1, 0, arr.shape[0] - 1)], _SPACE) == _SPACE
        state[ok] = code
    tcp = state >= 0
    rows = lines[tcp]
    cols = {name: np.zeros(rows.shape[0], dtype=dt) for name, dt in CT_COLUMNS.items()}
    cols["ct_state"] = state[tcp].astype(np.uint8)
    good = np.ones(rows.shape[0], bool)
    for d, which in (("orig", 0), ("reply", 1)):
        for key, name in (("src=", "src"), ("dst=", "dst")):
            pos = _per_line(*found[key][which], rows)
            ok = pos >= 0
            end = _token_ends(arr, np.maximum(pos, 0), 40)
            h, lw, valid = _addresses(arr, np.maximum(pos, 0), end)
            cols[f"{d}_{name}_hi"], cols[f"{d}_{name}_lo"] = h, lw
            good &= ok & valid
        for key, name in (("sport=", "sport"), ("dport=", "dport")):
            pos = _per_line(*found[key][which], rows)
            value = _numbers(arr, np.maximum(pos, 0), _token_ends(arr, np.maximum(pos, 0), 12))
            good &= (pos >= 0) & (value >= 0) & (value <= 65535)
            cols[f"{d}_{name}"] = np.clip(value, 0, 65535).astype(np.uint16)
    _extras(arr, starts, rows, cols, orig_src[tcp])
    if not good.all():
        bad = int(rows[np.flatnonzero(~good)[0]])
        raise ParseError(source, bad + 1, Msg("a conntrack entry (src= dst= sport= dport=, "
                                              "twice)"),
                         bytes(arr[starts[bad]:starts[bad] + 60]))
    cols["family"] = np.where((cols["orig_src_hi"] == 0)
                              & (cols["orig_src_lo"] >> np.uint64(32) == 0xFFFF), 2,
                              10).astype(np.uint8)
    return ConntrackTable(cols, source, other_entries=int(total - rows.shape[0]))


def _per_line(pos: np.ndarray, line: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The position found on each of rows' lines, -1 where that line has none."""
    at = np.searchsorted(line, rows)
    hit = (at < line.shape[0]) & (line[np.minimum(at, max(line.shape[0] - 1, 0))] == rows) \
        if line.shape[0] else np.zeros(rows.shape[0], bool)
    return np.where(hit, pos[np.minimum(at, max(pos.shape[0] - 1, 0))] if pos.shape[0]
                    else -1, -1)


def _extras(arr: np.ndarray, starts: np.ndarray, rows: np.ndarray,
            cols: dict[str, np.ndarray], orig_src: np.ndarray) -> None:
    """Timeout (the number before the state), status flags, mark and zone."""
    # The timeout ends two words before src=: find the space before the state word.
    state_len = np.array([len(n) for n in CT_STATE_NAMES])[cols["ct_state"]]
    end = orig_src - len("src=") - 1 - state_len - 1  # the space before the state word
    width = 10
    idx = np.clip(end[:, None] - width + np.arange(width)[None, :], 0, arr.shape[0] - 1)
    chars = arr[idx]
    digit = (chars >= 48) & (chars <= 57) & (idx < end[:, None])
    run = np.cumprod(digit[:, ::-1], axis=1).sum(axis=1)
    cols["timeout"] = np.clip(_numbers(arr, end - run, end), 0, None).astype(np.uint32)
    for key, name in ((b"mark=", "mark"), (b"zone=", "zone")):
        pos = _find(arr, key)
        at = _per_line(pos, _line_of(starts, pos), rows)
        value = _numbers(arr, np.maximum(at, 0), _token_ends(arr, np.maximum(at, 0), 12))
        cols[name] = np.clip(value, 0, None).astype(cols[name].dtype)
    seen = np.ones(rows.shape[0], bool)
    for flag, bit in ((b"[UNREPLIED]", 0), (b"[ASSURED]", IPS_ASSURED)):
        pos = _find(arr, flag)
        at = _per_line(pos, _line_of(starts, pos), rows) >= 0
        if bit:
            cols["status"] |= np.where(at, bit, 0).astype(np.uint32)
        else:
            seen &= ~at
    cols["status"] |= np.where(seen, IPS_SEEN_REPLY, 0).astype(np.uint32)
    nat = ((cols["reply_dst_hi"] != cols["orig_src_hi"])
           | (cols["reply_dst_lo"] != cols["orig_src_lo"])
           | (cols["reply_dport"] != cols["orig_sport"]))
    cols["status"] |= np.where(nat, IPS_SRC_NAT, 0).astype(np.uint32)
