"""The netfilter connection-tracking table of a namespace, as columns.

layout: message tables · decode: ctnetlink replies to columns · dump: the socket, the dump
and deletions · text: `conntrack -L` and /proc/net/nf_conntrack lines.
"""

from __future__ import annotations

import os

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.conntrack import ConntrackTable
from tcpdoctor.sources import netns, procfs
from tcpdoctor.sources.netlink.errors import NetlinkUnavailable


class ConntrackUnavailable(TcpDoctorError):
    """Neither ctnetlink nor /proc/net/nf_conntrack could be read here."""


def read(netns_name: str | None = None, proc_root: str = "/proc") -> ConntrackTable:
    """The TCP entries of the namespace's table: ctnetlink, else /proc/net/nf_conntrack."""
    table = netns.run_in(netns_name, lambda: read_here(proc_root))
    table.netns = netns_name
    return table


def read_here(proc_root: str) -> ConntrackTable:
    from tcpdoctor.sources.conntrack import dump, text

    try:
        got = dump.read_table()
    except NetlinkUnavailable as exc:
        path = f"{procfs.net_dir(proc_root)}/nf_conntrack"
        try:
            table = text.read_file(path)
        except OSError as oserr:
            why = Msg("needs root (CAP_NET_ADMIN)") if os.geteuid() else oserr.strerror
            raise ConntrackUnavailable(Msg(
                "conntrack table unreadable: {netlink}; {path}: {error}", netlink=str(exc),
                path="/proc/net/nf_conntrack", error=why)) from exc
        table.notes.append(Msg("conntrack read from /proc/net/nf_conntrack ({why})",
                               why=str(exc)))
        return table
    table = ConntrackTable(got.columns, "netlink", other_entries=got.other)
    if got.odd:
        table.notes.append(Msg("{n} conntrack entries of an unrecognised layout not read",
                               n=got.odd))
    return table
