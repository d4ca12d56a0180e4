"""NETLINK_SOCK_DIAG message layouts, declared as data (offsets from the message start).

Each constant cites the uapi header it mirrors.
"""

from __future__ import annotations

NETLINK_SOCK_DIAG = 4  # include/uapi/linux/netlink.h
SOCK_DIAG_BY_FAMILY = 20  # include/uapi/linux/sock_diag.h
# include/uapi/linux/inet_diag.h: the original request (struct inet_diag_req). The kernel
# serves it with sdiag_family = AF_UNSPEC (inet_diag_dump_compat): one walk of the socket
# hash yields IPv4 and IPv6 sockets, where SOCK_DIAG_BY_FAMILY walks it once per family.
# Replies carry the request's type.
TCPDIAG_GETSOCK = 18
REPLY_TYPES = (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK)
AF_UNSPEC = 0
NLMSG_ERROR = 2  # include/uapi/linux/netlink.h
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_HDRLEN = 16
DONE_LEN = NLMSG_HDRLEN + 4  # NLMSG_DONE carries an int errno
INET_DIAG_INFO = 2  # include/uapi/linux/inet_diag.h, enum INET_DIAG_*
INET_DIAG_SKMEMINFO = 7
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
    ("ifindex", "=u4", 56),  # id.idiag_if
    ("cookie_lo", "=u4", 60),  # id.idiag_cookie[0]: the low 32 bits
    ("cookie_hi", "=u4", 64),  # id.idiag_cookie[1]
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

# INET_DIAG_SKMEMINFO payload: u32 values indexed by enum SK_MEMINFO_*
# (include/uapi/linux/sock_diag.h); offsets in bytes. Kernels since 3.x send at least these.
SKMEM_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("rmem_alloc", "=u4", 0),  # SK_MEMINFO_RMEM_ALLOC
    ("rcvbuf", "=u4", 4),  # SK_MEMINFO_RCVBUF
    ("sndbuf", "=u4", 12),  # SK_MEMINFO_SNDBUF
    ("fwd_alloc", "=u4", 16),  # SK_MEMINFO_FWD_ALLOC
    ("wmem_queued", "=u4", 20),  # SK_MEMINFO_WMEM_QUEUED
    ("optmem", "=u4", 24),  # SK_MEMINFO_OPTMEM
)
SKMEM_MIN = 28

# The attributes asked for with tcp_info, their fields, minimum payload and presence column.
INFO_ATTRS: tuple[tuple[int, tuple[tuple[str, str, int], ...], int, str], ...] = (
    (INET_DIAG_INFO, TCP_INFO_FIELDS, TCP_INFO_MIN, "has_info"),
    (INET_DIAG_SKMEMINFO, SKMEM_FIELDS, SKMEM_MIN, "has_mem"),
)
SKMEM_EXT = 1 << (INET_DIAG_SKMEMINFO - 1)  # idiag_ext bits
INFO_EXT = (1 << (INET_DIAG_INFO - 1)) | SKMEM_EXT

ALL_STATES_MASK = sum(1 << s for s in range(1, 13))  # 1..NEW_SYN_RECV; not BOUND_INACTIVE

CHUNK = 4 << 20  # bytes of replies decoded at once: bounds memory, amortises numpy calls
MAX_DATAGRAM = 64 << 10  # the kernel caps dump datagrams at 32 KiB; keep room for twice that
INET_DIAG_REQ_BYTECODE = 1  # enum inet_diag_req_attrs
