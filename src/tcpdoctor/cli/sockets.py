"""`states`, `top`, `snapshot` and `diff`: counting, grouping, saving and comparing sockets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from tcpdoctor.cli.options import SocketOptions, other_namespaces_hint, socket_options
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, _, _f, tr
from tcpdoctor.render.output import emit_json, notes, write
from tcpdoctor.status import ExitCode

if TYPE_CHECKING:
    from tcpdoctor.analysis.cost import SocketCost
    from tcpdoctor.model.kernel_state import KernelState
    from tcpdoctor.model.snapshot import Snapshot
    from tcpdoctor.sources.target import Target


@click.command()
@socket_options("states", no_processes_help="states never looks up owners (accepted so "
                "that scripts can pass one option set to every command).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
@click.option("--cost", is_flag=True,
              help="Add each state's kernel memory and file descriptors to the table or CSV "
                   "(--json always carries them, under \"cost\"; with --netns all, buffer "
                   "memory only with --cost).")
def states(sock: SocketOptions, as_csv: bool, cost: bool) -> None:
    """Counts per TCP state, plus total, established and non_established.

    \b
    All 11 kernel states are listed, zeros included; request sockets (NEW_SYN_RECV) count
    as SYN_RECV and LISTEN counts in total, as `ss -tan` lists them. Memory is the slab
    objects (sizes from /proc/slabinfo, root only) plus the buffers (`ss -m`'s skmem).

    \b
    Examples:
      tcpdoctor states
      tcpdoctor states --cost                   memory and fds per state
      tcpdoctor states --json | jq .non_established
      tcpdoctor states --netns blue -4 --csv
      tcpdoctor states --netns all --json      summed over every namespace, and per namespace
    """
    from tcpdoctor.analysis.cost import by_state, priced_by_counts
    from tcpdoctor.sources.live import take_snapshot

    t = sock.target(owners=False, every_netns=True)
    want = frozenset({"state", "family", "inode"})
    if sock.all_netns:
        from tcpdoctor.sources import every_netns

        # Buffers (skmem) double each namespace's dump: over a sweep only with --cost.
        snap = every_netns.merged(t, "all", mem=cost, want=want)
    else:
        # The census asks the kernel for buffers (skmem) only when they are shown: --cost.
        snap = take_snapshot(t.source, t.netns, t.ipv4, t.ipv6, want=want, mem=cost)
        notes([h for h in [other_namespaces_hint(sock)] if h])
    summary = snap.summary()
    priced: dict[str, Any] = {}
    if cost:
        sc = _priced(snap, t)
        priced = {"total": sc.of(), "by_state": by_state(snap, sc),
                  "objects_priced": sc.objects_known, "buffers_measured": sc.buffers_known}
    elif sock.as_json:  # JSON always prices the objects, from counts: buffers_measured false
        priced = priced_by_counts(snap, _kernel(snap, t))
    spaces = {}
    if sock.all_netns:
        from tcpdoctor.analysis.groups import space_summaries

        spaces = {"namespaces": space_summaries(snap)}
    if sock.as_json:
        emit_json({"schema": 1, "source": snap.source, **summary, "cost": priced, **spaces})
    else:
        from tcpdoctor.render import tables

        if as_csv:
            tables.states_csv(summary, priced if cost else None)
        else:
            where = _("every network namespace") if sock.all_netns else tr(t.where)
            tables.states_table(summary, _f("TCP sockets on {host} ({where}, {source})",
                                            host=snap.host, where=where, source=snap.source),
                                priced if cost else None)
            if spaces:
                tables.spaces_table(spaces["namespaces"])
    notes(snap.notes)


def _priced(snap: Snapshot, target: Target) -> SocketCost:
    """What each socket of a live snapshot costs (slab sizes read now, from the host)."""
    from tcpdoctor.analysis.cost import socket_cost

    return socket_cost(snap, _kernel(snap, target))


def _kernel(snap: Snapshot, target: Target) -> KernelState:
    """The slab sizes that price the sockets (noted when /proc/slabinfo is unreadable)."""
    from tcpdoctor.sources.live import read_kernel

    kernel = read_kernel(target, with_sysctls=False)
    if not kernel.slab:
        snap.notes.append(Msg("socket object sizes unknown (/proc/slabinfo needs root): memory "
                              "counts buffers only"))
    return kernel


@click.command()
@socket_options("top")
@click.option("--by", "by", default="remote-ip", show_default=True,
              help="Grouping, comma-separated: remote-ip, remote-net, local-port, remote-port, "
                   "service-port (listening port, else remote port), process, state, netns, "
                   "pod (with --netns all).")
@click.option("--state", "state_filter", multiple=True,
              help="Only these states (repeatable): time-wait, close-wait, ..., non-established.")
@click.option("--port", "ports", multiple=True, type=click.IntRange(0, 65535),
              help="Only sockets with this local or remote port (repeatable).")
@click.option("--ip", "ips", multiple=True,
              help="Only sockets whose remote address is in ADDR[/PREFIX] (repeatable).")
@click.option("--pid", "pids", multiple=True, type=int, help="Only sockets of this pid.")
@click.option("-n", "--top", "limit", default=10, show_default=True,
              type=click.IntRange(min=1),
              help="Show the N largest groups; the rest is counted in 'other'.")
@click.option("--prefix", "prefix", default="24,64", show_default=True,
              help="Prefix lengths for remote-net: IPv4,IPv6.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
@click.option("--cost", is_flag=True,
              help="Add each group's kernel memory and file descriptors, and rank the groups "
                   "by memory instead of count.")
def top(sock: SocketOptions, by: str, state_filter: tuple[str, ...], ports: tuple[int, ...],
        ips: tuple[str, ...], pids: tuple[int, ...], limit: int, prefix: str,
        as_csv: bool, cost: bool) -> None:
    """The largest groups of sockets, by remote IP, network, port, process or state.

    \b
    Examples:
      tcpdoctor top --by remote-ip,state -n 5     who holds the most connections, per state
      tcpdoctor top --by process --state close-wait   which process leaks CLOSE_WAIT
      tcpdoctor top --by local-port --state time-wait
      tcpdoctor top --ip 203.0.113.7 --by state   every connection of one client
      tcpdoctor top --by remote-net --prefix 16,48
      tcpdoctor top --by process,state --cost   which process's sockets hold the memory
      tcpdoctor top --netns all --by netns,state   which namespace (pod, container) holds what
    """
    from tcpdoctor.analysis import groups
    from tcpdoctor.model.tcp import parse_state_option
    from tcpdoctor.sources.live import take_snapshot

    keys = groups.parse_by(by)
    parse_state_option(state_filter, groups=True)  # a bad --state before anything is read
    p4, p6 = _parse_prefix(prefix)
    if "process" in keys and sock.no_processes:
        raise TcpDoctorError(Msg("--by process needs owner lookup (drop --no-processes)"))
    want_owner = ("process" in keys or bool(pids)) and not sock.no_processes
    t = sock.target(owners=want_owner, every_netns=True)
    if sock.all_netns:
        from tcpdoctor.sources import every_netns

        snap = every_netns.merged(t, "all", mem=cost)
    else:
        snap = take_snapshot(t.source, t.netns, t.ipv4, t.ipv6, with_owners=t.owners, mem=cost)
        notes([h for h in [other_namespaces_hint(sock)] if h])
    snap = snap.select(groups.filter_mask(snap, list(state_filter), list(ports), list(ips),
                                          list(pids)))
    result = groups.group(snap, keys, limit, p4, p6, _priced(snap, t) if cost else None)
    if sock.as_json:
        emit_json(result.as_json())
    else:
        from tcpdoctor.render import tables

        if as_csv:
            tables.groups_csv(result)
        else:
            tables.groups_table(result, _f("Top {n} by {keys} (sockets matched: {total:,})",
                                           n=limit, keys=", ".join(_(k) for k in keys),
                                           total=result.total))
    notes(snap.notes)


@click.command()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write (gzip-compressed when it ends in .gz).")
@socket_options("snapshot")
def snapshot(sock: SocketOptions, output: str) -> None:
    """Save every socket, owners, sysctls and counters to a versioned JSON file.

    \b
    Examples:
      tcpdoctor snapshot -o before.json.gz
      tcpdoctor analyze before.json.gz
      tcpdoctor diff before.json.gz after.json.gz
      tcpdoctor snapshot --netns all -o host.json.gz    every namespace in one file
    """
    from tcpdoctor.model import snapshot_file
    from tcpdoctor.sources.live import LiveSample, sample
    from tcpdoctor.util.atomic import atomic_write_bytes

    t = sock.target(every_netns=True)
    if sock.all_netns:  # every namespace in one file; the kernel figures are the host's
        from tcpdoctor.sources import every_netns
        from tcpdoctor.sources.live import read_kernel

        # each namespace's own figures (sysctls, counters) are saved with it
        snap = every_netns.merged(t, "all", info=True, kernel=True)
        got = LiveSample(snap, read_kernel(t), None, 0.0, None)
    else:
        got = sample(t, 0.0)
        notes([h for h in [other_namespaces_hint(sock)] if h])
    atomic_write_bytes(output, snapshot_file.to_bytes(output, got.snap, got.kernel))
    if sock.as_json:
        emit_json({"schema": 1, "path": output, "sockets": got.snap.count(),
                   "source": got.snap.source, "netns": got.snap.netns})
    else:
        sys.stderr.write(_f("wrote {n:,} sockets to {path}", n=got.snap.count(), path=output)
                         + "\n")
    notes(got.snap.notes)


@click.command()
@click.argument("before")
@click.argument("after")
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout.")
@click.option("-n", "--top", "limit", default=5, show_default=True,
              type=click.IntRange(min=1),
              help="Groups to show per dimension.")
def diff(before: str, after: str, as_json: bool, limit: int) -> ExitCode:
    """Compare two snapshots (or any inputs `analyze` reads): states, top movers, findings,
    sysctls.

    \b
    Examples:
      tcpdoctor snapshot -o before.json.gz; (tune, deploy...); tcpdoctor snapshot -o after.json.gz
      tcpdoctor diff before.json.gz after.json.gz
    """
    from tcpdoctor.analysis.compare import compare
    from tcpdoctor.cli.check import require_sockets
    from tcpdoctor.sources import offline

    a, b = offline.load(before), offline.load(after)
    for snap, *_rest in (a, b):
        require_sockets(snap)
    result = compare((a[0], a[1]), (b[0], b[1]), limit)
    if as_json:

        emit_json(result)
    else:
        from tcpdoctor.render.diff import render_text

        write(render_text(result))
    notes([n for snap in (a[0], b[0]) if snap.unparsed for n in snap.notes])
    # A comparison of inputs that lost rows is incomplete: never 0, as with analyze.
    return ExitCode.WARNING if a[0].unparsed or b[0].unparsed else ExitCode.OK


def _parse_prefix(text: str) -> tuple[int, int]:
    try:
        p4, p6 = (int(x) for x in text.split(","))
    except ValueError:
        raise TcpDoctorError(Msg("--prefix: expected IPV4,IPV6 prefix lengths, got {text!r}",
                                 text=text)) from None
    if not (0 <= p4 <= 32 and 0 <= p6 <= 128):
        raise TcpDoctorError(Msg("--prefix: lengths out of range in {text!r} (0-32, 0-128)",
                                 text=text))
    return p4, p6


COMMANDS = (states, top, snapshot, diff)
