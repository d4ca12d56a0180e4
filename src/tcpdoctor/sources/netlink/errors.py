"""The error that makes a live read fall back from netlink to /proc/net/tcp."""

from __future__ import annotations

from tcpdoctor.errors import TcpDoctorError


class NetlinkUnavailable(TcpDoctorError):
    """sock_diag cannot be used here (no inet_diag, seccomp, ...): fall back to procfs."""
