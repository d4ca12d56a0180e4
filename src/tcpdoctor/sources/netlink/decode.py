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
from tcpdoctor.sources.netlink.chain import Views, alike, chain, field, rows
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

_OFFSET = {name: at for name, _, at in MSG_FIELDS}
# Scalar columns read straight from the message (state and addresses need conversion).
_GATHER: tuple[tuple[str, int, str], ...] = tuple(
    (name, at, fmt) for name, fmt, at in MSG_FIELDS
    if name in BASE_COLUMNS and name != "state")


def _gather(v: Views, offs: np.ndarray, want: frozenset[str]) -> dict[str, np.ndarray]:
    r = rows(v, offs, MSG_LEN)  # every message's inet_diag_msg, read once
    cols: dict[str, np.ndarray] = {}
    for name, at, fmt in _GATHER:
        if name in want:
            cols[name] = field(r, at, fmt).astype(BASE_COLUMNS[name])
    if "ifindex" in want:
        cols["ifindex"] = field(r, _OFFSET["ifindex"], "=u4")
    if "cookie" in want:  # two u32 halves at a 4-byte (not 8-byte) aligned offset
        lo = field(r, _OFFSET["cookie_lo"], "=u4").astype(np.uint64)
        hi = field(r, _OFFSET["cookie_hi"], "=u4").astype(np.uint64)
        cols["cookie"] = (hi << np.uint64(32)) | lo
    if "state" in want:
        cols["state"] = normalize_states(r[:, _OFFSET["state"]])
    if want & {"laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo"}:
        v4 = r[:, _OFFSET["family"]] == AF_INET
        for at, prefix in ((_OFFSET["src_hi"], "laddr"), (_OFFSET["dst_hi"], "raddr")):
            hi, lo = field(r, at, ">u8"), field(r, at + 8, ">u8")
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
        members = np.flatnonzero(lens == length)
        layout = _attr_layout(buf, int(offs[members[0]]), int(length))
        # Rows whose attribute headers match the first row's are read at the same offsets.
        same = alike(v, offs[members], int(offs[members[0]]), [pos for pos, _, _ in layout])
        # Every row alike (the common case): plain slices instead of index lists.
        sel: np.ndarray | slice = slice(None) if same.all() and members.shape[0] == n \
            else members[same]
        for pos, fields, flag in _wanted_attrs(layout):
            # the attribute's wanted bytes of every row at once, then its fields from them
            r = rows(v, offs[sel], max(o for _, _, o in fields) + 4, pos + 4)
            for name, fmt, o in fields:
                cols[name][sel] = field(r, o, fmt)
            cols[flag][sel] = True
        for i in members[~same]:
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


