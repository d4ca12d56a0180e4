"""NETLINK_SOCK_DIAG (inet_diag) reader that decodes replies straight into numpy columns.

Replies are read into a bounded buffer and decoded a chunk at a time, with no loop per
message: every message of one dump repeats the request's (sequence, port id) in its header,
so one vectorized search finds the candidate message starts, and the chain rule
`next = start + align4(length)` validates them exactly (a false candidate inside a message
body breaks the chain and is skipped). Fields are then gathered column by column. One dump
per address family covers all states, so the kernel walks its socket hash only once each.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable

import numpy as np

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.kernel import (
    AF_INET,
    AF_INET6,
    TCP_NEW_SYN_RECV,
    TCP_SYN_RECV,
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

CHUNK = 4 << 20  # bytes of replies decoded at once: bounds memory, amortises numpy calls
MAX_DATAGRAM = 64 << 10  # the kernel caps dump datagrams at 32 KiB; keep room for twice that


class NetlinkUnavailable(TcpDoctorError):
    """sock_diag cannot be used here (no inet_diag, seccomp, ...): fall back to procfs."""


class _Views:
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


# The typed view each MSG_FIELDS format is gathered through, with its element size.
_VIEW = {"u1": ("u8", 1), ">u2": ("be16", 2), "=u4": ("u32", 4)}
_OFFSET = {name: at for name, _, at in MSG_FIELDS}
# Scalar columns read straight from the message (state and addresses need conversion).
_GATHER: tuple[tuple[str, int, str, int], ...] = tuple(
    (name, at, *_VIEW[fmt]) for name, fmt, at in MSG_FIELDS
    if name in BASE_COLUMNS and name != "state")


def _gather(v: _Views, offs: np.ndarray, want: frozenset[str]) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for name, at, kind, size in _GATHER:
        if name in want:
            view = getattr(v, kind)
            cols[name] = view[(offs + at) // size].astype(BASE_COLUMNS[name])
    if "state" in want:
        st = v.u8[offs + _OFFSET["state"]]
        cols["state"] = np.where(st == TCP_NEW_SYN_RECV, TCP_SYN_RECV, st).astype(np.uint8)
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


def _info_columns(buf: memoryview, v: _Views, offs: np.ndarray,
                  lens: np.ndarray) -> dict[str, np.ndarray]:
    """tcp_info fields (INET_DIAG_INFO) of every message; zeros where it is absent."""
    n = offs.shape[0]
    cols = {name: np.zeros(n, dtype=dt) for name, dt in INFO_COLUMNS.items()}
    for length in np.unique(lens):
        rows = np.flatnonzero(lens == length)
        first = int(offs[rows[0]])
        layout = _attr_layout(buf, first, int(length))
        # Rows whose attribute headers match the first row's are read at the same offsets.
        same = np.ones(rows.shape[0], dtype=bool)
        for pos, rta_len, rta_type in layout:
            hdr = v.u16[(offs[rows] + pos) // 2], v.u16[(offs[rows] + pos + 2) // 2]
            same &= (hdr[0] == rta_len) & (hdr[1] == rta_type)
        info = [a for a in layout if a[2] == INET_DIAG_INFO and a[1] - 4 >= TCP_INFO_MIN]
        if info:
            sel = rows[same]
            for name, _fmt, o in TCP_INFO_FIELDS:
                cols[name][sel] = v.u32[(offs[sel] + info[0][0] + 4 + o) // 4]
            cols["has_info"][sel] = True
        for i in rows[~same]:
            _info_single(buf, int(offs[i]), int(length), cols, int(i))
    return cols


def _info_single(buf: memoryview, off: int, length: int, cols: dict[str, np.ndarray],
                 row: int) -> None:
    for pos, rta_len, rta_type in _attr_layout(buf, off, length):
        if rta_type == INET_DIAG_INFO and rta_len - 4 >= TCP_INFO_MIN:
            for name, fmt, o in TCP_INFO_FIELDS:
                cols[name][row] = struct.unpack_from(fmt, buf, off + pos + 4 + o)[0]
            cols["has_info"][row] = True
            return


def _chain(v: _Views, off: int, end: int, seq: int, port: int) -> tuple[np.ndarray, int]:
    """Starts of the consecutive sock_diag messages from off, and the offset after them.

    off must be a valid sock_diag message. Candidates are 4-byte-aligned positions whose
    header repeats (SOCK_DIAG_BY_FAMILY, seq, port id); the chain rule keeps exactly the
    real messages.
    """
    w0, w1 = off // 4, (end - NLMSG_HDRLEN) // 4 + 1
    cand = np.flatnonzero(v.u32[w0 + 2:w1 + 2] == np.uint32(seq)) + w0
    cand = cand[(v.u32[cand + 3] == np.uint32(port))
                & (v.u16[2 * cand + 2] == SOCK_DIAG_BY_FAMILY)]
    lens = v.u32[cand].astype(np.int64)
    nxt = cand + ((lens + 3) >> 2)
    good = (lens >= MSG_LEN) & (nxt * 4 <= end)
    linked = np.append(nxt[:-1] == cand[1:], True)
    broken = np.flatnonzero(~(good & linked))
    k = int(broken[0]) if broken.size else cand.shape[0] - 1
    if not good[k]:
        k -= 1  # the breaking message itself is invalid: stop before it
    if k < 0:
        return np.zeros(0, dtype=np.int64), off
    return cand[:k + 1] * 4, int(nxt[k]) * 4


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
    views = _Views(buf)
    parts: list[dict[str, np.ndarray]] = []
    off = 0
    done = False
    while off + NLMSG_HDRLEN <= end:
        length, mtype, _flags, seq, port = struct.unpack_from("=IHHII", buf, off)
        if length < NLMSG_HDRLEN or off + length > end:
            raise ParseError(source, None, f"netlink message length at byte {off}",
                             bytes(buf[off:off + 16]))
        if mtype == NLMSG_DONE:
            done = True
            off += (length + 3) & ~3
            if stop_at_done:
                break
            continue
        if mtype == NLMSG_ERROR:
            code = -struct.unpack_from("=i", buf, off + NLMSG_HDRLEN)[0]
            raise NetlinkUnavailable(f"sock_diag error: {os.strerror(code)}")
        if mtype != SOCK_DIAG_BY_FAMILY:
            off += (length + 3) & ~3
            continue
        if length < MSG_LEN or off % 4:
            raise ParseError(source, None, f"inet_diag_msg of {MSG_LEN} bytes at byte {off}",
                             bytes(buf[off:off + length]))
        offs, off = _chain(views, off, end, seq, port)
        cols = _gather(views, offs, wanted)
        if info:
            cols.update(_info_columns(buf, views, offs, views.u32[offs // 4]))
        parts.append(cols)
    if off < end and not done:
        raise ParseError(source, None, "a complete netlink message", bytes(buf[off:off + 16]))
    return concat_columns(parts, names), done


def _request(family: int, states: int, ext: int, seq: int, bytecode: bytes = b"") -> bytes:
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid;
    # optionally an INET_DIAG_REQ_BYTECODE attribute (a filter the kernel runs per socket).
    body = struct.pack("=BBBBI", family, IPPROTO_TCP, ext, 0, states) + bytes(48)
    if bytecode:
        body += struct.pack("=HH", 4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return struct.pack("=IHHII", NLMSG_HDRLEN + len(body), SOCK_DIAG_BY_FAMILY,
                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


# inet_diag filter bytecode (include/uapi/linux/inet_diag.h, net/ipv4/inet_diag.c):
# struct inet_diag_bc_op {u8 code; u8 yes; u16 no;}; a port comparison is followed by a
# second op whose `no` holds the port. The kernel runs it per socket: a true test moves by
# `yes`, a false one by `no`; JMP always moves by `no`. Ending exactly on the end accepts,
# 4 bytes past it rejects. The audit (inet_diag_bc_audit) walks the `yes` chain only and
# requires every `no` target to lie on it, hence a linear `yes` chain and a JMP to accept.
INET_DIAG_REQ_BYTECODE = 1
BC_JMP, BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE = 1, 2, 3, 4, 5
SPLIT_PORT = 46884  # middle of the default ephemeral range 32768-60999


def _op(code: int, yes: int, no: int) -> bytes:
    return struct.pack("=BBH", code, yes, no)


def _cmp(code: int, port: int, yes: int, no: int) -> bytes:
    return _op(code, yes, no) + _op(0, 0, port)


def split_bytecode(same_side: bool, port: int = SPLIT_PORT) -> bytes:
    """Half of the sockets: local and remote port on the same side of `port`, or not.

    A server's sockets have one fixed port and one ephemeral (uniformly spread) port, a
    client's the other way round, so either way the two halves come out about equal.

        @0  sport >= P ?      yes -> @8     no -> @20
        @8  dport >= P ?      yes -> @16    no -> reject      (>= P, or < P for the rest)
        @16 JMP               (yes @20)     no -> accept
        @20 dport <= P - 1 ?  yes -> accept no -> reject      (<= P-1, or >= P)
    """
    high_first, low_second = (BC_D_GE, BC_D_LE) if same_side else (BC_D_LE, BC_D_GE)
    second_port = port - 1 if low_second == BC_D_LE else port
    first_port = port if high_first == BC_D_GE else port - 1
    return (_cmp(BC_S_GE, port, 8, 20)
            + _cmp(high_first, first_port, 8, 24)
            + _op(BC_JMP, 4, 12)
            + _cmp(low_second, second_port, 8, 12))


def open_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise NetlinkUnavailable(f"cannot open NETLINK_SOCK_DIAG: {exc.strerror}") from exc
    return sock


def dump(sock: socket.socket, family: int, states: int, want: frozenset[str], info: bool,
         seq: int = 1, bytecode: bytes = b"") -> dict[str, np.ndarray]:
    """One inet_diag dump request, decoded chunk by chunk into columns."""
    ext = 1 << (INET_DIAG_INFO - 1) if info else 0
    try:
        sock.send(_request(family, states, ext, seq, bytecode))
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


def read_sockets(want: Iterable[str] = BASE_COLUMNS, info: bool = False,
                 families: Iterable[int] = (AF_INET, AF_INET6),
                 states: int = ALL_STATES_MASK,
                 parallel: bool | None = None) -> dict[str, np.ndarray]:
    """Every TCP socket of the calling thread's network namespace, as columns.

    parallel (default: with 2+ CPUs) splits each family's dump in two halves filtered by
    the kernel (split_bytecode) and reads them on two threads: the kernel's work, which is
    most of the cost, then runs on two cores (recv releases the GIL).
    """
    wanted = frozenset(want) | {"state"}
    names = {k: v for k, v in BASE_COLUMNS.items() if k in wanted}
    if info:
        names.update(INFO_COLUMNS)
    if parallel is None:
        parallel = (os.cpu_count() or 1) > 1
    jobs = [(family, bc) for family in families
            for bc in ((split_bytecode(True), split_bytecode(False)) if parallel else (b"",))]
    if not parallel:
        with open_socket() as sock:
            parts = [dump(sock, f, states, wanted, info, seq, bc)
                     for seq, (f, bc) in enumerate(jobs, 1)]
        return concat_columns(parts, names)
    return concat_columns(_dump_threads(jobs, states, wanted, info), names)


def _dump_threads(jobs: list[tuple[int, bytes]], states: int, wanted: frozenset[str],
                  info: bool) -> list[dict[str, np.ndarray]]:
    """Run the dumps two at a time, each on its own socket and thread, in this netns."""
    import threading

    from tcpdoctor.sources.netns import current_netns_fd

    results: list[dict[str, np.ndarray] | BaseException | None] = [None] * len(jobs)
    # Threads start in the process's namespace; follow the caller (maybe a setns'd thread).
    ns_fd = current_netns_fd()

    def work(i: int) -> None:
        try:
            from tcpdoctor.sources.netns import enter_fd

            enter_fd(ns_fd)
            family, bc = jobs[i]
            with open_socket() as sock:
                results[i] = dump(sock, family, states, wanted, info, i + 1, bc)
        except BaseException as exc:  # re-raised in the caller below
            results[i] = exc

    try:
        for start in range(0, len(jobs), 2):
            threads = [threading.Thread(target=work, args=(i,), daemon=True)
                       for i in range(start, min(start + 2, len(jobs)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        os.close(ns_fd)
    out = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        assert r is not None
        out.append(r)
    return out
