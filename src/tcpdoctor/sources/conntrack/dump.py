"""The conntrack table of the calling thread's network namespace, through ctnetlink; and
the deletion of chosen entries (relieve --conntrack-ghosts)."""

from __future__ import annotations

import errno
import socket
import struct

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import drain_columns
from tcpdoctor.model.conntrack import CT_COLUMNS
from tcpdoctor.sources.conntrack.decode import Decoded, decode
from tcpdoctor.sources.conntrack.layout import (
    CT_DELETE,
    CT_GET,
    CTA_ID,
    CTA_IP_V4_DST,
    CTA_IP_V4_SRC,
    CTA_IP_V6_DST,
    CTA_IP_V6_SRC,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_ZONE,
    IPPROTO_TCP,
    NETLINK_NETFILTER,
    NLA_F_NESTED,
    NLM_F_ACK,
)
from tcpdoctor.sources.netlink.dump import chunk_buffer, receive
from tcpdoctor.sources.netlink.dump import open_socket as open_netlink
from tcpdoctor.sources.netlink.errors import NetlinkUnavailable
from tcpdoctor.sources.netlink.layout import NLM_F_DUMP, NLM_F_REQUEST


def open_socket() -> socket.socket:
    return open_netlink(NETLINK_NETFILTER, "NETLINK_NETFILTER")


def message(mtype: int, flags: int, seq: int, family: int, body: bytes = b"") -> bytes:
    payload = struct.pack("=BBH", family, 0, 0) + body  # struct nfgenmsg, NFNETLINK_V0
    return struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload


def read_table() -> Decoded:
    """Every TCP entry of this namespace's table (IPv4 and IPv6: family AF_UNSPEC)."""
    with open_socket() as sock:
        try:
            sock.send(message(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, socket.AF_UNSPEC))
        except OSError as exc:
            raise NetlinkUnavailable(Msg("ctnetlink request failed: {error}",
                                         error=exc.strerror)) from exc
        view = chunk_buffer()
        parts = []
        try:
            for fill in receive(sock, view):
                parts.append(decode(view[:fill]))
        except ParseError as exc:
            raise NetlinkUnavailable(Msg("ctnetlink: {error}", error=exc)) from exc
    other, done, odd = sum(p.other for p in parts), any(p.done for p in parts), \
        sum(p.odd for p in parts)
    # Joined once, each chunk's column freed as it is joined (a million entries: the peak
    # is the chunks plus one column, not twice the table).
    columns = drain_columns([p.columns for p in parts], CT_COLUMNS)
    return Decoded(columns, other, done, odd)


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes((-length) % 4)


def nest(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def _address(hi: int, lo: int) -> tuple[int, bytes]:
    """(family, bytes) of an address in the columns' form (IPv4 mapped)."""
    if hi == 0 and lo >> 32 == 0xFFFF:
        return socket.AF_INET, struct.pack(">I", lo & 0xFFFFFFFF)
    return socket.AF_INET6, struct.pack(">QQ", hi, lo)


def tcp_tuple(kind: int, src: tuple[int, int], dst: tuple[int, int], sport: int,
              dport: int) -> tuple[int, bytes]:
    """(family, CTA_TUPLE_ORIG or _REPLY attribute) of a TCP tuple, addresses as columns."""
    family, s = _address(*src)
    _, d = _address(*dst)
    v4 = family == socket.AF_INET
    return family, nest(kind,
                        nest(CTA_TUPLE_IP, attr(CTA_IP_V4_SRC if v4 else CTA_IP_V6_SRC, s),
                             attr(CTA_IP_V4_DST if v4 else CTA_IP_V6_DST, d)),
                        nest(CTA_TUPLE_PROTO, attr(CTA_PROTO_NUM, bytes([IPPROTO_TCP])),
                             attr(CTA_PROTO_SRC_PORT, struct.pack(">H", sport)),
                             attr(CTA_PROTO_DST_PORT, struct.pack(">H", dport))))


def delete_entry(sock: socket.socket, src: tuple[int, int], dst: tuple[int, int],
                 sport: int, dport: int, zone: int, entry_id: int, seq: int) -> int:
    """Delete the TCP entry with this original tuple and id; 0, or the errno (ENOENT: gone,
    or replaced by another entry of the same tuple, whose id differs: never deleted)."""
    family, tuple_attr = tcp_tuple(CTA_TUPLE_ORIG, src, dst, sport, dport)
    body = (tuple_attr + attr(CTA_ID, struct.pack(">I", entry_id))
            + (attr(CTA_ZONE, struct.pack(">H", zone)) if zone else b""))
    sock.send(message(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, family, body))
    while True:
        reply = sock.recv(65536)
        off = 0
        while off + 20 <= len(reply):
            length, mtype, _f, rseq, _p = struct.unpack_from("=IHHII", reply, off)
            if mtype == 2 and rseq == seq:  # NLMSG_ERROR: the ACK (0) or the failure
                return -struct.unpack_from("=i", reply, off + 16)[0]
            off += max(16, (length + 3) & ~3)
        if not reply:
            return errno.EIO
