"""The kernel's two ways to end one TCP socket that tcpdoctor does not own.

- SOCK_DESTROY (sock_diag, what `ss -K` uses): the kernel looks the socket up by its exact
  4-tuple and device, checks its cookie (ENOENT when a new socket took the 4-tuple), and
  aborts it: a RST to the peer, TIME_WAIT removed. Needs CAP_NET_ADMIN in the socket's
  namespace and CONFIG_INET_DIAG_DESTROY (EOPNOTSUPP without it).
- pidfd_getfd + shutdown (Linux 5.6+): a duplicate of the owner's descriptor, checked to
  still be the same socket (its inode), shut down: the peer reads end of stream, the owner
  keeps running and keeps its descriptor until it closes it.

Nothing here decides what to end: relief plans, this only carries one request out.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import stat
import struct

import numpy as np

from tcpdoctor.model.tcp import AF_INET
from tcpdoctor.sources.netlink.layout import (
    IPPROTO_TCP,
    NETLINK_SOCK_DIAG,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
)
from tcpdoctor.sources.owners import socket_inode

SOCK_DESTROY = 21  # include/uapi/linux/sock_diag.h
NLM_F_ACK = 0x4
SOL_NETLINK, NETLINK_CAP_ACK = 270, 10  # include/linux/socket.h, uapi/linux/netlink.h
WINDOW = 256  # requests in flight: 256 ACKs fit any receive buffer
SYS_PIDFD_GETFD = 438  # the same number on every architecture (asm-generic/unistd.h)
MASK32 = 0xFFFFFFFF


def destroy_request(seq: int, family: int, sport: int, dport: int, src: bytes, dst: bytes,
                    ifindex: int, cookie: int) -> bytes:
    """One SOCK_DESTROY message: struct inet_diag_req_v2 naming exactly one socket (src and
    dst are 16 bytes, IPv4 in the first 4, as the dump gave them)."""
    sockid = (struct.pack(">HH", sport, dport) + src + dst
              + struct.pack("=III", ifindex, cookie & MASK32, cookie >> 32))
    body = struct.pack("=BBBBI", family, IPPROTO_TCP, 0, 0, 0) + sockid
    return struct.pack("=IHHII", NLMSG_HDRLEN + len(body), SOCK_DESTROY,
                       NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def address_bytes(family: int, hi: int, lo: int) -> bytes:
    """The 16-byte idiag_src/dst field from tcpdoctor's (hi, lo) address halves (IPv4 is
    stored as ::ffff:a.b.c.d; the kernel wants it in the first 4 bytes)."""
    if family == AF_INET:
        return struct.pack(">I", lo & MASK32) + bytes(12)
    return struct.pack(">QQ", hi, lo)


class Destroyer:
    """A sock_diag socket in the caller's network namespace, sending SOCK_DESTROY requests in
    batches and collecting one errno per request (0: ended)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                  NETLINK_SOCK_DIAG)
        # ACKs without a copy of the request (NETLINK_CAP_ACK, Linux 4.3+): 36 bytes each.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Destroyer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, requests: list[bytes], first_seq: int) -> list[int]:
        """Send the requests (their sequence numbers first_seq, first_seq+1, ...) and return
        their errnos in order. They go WINDOW at a time, each window's ACKs read before the
        next is sent, so the ACKs never overflow the receive buffer (ENOBUFS would lose
        them); a request left without an answer counts as ETIMEDOUT."""
        answers: dict[int, int] = {}
        self.sock.settimeout(5.0)
        for start in range(0, len(requests), WINDOW):
            window = requests[start:start + WINDOW]
            try:
                self.sock.send(b"".join(window))
                want = {first_seq + start + i for i in range(len(window))}
                while not want <= answers.keys():
                    answers.update(_acks(self.sock.recv(1 << 16)))
            except OSError:  # a timeout or a lost ACK: those requests stay unanswered
                continue
        return [answers.get(first_seq + i, errno.ETIMEDOUT) for i in range(len(requests))]


def _acks(data: bytes) -> dict[int, int]:
    """seq -> errno of each NLMSG_ERROR (ACK) message in one datagram."""
    out: dict[int, int] = {}
    off = 0
    while off + NLMSG_HDRLEN + 4 <= len(data):
        length, mtype, _flags, seq, _port = struct.unpack_from("=IHHII", data, off)
        if length < NLMSG_HDRLEN:
            break
        if mtype == NLMSG_ERROR:
            out[seq] = -struct.unpack_from("=i", data, off + NLMSG_HDRLEN)[0]
        off += (length + 3) & ~3
    return out


def probe_destroy() -> int:
    """The errno SOCK_DESTROY gives for a socket that cannot exist (port 0 to port 0, cookie
    0): ENOENT means the kernel can destroy sockets, EOPNOTSUPP that it was built without
    CONFIG_INET_DIAG_DESTROY. (The capability is checked only once a socket is found.)"""
    with Destroyer() as d:
        return d.run([destroy_request(1, AF_INET, 0, 0, bytes(16), bytes(16), 0, 0)], 1)[0]


_libc = ctypes.CDLL(None, use_errno=True)


def pidfd_getfd(pidfd: int, fd: int) -> int:
    """A duplicate of another process's descriptor (raises OSError with the errno)."""
    got = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    if got < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(got)


def shutdown_owned(pidfd: int, fd: int, inode: int) -> int:
    """Shut down (both directions) the socket the process behind pidfd holds as fd, if that
    descriptor is still the socket with this inode. Returns 0, ESTALE when the descriptor is
    now something else (closed and reused: never touched), or the errno of the failure."""
    try:
        dup = pidfd_getfd(pidfd, fd)
    except OSError as exc:
        return exc.errno or errno.EIO
    try:
        st = os.fstat(dup)
        if not stat.S_ISSOCK(st.st_mode) or st.st_ino != inode:
            return errno.ESTALE
        sock = socket.socket(fileno=dup)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            return exc.errno or errno.EIO
        finally:
            sock.detach()
        return 0
    finally:
        os.close(dup)


def socket_fds(pid: int, proc_root: str = "/proc") -> tuple[np.ndarray, np.ndarray]:
    """(socket inodes, their descriptor numbers) of one process; empty when it is gone."""
    base = f"{proc_root}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    pairs = [(inode, int(name)) for name in names
             if (inode := socket_inode(f"{base}/{name}")) is not None]
    return (np.array([i for i, _ in pairs], np.uint32),
            np.array([fd for _, fd in pairs], np.int32))


def holds(pid: int, fd: int, inode: int, proc_root: str = "/proc") -> bool:
    """Whether the process still holds that socket as that descriptor."""
    return socket_inode(f"{proc_root}/{pid}/fd/{fd}") == inode
