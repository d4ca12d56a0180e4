"""The addresses of the calling thread's network namespace (rtnetlink RTM_GETADDR): they
say which namespace, and so which pod, a conntrack entry's endpoint lives in."""

from __future__ import annotations

import socket
import struct

from tcpdoctor.model.addresses import V4_MAPPED_INT
from tcpdoctor.sources.netlink.dump import chunk_buffer, open_socket, receive

NETLINK_ROUTE = 0  # include/uapi/linux/netlink.h
RTM_NEWADDR, RTM_GETADDR = 20, 22  # include/uapi/linux/rtnetlink.h
IFA_ADDRESS, IFA_LOCAL = 1, 2  # include/uapi/linux/if_addr.h
_DONE, _ERROR = 3, 2
MAX_REPLY = 1 << 22  # 4 MB of replies: tens of thousands of addresses


def read_addresses() -> list[int]:
    """Every address of this namespace as a 128-bit integer (IPv4 mapped, ::ffff:a.b.c.d)."""
    with open_socket(NETLINK_ROUTE, "NETLINK_ROUTE") as sock:
        # struct ifaddrmsg: family AF_UNSPEC (both), prefix length, flags, scope, index.
        body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETADDR, 0x301, 1, 0) + body)
        out: list[int] = []
        seen = 0
        view = chunk_buffer()
        for fill in receive(sock, view):  # the dump's datagrams, a chunk at a time
            out.extend(_addresses(bytes(view[:fill])))
            seen += fill
            if seen >= MAX_REPLY:
                break
        return out


def _addresses(data: bytes) -> list[int]:
    """The addresses of the RTM_NEWADDR messages of one chunk of the dump."""
    out: list[int] = []
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16 or off + length > len(data) or mtype in (_DONE, _ERROR):
            break
        if mtype == RTM_NEWADDR and length >= 24:
            out.extend(_address(data[off + 16:off + length]))
        off += (length + 3) & ~3
    return out


def _address(msg: bytes) -> list[int]:
    """The message's own address: IFA_LOCAL where present (on a point-to-point link
    IFA_ADDRESS is the peer's), else IFA_ADDRESS."""
    family = msg[0]
    pos, found = 8, {}
    while pos + 4 <= len(msg):
        alen, kind = struct.unpack_from("=HH", msg, pos)
        if alen < 4 or pos + alen > len(msg):
            break
        value = msg[pos + 4:pos + alen]
        if kind in (IFA_ADDRESS, IFA_LOCAL):
            if family == socket.AF_INET and len(value) == 4:
                found[kind] = V4_MAPPED_INT | int.from_bytes(value, "big")
            elif family == socket.AF_INET6 and len(value) == 16:
                found[kind] = int.from_bytes(value, "big")
        pos += (alen + 3) & ~3
    own = found.get(IFA_LOCAL, found.get(IFA_ADDRESS))
    return [] if own is None else [own]
