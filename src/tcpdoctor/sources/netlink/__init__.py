"""NETLINK_SOCK_DIAG (inet_diag): every TCP socket of a namespace, decoded into columns.

layout: message tables · decode: pure decoding · bytecode: kernel filters · dump: the
socket and its threads.
"""

from tcpdoctor.sources.netlink.decode import decode
from tcpdoctor.sources.netlink.dump import open_socket, read_sockets
from tcpdoctor.sources.netlink.errors import NetlinkUnavailable

__all__ = ["NetlinkUnavailable", "decode", "open_socket", "read_sockets"]
