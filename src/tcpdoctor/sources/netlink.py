"""NETLINK_SOCK_DIAG (inet_diag) reader that decodes replies straight into numpy columns.

Replies are read into a bounded buffer and decoded a chunk at a time. Consecutive messages
of equal length (the common case: the dump is split so that each request returns one kind of
socket) are decoded as one structured-array view; only irregular messages take a loop.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.kernel import (
    AF_INET,
    AF_INET6,
    TCP_NEW_SYN_RECV,
    TCP_SYN_RECV,
    TCP_TIME_WAIT,
)
from tcpdoctor.model import BASE_COLUMNS, INFO_COLUMNS, V4_MAPPED, concat_columns

NETLINK_SOCK_DIAG = 4  # include/uapi/linux/netlink.h
SOCK_DIAG_BY_FAMILY = 20  # include/uapi/linux/sock_diag.h
NLMSG_ERROR = 2  # include/uapi/linux/netlink.h
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_HDRLEN = 16
DONE_LEN = NLMSG_HDRLEN + 4  # NLMSG_DONE carries an int errno
INET_DIAG_INFO = 2  # include/uapi/linux/inet_diag.h, enum INET_DIAG_*
IPPROTO_TCP = 6

# struct nlmsghdr (include/uapi/linux/netlink.h) followed by struct inet_diag_msg
# (include/uapi/linux/inet_diag.h). Offsets are from the start of the netlink message.
# inet_diag_sockid carries ports and addresses in network byte order (__be16/__be32).
MSG_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("nlmsg_len", "=u4", 0),
    ("nlmsg_type", "=u2", 4),
    ("family", "u1", 16),  # idiag_family
    ("state", "u1", 17),  # idiag_state
    ("timer", "u1", 18),  # idiag_timer
    ("retrans", "u1", 19),  # idiag_retrans
    ("sport", ">u2", 20),  # id.idiag_sport
    ("dport", ">u2", 22),  # id.idiag_dport
    ("src_hi", ">u8", 24),  # id.idiag_src[0..1]
    ("src_lo", ">u8", 32),  # id.idiag_src[2..3]
    ("dst_hi", ">u8", 40),  # id.idiag_dst[0..1]
    ("dst_lo", ">u8", 48),  # id.idiag_dst[2..3]
    ("expires", "=u4", 68),  # idiag_expires (ms)
    ("rqueue", "=u4", 72),  # idiag_rqueue
    ("wqueue", "=u4", 76),  # idiag_wqueue
    ("uid", "=u4", 80),  # idiag_uid
    ("inode", "=u4", 84),  # idiag_inode
)
MSG_LEN = 88  # NLMSG_HDRLEN + sizeof(struct inet_diag_msg)

# struct tcp_info (include/uapi/linux/tcp.h): offsets inside the INET_DIAG_INFO payload.
TCP_INFO_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("lastsnd", "=u4", 44),  # tcpi_last_data_sent
    ("lastrcv", "=u4", 52),  # tcpi_last_data_recv
    ("lastack", "=u4", 56),  # tcpi_last_ack_recv
    ("rtt", "=u4", 68),  # tcpi_rtt
)
TCP_INFO_MIN = 72

ALL_STATES_MASK = sum(1 << s for s in range(1, 13))  # 1..NEW_SYN_RECV; not BOUND_INACTIVE
# One request per group keeps every reply made of one message length (see module doc).
STATE_GROUPS: tuple[int, ...] = (
    1 << TCP_TIME_WAIT,
    (1 << TCP_SYN_RECV) | (1 << TCP_NEW_SYN_RECV),
    ALL_STATES_MASK & ~((1 << TCP_TIME_WAIT) | (1 << TCP_SYN_RECV) | (1 << TCP_NEW_SYN_RECV)),
)

CHUNK = 4 << 20  # bytes of replies decoded at once: bounds memory, amortises numpy calls
MAX_DATAGRAM = 64 << 10  # the kernel caps dump datagrams at 32 KiB; keep room for twice that


class NetlinkUnavailable(TcpDoctorError):
    """sock_diag cannot be used here (no inet_diag, seccomp, ...): fall back to procfs."""


@lru_cache(maxsize=32)
def _row_dtype(step: int) -> np.dtype:
    return np.dtype({
        "names": [f[0] for f in MSG_FIELDS],
        "formats": [f[1] for f in MSG_FIELDS],
        "offsets": [f[2] for f in MSG_FIELDS],
        "itemsize": step,
    })


def _columns_from_rows(rows: np.ndarray, want: frozenset[str]) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for name in ("family", "timer", "retrans", "sport", "dport", "expires", "rqueue",
                 "wqueue", "uid", "inode"):
        if name in want:
            cols[name] = np.array(rows[name], dtype=BASE_COLUMNS[name])
    if "state" in want:
        st = rows["state"]
        cols["state"] = np.where(st == TCP_NEW_SYN_RECV, TCP_SYN_RECV, st).astype(np.uint8)
    if want & {"laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo"}:
        v4 = rows["family"] == AF_INET
        for side, prefix in (("src", "laddr"), ("dst", "raddr")):
            hi = rows[f"{side}_hi"]
            # IPv4 sits in the first 4 bytes of the 16-byte field: map it to ::ffff:a.b.c.d.
            cols[f"{prefix}_hi"] = np.where(v4, np.uint64(0), hi).astype(np.uint64)
            cols[f"{prefix}_lo"] = np.where(
                v4, (hi >> np.uint64(32)) | V4_MAPPED, rows[f"{side}_lo"]).astype(np.uint64)
    return cols


def _attr_layout(buf: memoryview, off: int, length: int) -> list[tuple[int, int, int]]:
    """(offset, rta_len, rta_type) of each attribute of one message."""
    out = []
    pos = off + MSG_LEN
    end = off + length
    while pos + 4 <= end:
        rta_len, rta_type = struct.unpack_from("=HH", buf, pos)
        if rta_len < 4 or pos + rta_len > end:
            break
        out.append((pos, rta_len, rta_type))
        pos += (rta_len + 3) & ~3
    return out


def _info_single(buf: memoryview, off: int, length: int) -> tuple[bool, list[int]]:
    for pos, rta_len, rta_type in _attr_layout(buf, off, length):
        if rta_type == INET_DIAG_INFO and rta_len - 4 >= TCP_INFO_MIN:
            return True, [struct.unpack_from(fmt, buf, pos + 4 + o)[0]
                          for _, fmt, o in TCP_INFO_FIELDS]
    return False, [0] * len(TCP_INFO_FIELDS)


def _info_columns(buf: memoryview, off: int, step: int, n: int) -> dict[str, np.ndarray]:
    """tcp_info fields for a run of n equal-length messages starting at off."""
    cols = {name: np.zeros(n, dtype=dt) for name, dt in INFO_COLUMNS.items()}
    layout = _attr_layout(buf, off, step)
    info = [a for a in layout if a[2] == INET_DIAG_INFO and a[1] - 4 >= TCP_INFO_MIN]
    # Rows whose attribute layout equals the first row's are decoded as strided views.
    same = np.ones(n, dtype=bool)
    for pos, rta_len, rta_type in layout:
        hdr = np.ndarray((n,), dtype="=u4", buffer=buf, offset=pos, strides=(step,))
        same &= hdr == np.uint32(rta_len | (rta_type << 16))
    if info:
        pos = info[0][0] + 4
        for name, fmt, o in TCP_INFO_FIELDS:
            view = np.ndarray((n,), dtype=fmt, buffer=buf, offset=pos + o, strides=(step,))
            cols[name][same] = view[same]
        cols["has_info"][same] = True
    for i in np.flatnonzero(~same):
        ok, values = _info_single(buf, off + int(i) * step, step)
        cols["has_info"][i] = ok
        for (name, _, _), v in zip(TCP_INFO_FIELDS, values, strict=True):
            cols[name][i] = v
    return cols


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
    names = {k: v for k, v in BASE_COLUMNS.items() if k in wanted}
    if info:
        names.update(INFO_COLUMNS)
    parts: list[dict[str, np.ndarray]] = []
    off = 0
    done = False
    while off + NLMSG_HDRLEN <= end:
        length, mtype = struct.unpack_from("=IH", buf, off)
        if length < NLMSG_HDRLEN or off + length > end:
            raise ParseError(source, None, f"netlink message length at byte {off}",
                             bytes(buf[off:off + 16]))
        step = (length + 3) & ~3
        if mtype == NLMSG_DONE:
            done = True
            off += step
            if stop_at_done:
                break
            continue
        if mtype == NLMSG_ERROR:
            code = -struct.unpack_from("=i", buf, off + NLMSG_HDRLEN)[0]
            raise NetlinkUnavailable(f"sock_diag error: {os.strerror(code)}")
        if mtype != SOCK_DIAG_BY_FAMILY:
            off += step
            continue
        if length < MSG_LEN:
            raise ParseError(source, None, f"inet_diag_msg of {MSG_LEN} bytes at byte {off}",
                             bytes(buf[off:off + length]))
        n = _run_length(buf, off, step, length, end)
        rows = np.ndarray((n,), dtype=_row_dtype(step), buffer=buf, offset=off)
        cols = _columns_from_rows(rows, wanted)
        if info:
            cols.update(_info_columns(buf, off, step, n))
        parts.append(cols)
        off += n * step
    if off < end and not done:
        raise ParseError(source, None, "a complete netlink message", bytes(buf[off:off + 16]))
    return concat_columns(parts, names), done


def _run_length(buf: memoryview, off: int, step: int, length: int, end: int) -> int:
    """How many consecutive sock_diag messages of this exact length start at off."""
    k = (end - off) // step
    lens = np.ndarray((k,), dtype="=u4", buffer=buf, offset=off, strides=(step,))
    types = np.ndarray((k,), dtype="=u2", buffer=buf, offset=off + 4, strides=(step,))
    ok = (lens == length) & (types == SOCK_DIAG_BY_FAMILY)
    return k if bool(ok.all()) else int(np.argmin(ok))


def _request(family: int, states: int, ext: int, seq: int) -> bytes:
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid.
    body = struct.pack("=BBBBI", family, IPPROTO_TCP, ext, 0, states) + bytes(48)
    return struct.pack("=IHHII", NLMSG_HDRLEN + len(body), SOCK_DIAG_BY_FAMILY,
                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def open_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise NetlinkUnavailable(f"cannot open NETLINK_SOCK_DIAG: {exc.strerror}") from exc
    return sock


def dump(sock: socket.socket, family: int, states: int, want: frozenset[str], info: bool,
         seq: int = 1) -> dict[str, np.ndarray]:
    """One inet_diag dump request, decoded chunk by chunk into columns."""
    ext = 1 << (INET_DIAG_INFO - 1) if info else 0
    try:
        sock.send(_request(family, states, ext, seq))
    except OSError as exc:
        raise NetlinkUnavailable(f"sock_diag request failed: {exc.strerror}") from exc
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    parts: list[dict[str, np.ndarray]] = []
    names = {k: v for k, v in BASE_COLUMNS.items() if k in want}
    if info:
        names.update(INFO_COLUMNS)
    fill = 0
    done = False
    while not done:
        try:
            got = sock.recv_into(view[fill:], MAX_DATAGRAM, socket.MSG_TRUNC)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise NetlinkUnavailable(f"sock_diag receive failed: {exc.strerror}") from exc
        if got > MAX_DATAGRAM:
            raise NetlinkUnavailable(f"sock_diag datagram of {got} bytes exceeds buffer")
        if got == 0:
            break
        fill += got
        done = _ends_with_done(view, fill - got, fill)
        if done or fill + MAX_DATAGRAM > CHUNK:
            cols, _ = decode(view[:fill], want, info)
            parts.append(cols)
            fill = 0
    return concat_columns(parts, names)


def _ends_with_done(view: memoryview, start: int, end: int) -> bool:
    """Whether the datagram in view[start:end] ends the dump (NLMSG_DONE or an error).

    An error reply stands alone at the start of a datagram; NLMSG_DONE (header + int errno,
    20 bytes without extended ACKs, which we never ask for) is always the datagram's last
    message. Looking at those two places costs O(1) per datagram; only a tail that looks
    like NLMSG_DONE is confirmed by walking the datagram's messages.
    """
    if end - start < NLMSG_HDRLEN:
        return False
    first_type = struct.unpack_from("=H", view, start + 4)[0]
    if first_type in (NLMSG_ERROR, NLMSG_DONE):
        return True
    if end - start < DONE_LEN:
        return False
    length, mtype = struct.unpack_from("=IH", view, end - DONE_LEN)
    if length != DONE_LEN or mtype != NLMSG_DONE:
        return False
    off = start
    while off + NLMSG_HDRLEN <= end:
        length, mtype = struct.unpack_from("=IH", view, off)
        if length < NLMSG_HDRLEN:
            return False
        if mtype == NLMSG_DONE:
            return True
        off += (length + 3) & ~3
    return False


def families_for(ipv4: bool, ipv6: bool) -> list[int]:
    fams = []
    if ipv4:
        fams.append(AF_INET)
    if ipv6:
        fams.append(AF_INET6)
    return fams


def read_sockets(want: Iterable[str] = BASE_COLUMNS, info: bool = False,
                 families: Iterable[int] = (AF_INET, AF_INET6),
                 states: int = ALL_STATES_MASK) -> dict[str, np.ndarray]:
    """Every TCP socket of the calling thread's network namespace, as columns."""
    wanted = frozenset(want) | {"state"}
    names = {k: v for k, v in BASE_COLUMNS.items() if k in wanted}
    if info:
        names.update(INFO_COLUMNS)
    parts = []
    with open_socket() as sock:
        seq = 1
        for family in families:
            for group in STATE_GROUPS:
                mask = group & states
                if not mask:
                    continue
                parts.append(dump(sock, family, mask, wanted, info, seq))
                seq += 1
    return concat_columns(parts, names)
