"""Pure decoding of sock_diag replies into numpy columns, with no loop per message.

Every message of one dump repeats the request's (sequence, port id) in its header, so one
vectorized search finds the candidate message starts, and the chain rule
`next = start + align4(length)` validates them exactly (a false candidate inside a message
body breaks the chain and is skipped). Fields are then gathered column by column.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

import numpy as np

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS, concat_columns, wanted_columns
from tcpdoctor.model.tcp import AF_INET, normalize_states
from tcpdoctor.sources.netlink.chain import Views, alike, chain
from tcpdoctor.sources.netlink.errors import NetlinkUnavailable
from tcpdoctor.sources.netlink.layout import (
    INFO_ATTRS,
    MSG_FIELDS,
    MSG_LEN,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    REPLY_TYPES,
)

# The typed view each MSG_FIELDS format is gathered through, with its element size.
_VIEW = {"u1": ("u8", 1), ">u2": ("be16", 2), "=u4": ("u32", 4)}
_OFFSET = {name: at for name, _, at in MSG_FIELDS}
# Scalar columns read straight from the message (state and addresses need conversion).
_GATHER: tuple[tuple[str, int, str, int], ...] = tuple(
    (name, at, *_VIEW[fmt]) for name, fmt, at in MSG_FIELDS
    if name in BASE_COLUMNS and name != "state")


def _gather(v: Views, offs: np.ndarray, want: frozenset[str]) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for name, at, kind, size in _GATHER:
        if name in want:
            view = getattr(v, kind)
            cols[name] = view[(offs + at) // size].astype(BASE_COLUMNS[name])
    if "ifindex" in want:
        cols["ifindex"] = v.u32[(offs + _OFFSET["ifindex"]) // 4].copy()
    if "cookie" in want:  # two u32 halves at a 4-byte (not 8-byte) aligned offset
        lo = v.u32[(offs + _OFFSET["cookie_lo"]) // 4].astype(np.uint64)
        hi = v.u32[(offs + _OFFSET["cookie_hi"]) // 4].astype(np.uint64)
        cols["cookie"] = (hi << np.uint64(32)) | lo
    if "state" in want:
        st = v.u8[offs + _OFFSET["state"]]
        cols["state"] = normalize_states(st)
    if want & {"laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo"}:
        v4 = v.u8[offs + _OFFSET["family"]] == AF_INET
        for at, prefix in ((_OFFSET["src_hi"], "laddr"), (_OFFSET["dst_hi"], "raddr")):
            hi, lo = v.addr(offs, at)
            # IPv4 sits in the first 4 bytes of the 16-byte field: map it to ::ffff:a.b.c.d.
            cols[f"{prefix}_hi"] = np.where(v4, np.uint64(0), hi).astype(np.uint64)
            cols[f"{prefix}_lo"] = np.where(
                v4, (hi >> np.uint64(32)) | V4_MAPPED, lo).astype(np.uint64)
    return cols


def _attr_layout(buf: memoryview, off: int, length: int) -> list[tuple[int, int, int]]:
    """(offset from message start, rta_len, rta_type) of each attribute of one message."""
    out = []
    pos = MSG_LEN
    while pos + 4 <= length:
        rta_len, rta_type = struct.unpack_from("=HH", buf, off + pos)
        if rta_len < 4 or pos + rta_len > length:
            break
        out.append((pos, rta_len, rta_type))
        pos += (rta_len + 3) & ~3
    return out


def _info_columns(buf: memoryview, v: Views, offs: np.ndarray,
                  lens: np.ndarray) -> dict[str, np.ndarray]:
    """tcp_info and skmem fields (INFO_ATTRS) of every message; zeros where absent."""
    n = offs.shape[0]
    cols = {name: np.zeros(n, dtype=dt) for name, dt in INFO_COLUMNS.items()}
    for length in np.unique(lens):
        rows = np.flatnonzero(lens == length)
        layout = _attr_layout(buf, int(offs[rows[0]]), int(length))
        # Rows whose attribute headers match the first row's are read at the same offsets.
        same = alike(v, offs[rows], int(offs[rows[0]]), [pos for pos, _, _ in layout])
        # Every row alike (the common case): plain slices instead of index lists.
        sel: np.ndarray | slice = slice(None) if same.all() and rows.shape[0] == n else rows[same]
        at = offs[sel] // 4
        for pos, fields, flag in _wanted_attrs(layout):
            for name, _fmt, o in fields:
                cols[name][sel] = v.u32[at + (pos + 4 + o) // 4]
            cols[flag][sel] = True
        for i in rows[~same]:
            _info_single(buf, int(offs[i]), int(length), cols, int(i))
    return cols


def _wanted_attrs(layout: list[tuple[int, int, int]],
                  ) -> list[tuple[int, tuple[tuple[str, str, int], ...], str]]:
    """(position, fields, presence column) of each INFO_ATTRS attribute in a layout."""
    out = []
    for kind, fields, least, flag in INFO_ATTRS:
        found = [pos for pos, rta_len, rta_type in layout
                 if rta_type == kind and rta_len - 4 >= least]
        if found:
            out.append((found[0], fields, flag))
    return out


def _info_single(buf: memoryview, off: int, length: int, cols: dict[str, np.ndarray],
                 row: int) -> None:
    for pos, fields, flag in _wanted_attrs(_attr_layout(buf, off, length)):
        for name, fmt, o in fields:
            cols[name][row] = np.frombuffer(buf, np.dtype(fmt), 1, off + pos + 4 + o)[0]
        cols[flag][row] = True


def decode(data: bytes | bytearray | memoryview, want: Iterable[str] = BASE_COLUMNS,
           info: bool = False, source: str = "netlink",
           stop_at_done: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """Decode a buffer of sock_diag reply messages into columns.

    Returns (columns, saw_done). With stop_at_done=False the whole buffer is read, which is
    what a file written by `ss -D` needs: it holds one dump per address family.
    """
    buf = memoryview(data).cast("B")
    end = len(buf)
    wanted = frozenset(want)
    names = wanted_columns(wanted)
    if info:
        names.update(INFO_COLUMNS)
    views = Views(buf)
    parts: list[dict[str, np.ndarray]] = []
    off = 0
    done = False
    while off + NLMSG_HDRLEN <= end:
        length, mtype, _flags, seq, port = struct.unpack_from("=IHHII", buf, off)
        if length < NLMSG_HDRLEN or off + length > end:
            raise ParseError(source, None, Msg("netlink message length at byte {off}", off=off),
                             bytes(buf[off:off + 16]))
        if mtype == NLMSG_DONE:
            done = True
            off += (length + 3) & ~3
            if stop_at_done:
                break
            continue
        if mtype == NLMSG_ERROR:
            code = -struct.unpack_from("=i", buf, off + NLMSG_HDRLEN)[0]
            raise NetlinkUnavailable(Msg("sock_diag error: {error}",
                                         error=os.strerror(code)))
        if mtype not in REPLY_TYPES:
            off += (length + 3) & ~3
            continue
        if length < MSG_LEN or off % 4:
            raise ParseError(source, None, Msg("inet_diag_msg of {MSG_LEN} bytes at byte {off}",
                                               MSG_LEN=MSG_LEN, off=off),
                             bytes(buf[off:off + length]))
        offs, after = chain(views, off, end, seq, port, mtype, MSG_LEN)
        if after <= off:  # no whole message here: stop, never loop on the same offset
            raise ParseError(source, None, Msg("a complete sock_diag message at byte {off}",
                                               off=off),
                             bytes(buf[off:off + 16]))
        off = after
        cols = _gather(views, offs, wanted)
        if info:
            cols.update(_info_columns(buf, views, offs, views.u32[offs // 4]))
        parts.append(cols)
    if off < end and not done:
        raise ParseError(source, None, Msg("a complete netlink message"), bytes(buf[off:off + 16]))
    return concat_columns(parts, names), done


