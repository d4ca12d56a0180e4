"""What a live read looks at (no numpy here: commands build it before heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from tcpdoctor.i18n import Msg

SOURCES = ("auto", "netlink", "procfs")  # what --source takes


@dataclass(frozen=True)
class Target:
    """What a live read looks at: the namespace, the source, the address families, and
    whether sockets get their owning processes."""

    netns: str | None = None
    source: str = "auto"
    ipv4: bool = True
    ipv6: bool = True
    owners: bool = True
    proc_root: str = "/proc"
    identity: bool = False  # also each socket's sock_diag cookie and device (relieve)

    def netns_inode(self) -> int | None:
        """The inode of the namespace read (None: the one tcpdoctor runs in)."""
        if self.netns is None:
            return None
        from tcpdoctor.sources.netns import inode

        return inode(self.netns)

    @property
    def where(self) -> str:
        return f"netns {self.netns}" if self.netns else Msg("host")
