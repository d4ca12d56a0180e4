"""`conntrack`: the connection-tracking table joined with the sockets of every namespace."""

from __future__ import annotations

import click

from tcpdoctor.cli.options import SocketOptions, socket_options
from tcpdoctor.render.output import emit_json, notes

NOT_USED = {"-4": "the table holds both families; --by source narrows it",
            "-6": "the table holds both families; --by source narrows it"}


@click.command()
@socket_options("conntrack", not_used=NOT_USED,
                netns_help="The namespace whose table is read (`all`: every one that has a "
                           "table); the sockets of every namespace are joined with it.")
@click.option("--by", "by", default=None, metavar="KEYS",
              help="Group entries by state, namespace, pod, process (the originator's "
                   "owner), destination, source, translated-source (comma-separated).")
@click.option("--ghosts", "list_ghosts", is_flag=True,
              help="List the ghost entries (open entries whose local socket is gone).")
@click.option("-n", "--top", "limit", default=10, show_default=True,
              type=click.IntRange(1, 10000), help="Rows per list.")
def conntrack(sock: SocketOptions, by: str | None, list_ghosts: bool, limit: int) -> None:
    """The conntrack table joined with the sockets: who fills it, ghosts, SNAT ports.

    Every TCP entry of the table is matched with the socket at each of its ends that
    lives on this host (its address belongs to one of the host's namespaces). An entry
    in an open state whose local socket is gone is a ghost: it keeps a slot, and behind
    NAT a source port, until its timeout. Needs root (CAP_NET_ADMIN).

    \b
    Examples:
      tcpdoctor conntrack                          states, top pods, ghosts, SNAT ports
      tcpdoctor conntrack --by pod,state           which pod fills the table
      tcpdoctor conntrack --by process             which process opened the entries
      tcpdoctor conntrack --by destination -n 5    the busiest destinations
      tcpdoctor conntrack --ghosts                 entries whose sockets are gone
      tcpdoctor conntrack --netns all --json       every namespace's table, for scripts
    """
    from tcpdoctor.analysis import conntrack as ct
    from tcpdoctor.sources.conntrack.gather import gather

    keys = ct.parse_by(by) if by else None
    target = sock.target(every_netns=True)
    spec = sock.netns[0] if sock.netns else None
    got = gather(target, spec)
    sections = []
    for space, table in got.tables:
        joined = ct.join(table, got.spaces, got.addresses, space, got.sockets.columns,
                         got.sockets.process_names)
        sections.append(ct.report(joined, keys, limit if list_ghosts else min(limit, 10),
                                  got.limits.get(space, {}), got.ranges.get(space)))
        sections[-1]["limits"] = got.limits.get(space, {})
    if sock.as_json:
        emit_json({"tables": sections, "notes": [str(n) for n in got.notes]})
    else:
        from tcpdoctor.i18n import Msg
        from tcpdoctor.render import conntrack as view

        # Across every namespace, the empty tables are only counted.
        shown = [s for s in sections if s["entries"] or spec != "all"]
        for section in shown:
            view.table_report(section, keys, list_ghosts)
        empty = len(sections) - len(shown)
        notes(got.notes + ([Msg("{n} namespace(s) with an empty conntrack table not shown",
                                n=empty)] if empty else []))


COMMANDS = [conntrack]
