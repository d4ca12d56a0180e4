"""The TCP iterator's program: one fixed record of raw fields per socket.

bpf_iter_tcp (Linux 5.9+) runs it once for every TCP socket of the reader's network
namespace: full sockets (listeners included), TIME_WAIT and request (SYN_RECV) sockets,
each recognized by the kernel's own bpf_skc_to_* helpers. Offsets come from this kernel's
BTF and every load is checked by the verifier against the struct it reads; the program
copies fields and makes no decision that inet_diag makes (timers, queues, units): those
are made on the columns (bpf_tcp), where they can be read and tested.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

# The record, as the program lays it out on its stack and bpf_seq_write copies it.
RECORD = np.dtype({
    "names": ["jiffies", "addrpair", "daddr6", "saddr6", "cookie", "timeout", "sk_timer",
              "sk_timer_armed", "ino", "portpair", "ifindex", "family", "state", "kind",
              "pending", "retransmits", "probes_out", "uid", "lsndtime", "lrcvtime",
              "rcv_tstamp", "srtt_us", "rcv_nxt", "copied_seq", "write_seq", "snd_una",
              "rmem_alloc", "rcvbuf", "sndbuf", "fwd_alloc", "wmem_queued", "optmem",
              "ack_backlog", "max_ack_backlog"],
    "formats": ["<u8", "<u8", ("<u8", 2), ("<u8", 2), "<u8", "<u8", "<u8", "<u8", "<u8",
                "<u4", "<u4", "<u2", "u1", "u1", "u1", "u1", "u1", "<u4", "<u4", "<u4",
                "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4",
                "<u4", "<u4", "<u4", "<u4"],
    "offsets": [0, 8, 16, 32, 48, 56, 64, 72, 80, 88, 92, 96, 98, 99, 100, 101, 102, 104,
                108, 112, 116, 120, 124, 128, 132, 136, 140, 144, 148, 152, 156, 160, 164,
                168],
    "itemsize": 176,
})
FIELDS: Any = RECORD.fields  # name -> (dtype, offset)
KIND_FULL, KIND_TIME_WAIT, KIND_REQUEST = 1, 2, 3  # `kind`; 0: none of these

# What each record field is read from: (struct the helper returns, member path).
COMMON = (("family", "skc_family"), ("state", "skc_state"), ("portpair", "skc_portpair"),
          ("addrpair", "skc_addrpair"), ("ifindex", "skc_bound_dev_if"))
COMMON_V6 = (("daddr6", "skc_v6_daddr"), ("saddr6", "skc_v6_rcv_saddr"))
_SK = "inet_conn.icsk_inet.sk."
FULL = (("pending", "inet_conn.icsk_pending"), ("retransmits", "inet_conn.icsk_retransmits"),
        ("probes_out", "inet_conn.icsk_probes_out"),
        ("sk_timer", _SK + "sk_timer.expires"), ("sk_timer_armed", _SK + "sk_timer.entry.pprev"),
        ("ino", _SK + "sk_ino"), ("lsndtime", "lsndtime"),
        ("lrcvtime", "inet_conn.icsk_ack.lrcvtime"), ("rcv_tstamp", "rcv_tstamp"),
        ("srtt_us", "srtt_us"), ("rcv_nxt", "rcv_nxt"), ("copied_seq", "copied_seq"),
        ("write_seq", "write_seq"), ("snd_una", "snd_una"),
        ("rmem_alloc", _SK + "sk_backlog.rmem_alloc"), ("rcvbuf", _SK + "sk_rcvbuf"),
        ("sndbuf", _SK + "sk_sndbuf"), ("fwd_alloc", _SK + "sk_forward_alloc"),
        ("wmem_queued", _SK + "sk_wmem_queued"), ("optmem", _SK + "sk_omem_alloc"),
        ("ack_backlog", _SK + "sk_ack_backlog"),
        ("max_ack_backlog", _SK + "sk_max_ack_backlog"))
# The retransmit timer's deadline: a field of its own before Linux 6.15, the timer's since.
TIMEOUT = ("inet_conn.icsk_timeout", "inet_conn.icsk_retransmit_timer.expires")
TIME_WAIT = (("state", "tw_sk.tw_substate"), ("timeout", "tw_sk.tw_timer.expires"))
REQUEST = (("retransmits", "req.req.num_retrans"), ("timeout", "req.req.rsk_timer.expires"))

HELPER_COOKIE, HELPER_JIFFIES, HELPER_SEQ_WRITE = 46, 118, 127
HELPER_TO_TCP, HELPER_TO_TIME_WAIT, HELPER_TO_REQUEST = 137, 138, 139
CTX_META, CTX_SOCK, CTX_UID = 0, 8, 16  # struct bpf_iter__tcp, 8 bytes an argument

Load = tuple[str, int, int]  # (record field, offset in the struct, bytes)
_LDX = {1: 0x71, 2: 0x69, 4: 0x61, 8: 0x79}
_STX = {1: 0x73, 2: 0x6B, 4: 0x63, 8: 0x7B}
_MOV_X, _MOV_K, _ADD_K, _JEQ_K, _JA, _CALL, _EXIT = 0xBF, 0xB7, 0x07, 0x15, 0x05, 0x85, 0x95


def resolve(field: Any) -> dict[str, list[Load]] | None:
    """The loads of each part of the program, from `field(struct, path) -> (offset, size)`
    (btf.Btf.field); None when a member the program needs is missing."""
    out: dict[str, list[Load]] = {}
    for part, struct_name, fields, optional in (
            ("common", "sock_common", COMMON, False), ("v6", "sock_common", COMMON_V6, True),
            ("full", "tcp_sock", FULL, False), ("time_wait", "tcp_timewait_sock", TIME_WAIT,
                                                False),
            ("request", "tcp_request_sock", REQUEST, False)):
        loads = _loads(field, struct_name, fields)
        if loads is None and not optional:  # IPv6 fields exist only with CONFIG_IPV6
            return None
        out[part] = loads or []
    timeout = next((got for got in (field("tcp_sock", p) for p in TIMEOUT) if got), None)
    if timeout is None or timeout[1] != 8:
        return None
    out["full"].append(("timeout", timeout[0], 8))
    return out


def _loads(field: Any, struct_name: str, fields: tuple[tuple[str, str], ...],
           ) -> list[Load] | None:
    """A member of 1-8 bytes is copied into its record field, truncated to the field's
    width (sk_ino's 8 bytes fit) or into its low bytes (the record is zeroed and
    little-endian); an in6_addr takes two 8-byte loads."""
    out: list[Load] = []
    for name, path in fields:
        got = field(struct_name, path)
        want = FIELDS[name][0].itemsize
        if got is None:
            return None
        offset, size = got
        if want == 16 and size == 16:
            out += [(name, offset, 8), (name + "+8", offset + 8, 8)]
        elif want != 16 and size in (1, 2, 4, 8):
            out.append((name, offset, min(size, want)))
        else:
            return None
    return out


def program(loads: dict[str, list[Load]]) -> bytes:
    """The instructions (see the module's docstring); loads from resolve()."""
    rec = RECORD.itemsize
    code: list[Any] = [
        (_MOV_X, 6, 1, 0, 0),                    # r6 = ctx
        (_LDX[8], 7, 6, CTX_SOCK, 0),            # r7 = ctx->sk_common
        ("jeq0", 7, "out"),
        (_MOV_K, 0, 0, 0, 0),
        *[(_STX[8], 10, 0, o - rec, 0) for o in range(0, rec, 8)],  # the record zeroed
        (_CALL, 0, 0, 0, HELPER_JIFFIES), (_STX[8], 10, 0, _at("jiffies") - rec, 0),
        (_LDX[4], 2, 6, CTX_UID, 0), (_STX[4], 10, 2, _at("uid") - rec, 0),
        *_copy(7, loads["common"] + loads["v6"]),
        (_MOV_X, 1, 7, 0, 0), (_CALL, 0, 0, 0, HELPER_COOKIE),
        (_STX[8], 10, 0, _at("cookie") - rec, 0),
    ]
    # Each helper answers the socket as its kind of struct, or NULL: try the next kind.
    for helper, kind, part in ((HELPER_TO_TCP, KIND_FULL, "full"),
                               (HELPER_TO_TIME_WAIT, KIND_TIME_WAIT, "time_wait"),
                               (HELPER_TO_REQUEST, KIND_REQUEST, "request")):
        code += [("label", f"try{kind}"),
                 (_MOV_X, 1, 7, 0, 0), (_CALL, 0, 0, 0, helper), (_MOV_X, 8, 0, 0, 0),
                 ("jeq0", 8, f"try{kind + 1}"),
                 (_MOV_K, 2, 0, 0, kind), (_STX[1], 10, 2, _at("kind") - rec, 0),
                 *_copy(8, loads[part]), ("ja", "write")]
    code += [("label", "try4"), ("label", "write"),
             (_LDX[8], 1, 6, CTX_META, 0), (_LDX[8], 1, 1, 0, 0),  # r1 = ctx->meta->seq
             (_MOV_X, 2, 10, 0, 0), (_ADD_K, 2, 0, 0, -rec), (_MOV_K, 3, 0, 0, rec),
             (_CALL, 0, 0, 0, HELPER_SEQ_WRITE),
             ("label", "out"), (_MOV_K, 0, 0, 0, 0), (_EXIT, 0, 0, 0, 0)]
    return _assemble(code)


def _at(name: str) -> int:
    base, _, extra = name.partition("+")
    return int(FIELDS[base][1]) + (int(extra) if extra else 0)


def _copy(src: int, loads: list[Load]) -> list[Any]:
    """Load each field from the struct in register src and store it into the record."""
    rec = RECORD.itemsize
    out: list[Any] = []
    for name, offset, size in loads:
        out += [(_LDX[size], 2, src, offset, 0), (_STX[size], 10, 2, _at(name) - rec, 0)]
    return out


def _assemble(code: list[Any]) -> bytes:
    """Instructions with labels: ("label", name), ("jeq0", reg, label), ("ja", label)."""
    where: dict[str, int] = {}
    pc = 0
    for item in code:
        if item[0] == "label":
            where[item[1]] = pc
        else:
            pc += 1
    out, pc = [], 0
    for item in code:
        if item[0] == "label":
            continue
        if item[0] == "jeq0":
            out.append(_insn(_JEQ_K, item[1], 0, where[item[2]] - pc - 1, 0))
        elif item[0] == "ja":
            out.append(_insn(_JA, 0, 0, where[item[1]] - pc - 1, 0))
        else:
            out.append(_insn(*item))
        pc += 1
    return b"".join(out)


def _insn(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
