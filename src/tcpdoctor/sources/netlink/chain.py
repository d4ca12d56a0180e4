"""Where the messages of one netlink dump start in a buffer, with no loop per message.

Every message of one dump repeats the request's (sequence, port id) in its header, so one
vectorized search finds the candidate message starts, and the chain rule
`next = start + align4(length)` validates them exactly (a false candidate inside a message
body breaks the chain and is skipped). sock_diag and ctnetlink replies are read this way.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tcpdoctor.sources.netlink.layout import NLMSG_HDRLEN


class Views:
    """Typed views of one buffer, for gathering fields at arbitrary 4-byte-aligned offsets."""

    def __init__(self, buf: memoryview) -> None:
        usable = len(buf) - len(buf) % 4
        self.u8 = np.frombuffer(buf, dtype=np.uint8)
        self.u16 = np.frombuffer(buf, dtype="=u2", count=usable // 2)
        self.be16 = np.frombuffer(buf, dtype=">u2", count=usable // 2)
        self.u32 = np.frombuffer(buf, dtype="=u4", count=usable // 4)
        self.be32 = np.frombuffer(buf, dtype=">u4", count=usable // 4)

    def addr(self, offs: np.ndarray, field_off: int) -> tuple[np.ndarray, np.ndarray]:
        """A 16-byte big-endian address field as (high, low) uint64 halves."""
        w = [self.be32[(offs + field_off) // 4 + k].astype(np.uint64) for k in range(4)]
        return (w[0] << np.uint64(32)) | w[1], (w[2] << np.uint64(32)) | w[3]


def rows(v: Views, offs: np.ndarray, width: int, start: int = 0) -> np.ndarray:
    """Bytes start..start+width of each message at offs, as an (n, width) uint8 array whose
    columns the fields are read from (field()). Evenly spaced messages (a run of one length)
    give a strided view, with no copy; others one gather of whole rows, where a gather per
    field would cost a pass over every message per field. Every message must hold them."""
    n = offs.shape[0]
    if n == 0:
        return np.zeros((0, width), np.uint8)
    first = int(offs[0]) + start
    step = int(offs[1] - offs[0]) if n > 1 else width
    spaced = n == 1 or (step > 0 and bool((np.diff(offs) == step).all()))
    if spaced and first + (n - 1) * step + width <= v.u8.shape[0]:
        return spaced_rows(v, first, n, step, width)
    window = as_strided(v.u8, shape=(v.u8.shape[0] - width + 1, width), strides=(1, 1),
                        writeable=False)
    return window[offs + start]


def spaced_rows(v: Views, first: int, count: int, step: int, width: int) -> np.ndarray:
    """`width` bytes at first, first + step, ... (count of them) as a read-only strided
    view of the buffer; the caller has checked that the last one fits."""
    return as_strided(v.u8[first:], shape=(count, width), strides=(step, 1), writeable=False)


def field(r: np.ndarray, at: int, dtype: str) -> np.ndarray:
    """One field of rows() at byte `at`, in the given byte order and width (a copy)."""
    dt = np.dtype(dtype)
    # The field's bytes viewed as one strided column (no index list), copied: the buffer
    # under a view is refilled by the next receive.
    return r[:, at:at + dt.itemsize].view(dt)[:, 0].copy()


# A run of equal-length messages shorter than this is not worth a strided test.
_LEAST_RUN = 64


def chain(v: Views, off: int, end: int, seq: int, port: int, mtype: int,
          least: int) -> tuple[np.ndarray, int]:
    """Starts of the consecutive messages of one dump from off (each at least `least`
    bytes), and the offset after them.

    off must be a valid message. Runs of messages of one length (a table of ESTABLISHED
    sockets or of conntrack entries, each with the same attributes) are confirmed by
    testing only the positions the chain rule predicts; the rest is found by the scan.
    """
    runs = []
    while off + least <= end:
        starts = _run(v, off, end, seq, port, mtype, least)
        if starts.shape[0] < _LEAST_RUN:
            break
        runs.append(starts)
        off = int(starts[-1]) + ((int(v.u32[starts[-1] // 4]) + 3) & ~3)
    if off + least > end or not _starts(v, off, seq, port, mtype, least):
        return _joined(runs), off  # the caller reads what comes next (NLMSG_DONE)
    rest, after = _scan(v, off, end, seq, port, mtype, least)
    return _joined([*runs, rest]), after


def _joined(runs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)


def _starts(v: Views, off: int, seq: int, port: int, mtype: int, least: int) -> bool:
    """Whether a reply of this dump (header and length) starts at off."""
    w = off // 4
    return bool(v.u32[w] >= least and v.u32[w + 2] == seq and v.u32[w + 3] == port
                and v.u16[2 * w + 2] == mtype)


def _run(v: Views, off: int, end: int, seq: int, port: int, mtype: int,
         least: int) -> np.ndarray:
    """Starts of the messages from off that have off's length: by the chain rule each
    starts where the one before ends, so only those positions need their header tested."""
    length = int(v.u32[off // 4])
    step = (length + 3) & ~3
    if length < least or step == 0:
        return np.zeros(0, dtype=np.int64)
    count = (end - off - length) // step + 1
    # The predicted headers, read through a strided view (no index lists): each lies inside
    # the buffer, since a message of `length` (>= 16) bytes fits from every predicted start.
    r = spaced_rows(v, off, count, step, NLMSG_HDRLEN)
    good = ((field(r, 0, "=u4") == np.uint32(length)) & (field(r, 8, "=u4") == np.uint32(seq))
            & (field(r, 12, "=u4") == np.uint32(port)) & (field(r, 4, "=u2") == mtype))
    bad = np.flatnonzero(~good)
    kept = int(bad[0]) if bad.size else count
    return off + np.arange(kept, dtype=np.int64) * step


def _scan(v: Views, off: int, end: int, seq: int, port: int, mtype: int,
          least: int) -> tuple[np.ndarray, int]:
    """Candidates are 4-byte-aligned positions whose header repeats (mtype, seq, port
    id); the chain rule keeps exactly the real messages."""
    w0, w1 = off // 4, (end - NLMSG_HDRLEN) // 4 + 1
    cand = np.flatnonzero(v.u32[w0 + 2:w1 + 2] == np.uint32(seq)) + w0
    cand = cand[(v.u32[cand + 3] == np.uint32(port))
                & (v.u16[2 * cand + 2] == mtype)]
    lens = v.u32[cand].astype(np.int64)
    nxt = cand + ((lens + 3) >> 2)
    # A message must lie inside the buffer; its padding may not (a file cut after it).
    good = (lens >= least) & (cand * 4 + lens <= end)
    linked = np.append(nxt[:-1] == cand[1:], True)
    broken = np.flatnonzero(~(good & linked))
    k = int(broken[0]) if broken.size else cand.shape[0] - 1
    if not good[k]:
        k -= 1  # the breaking message itself is invalid: stop before it
    if k < 0:
        return np.zeros(0, dtype=np.int64), off
    return cand[:k + 1] * 4, int(nxt[k]) * 4


def alike(v: Views, offs: np.ndarray, first: int, positions: list[int]) -> np.ndarray:
    """Which messages at offs carry the same attribute headers as the one at first, at the
    given (4-byte aligned) positions from their start: those share its layout and are read
    at its offsets. A header's length and type make one 32-bit word."""
    same = np.ones(offs.shape[0], dtype=bool)
    words = offs // 4
    for pos in positions:
        same &= v.u32[words + pos // 4] == v.u32[(first + pos) // 4]
    return same
