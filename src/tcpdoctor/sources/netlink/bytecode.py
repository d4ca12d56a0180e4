"""inet_diag filter bytecode: the kernel-side filter that splits one dump in two halves."""

from __future__ import annotations

import struct

# inet_diag filter bytecode (include/uapi/linux/inet_diag.h, net/ipv4/inet_diag.c):
# struct inet_diag_bc_op {u8 code; u8 yes; u16 no;}; a port comparison is followed by a
# second op whose `no` holds the port. The kernel runs it per socket: a true test moves by
# `yes`, a false one by `no`; JMP always moves by `no`. Ending exactly on the end accepts,
# 4 bytes past it rejects. The audit (inet_diag_bc_audit) walks the `yes` chain only and
# requires every `no` target to lie on it, hence a linear `yes` chain and a JMP to accept.
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


