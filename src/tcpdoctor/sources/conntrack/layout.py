"""ctnetlink message layouts, declared as data.

Each constant cites the uapi header it mirrors (include/uapi/linux/netfilter/
nfnetlink.h, nfnetlink_conntrack.h).
"""

from __future__ import annotations

NETLINK_NETFILTER = 12  # include/uapi/linux/netlink.h
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0  # enum cntl_msg_types; a dump answers with NEW messages
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
NLM_F_ACK = 0x4
HEADER = 20  # struct nlmsghdr (16) + struct nfgenmsg (family, version, res_id)
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
NLA_F_NESTED = 0x8000

# enum ctattr_type, ctattr_tuple, ctattr_ip, ctattr_l4proto, ctattr_protoinfo(_tcp)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO = 1, 2, 3, 4
CTA_TIMEOUT, CTA_MARK, CTA_ID, CTA_ZONE = 7, 8, 12, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
IPPROTO_TCP = 6

# Where each column's value sits: a path of attribute types from the message's top level,
# and how it is read (be32 / be16 / u8 / an address of 4 or 16 bytes).
SCALARS: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("status", (CTA_STATUS,), "be32"),
    ("timeout", (CTA_TIMEOUT,), "be32"),
    ("mark", (CTA_MARK,), "be32"),
    ("id", (CTA_ID,), "be32"),
    ("zone", (CTA_ZONE,), "be16"),
    ("ct_state", (CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE), "u8"),
    ("proto", (CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_NUM), "u8"),
    *((f"{d}_{p}", (t, CTA_TUPLE_PROTO, a), "be16")
      for d, t in (("orig", CTA_TUPLE_ORIG), ("reply", CTA_TUPLE_REPLY))
      for p, a in (("sport", CTA_PROTO_SRC_PORT), ("dport", CTA_PROTO_DST_PORT))),
)
ADDRESSES: tuple[tuple[str, int, int, int], ...] = tuple(
    (f"{d}_{end}", t, v4, v6)
    for d, t in (("orig", CTA_TUPLE_ORIG), ("reply", CTA_TUPLE_REPLY))
    for end, v4, v6 in (("src", CTA_IP_V4_SRC, CTA_IP_V6_SRC),
                        ("dst", CTA_IP_V4_DST, CTA_IP_V6_DST)))
