"""The floor: a minimal NETLINK_SOCK_DIAG dump of every TCP socket that receives and discards.

No parsing at all; what any tool reading sockets through netlink must pay at least.
"""

import socket
import struct
import sys

NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLMSG_DONE = 4, 20, 3
ALL_STATES = sum(1 << s for s in range(1, 13))


def dump(family: int) -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    body = struct.pack("=BBBBI", family, 6, 0, 0, ALL_STATES) + bytes(48)
    sock.send(struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + body)
    buf = bytearray(65536)
    total = 0
    while True:
        n = sock.recv_into(buf)
        total += n
        # NLMSG_DONE is the last message of the last datagram (20 bytes).
        if n >= 20 and struct.unpack_from("=IH", buf, n - 20) == (20, NLMSG_DONE):
            return total
        if n >= 16 and struct.unpack_from("=H", buf, 4)[0] in (2, NLMSG_DONE):
            return total


if __name__ == "__main__":
    sys.stdout.write(f"{dump(socket.AF_INET) + dump(socket.AF_INET6)} bytes\n")
