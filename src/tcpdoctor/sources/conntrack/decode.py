"""ctnetlink dump replies decoded into columns, with no loop per entry.

An entry is a tree of netlink attributes, but the entries of one kind (TCP over IPv4, no
helper, say) have the same tree: the same attribute headers at the same offsets. One
entry of each kind is walked in Python; every entry whose length and attribute headers
equal it is read at the same offsets, all at once. A table holds a handful of kinds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.columns import concat_columns
from tcpdoctor.model.conntrack import CT_COLUMNS
from tcpdoctor.sources.conntrack.layout import (
    ADDRESSES,
    CT_NEW,
    CTA_PROTOINFO,
    CTA_PROTOINFO_TCP,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_TUPLE_REPLY,
    HEADER,
    IPPROTO_TCP,
    NLA_TYPE_MASK,
    SCALARS,
)
from tcpdoctor.sources.netlink.chain import Views, alike, chain
from tcpdoctor.sources.netlink.layout import NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN

# More kinds than this in one buffer is not a conntrack table: stop, say so.
MAX_KINDS = 256
# The nests read into, by their schema: kernels before 5.2 do not flag nests (NLA_F_NESTED).
NESTS = {(CTA_TUPLE_ORIG,), (CTA_TUPLE_REPLY,), (CTA_PROTOINFO,),
         *((t, k) for t in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY)
           for k in (CTA_TUPLE_IP, CTA_TUPLE_PROTO)),
         (CTA_PROTOINFO, CTA_PROTOINFO_TCP)}


@dataclass
class Decoded:
    columns: dict[str, np.ndarray]  # TCP entries only
    other: int  # entries of other protocols
    done: bool  # NLMSG_DONE seen
    odd: int = 0  # entries of a kind beyond MAX_KINDS, not read


def _walk(buf: memoryview, start: int, end: int, path: tuple[int, ...],
          heads: list[int], found: dict[tuple[int, ...], tuple[int, int]]) -> None:
    """Every attribute header's offset (heads) and each leaf's (offset, length) by path."""
    pos = start
    while pos + 4 <= end:
        length, kind = struct.unpack_from("=HH", buf, pos)
        if length < 4 or pos + length > end:
            raise ValueError("attribute overruns its message")
        heads.append(pos)
        here = (*path, kind & NLA_TYPE_MASK)
        found.setdefault(here, (pos + 4, length - 4))
        if here in NESTS and length > 4:
            _walk(buf, pos + 4, pos + length, here, heads, found)
        pos += (length + 3) & ~3


def _layout(buf: memoryview, off: int, length: int
            ) -> tuple[list[int], dict[tuple[int, ...], tuple[int, int]]]:
    heads: list[int] = []
    found: dict[tuple[int, ...], tuple[int, int]] = {}
    _walk(buf, off + HEADER, off + length, (), heads, found)
    # Offsets from the message's start: every entry of the kind has them.
    return [h - off for h in heads], {k: (o - off, n) for k, (o, n) in found.items()}


def _read(v: Views, at: np.ndarray, found: dict[tuple[int, ...], tuple[int, int]],
          cols: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """The columns of the entries starting at `at` (one kind), into cols[rows]."""
    for name, path, how in SCALARS:
        spot = found.get(path)
        if spot is None or name not in cols:
            continue
        o, size = spot
        if how == "be32" and size >= 4 and o % 4 == 0:
            cols[name][rows] = v.be32[(at + o) // 4]
        elif how == "be16" and size >= 2 and o % 2 == 0:
            cols[name][rows] = v.be16[(at + o) // 2]
        elif how == "u8" and size >= 1:
            cols[name][rows] = v.u8[at + o]
    v4 = v.u8[at + 16] == 2  # nfgen_family: AF_INET
    for prefix, top, a4, a6 in ADDRESSES:
        hi, lo = cols[f"{prefix}_hi"], cols[f"{prefix}_lo"]
        if (top, 1, a4) in found and found[(top, 1, a4)][1] >= 4:
            o = found[(top, 1, a4)][0]
            hi[rows] = 0
            lo[rows] = v.be32[(at + o) // 4].astype(np.uint64) | V4_MAPPED
        elif (top, 1, a6) in found and found[(top, 1, a6)][1] >= 16:
            h, low = v.addr(at, found[(top, 1, a6)][0])
            hi[rows], lo[rows] = h, low
    cols["family"][rows] = np.where(v4, 2, 10)


def _kinds(buf: memoryview, v: Views, offs: np.ndarray, cols: dict[str, np.ndarray]) -> int:
    """Read every entry, one kind at a time; the number of entries left unread."""
    lens = v.u32[offs // 4]
    left = np.ones(offs.shape[0], dtype=bool)
    for _ in range(MAX_KINDS):
        todo = np.flatnonzero(left)
        if todo.size == 0:
            return 0
        first = int(todo[0])
        try:
            heads, found = _layout(buf, int(offs[first]), int(lens[first]))
        except ValueError:
            left[first] = False  # a malformed entry: its own kind, read as nothing
            cols["proto"][first] = 0
            continue
        same = todo[lens[todo] == lens[first]]
        same = same[alike(v, offs[same], int(offs[first]), heads)]
        _read(v, offs[same], found, cols, same)
        left[same] = False
    return int(np.count_nonzero(left))


def decode(data: bytes | bytearray | memoryview, source: str = "ctnetlink") -> Decoded:
    """The TCP entries of a buffer of ctnetlink dump replies (ended by NLMSG_DONE or not)."""
    buf = memoryview(data).cast("B")
    end = len(buf) - len(buf) % 4
    views = Views(buf)
    parts: list[dict[str, np.ndarray]] = []
    off, done, other, odd = 0, False, 0, 0
    while off + NLMSG_HDRLEN <= end:
        length, mtype, _flags, seq, port = struct.unpack_from("=IHHII", buf, off)
        if length < NLMSG_HDRLEN or off + length > len(buf):
            raise ParseError(source, None, Msg("netlink message length at byte {off}", off=off),
                             bytes(buf[off:off + 16]))
        if mtype == NLMSG_DONE:
            done = True
            break
        if mtype == NLMSG_ERROR:
            code = -struct.unpack_from("=i", buf, off + NLMSG_HDRLEN)[0]
            raise ParseError(source, None, Msg("ctnetlink error {code}", code=code), b"")
        if mtype != CT_NEW or length < HEADER or off % 4:
            off += (length + 3) & ~3
            continue
        offs, after = chain(views, off, end, seq, port, mtype, HEADER)
        if after <= off:
            raise ParseError(source, None, Msg("a complete ctnetlink message at byte {off}",
                                               off=off), bytes(buf[off:off + 16]))
        off = after
        cols = {name: np.zeros(offs.shape[0], dtype=dt) for name, dt in CT_COLUMNS.items()}
        cols["proto"] = np.zeros(offs.shape[0], np.uint8)
        unread = _kinds(buf, views, offs, cols)
        odd += unread
        tcp = cols.pop("proto") == IPPROTO_TCP
        other += int(offs.shape[0] - np.count_nonzero(tcp)) - unread
        parts.append({k: c[tcp] for k, c in cols.items()} if not tcp.all() else cols)
    return Decoded(concat_columns(parts, CT_COLUMNS), other, done, odd)
