"""`tcpdoctor relieve`: end the sockets a finding names, gracefully where possible; a dry
run unless --apply."""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Any

import click

from tcpdoctor.cli.options import SocketOptions, socket_options, threshold_options
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.render.output import emit_json, notes
from tcpdoctor.status import ExitCode


@click.command()
@click.argument("finding", required=False, metavar="[FINDING_ID]")
@socket_options("relieve", not_used={
    "--source": "ending a socket needs its netlink cookie (always read with netlink)"})
@click.option("--state", "states", multiple=True,
              help="Only these states (repeatable), as in `top`: close-wait, time-wait, ...")
@click.option("--port", "ports", multiple=True, type=click.IntRange(0, 65535),
              help="Only sockets with this local or remote port (repeatable).")
@click.option("--ip", "--remote", "remotes", multiple=True, metavar="ADDR[/PREFIX]",
              help="Only sockets whose remote address is in ADDR[/PREFIX] (repeatable).")
@click.option("--pid", "pids", multiple=True, type=int, help="Only sockets of this pid.")
@click.option("--process", "processes", multiple=True, metavar="NAME",
              help="Only sockets of processes with this name (repeatable).")
@click.option("--reset", is_flag=True,
              help="End owned sockets with a RST (SOCK_DESTROY) instead of a graceful shutdown.")
@click.option("--max", "limit", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="End at most N sockets in this run.")
@click.option("--rate", default=1000.0, show_default=True, type=click.FloatRange(min=1),
              help="Sockets ended per second at most.")
@click.option("--conntrack-ghosts", "ghosts", is_flag=True,
              help="Delete conntrack entries whose local socket is gone (`tcpdoctor conntrack "
                   "--ghosts` lists them), by tuple and entry id; --port and --ip narrow them.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Do it (the default is a dry run that changes nothing).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Where --apply writes its report (before acting) [default: STATE-DIR/relief/"
                   "relief-TIME-PID.json].")
@click.option("--state-dir", default="/var/lib/tcpdoctor", show_default=True,
              type=click.Path(file_okay=False), help="Where default reports go.")
@threshold_options
def relieve(sock: SocketOptions, finding: str | None, states: tuple[str, ...],
            ports: tuple[int, ...], remotes: tuple[str, ...], pids: tuple[int, ...],
            processes: tuple[str, ...], reset: bool, limit: int, rate: float, ghosts: bool,
            do_apply: bool, report_path: str | None, state_dir: str,
            thresholds: Any) -> ExitCode:
    """End exactly the sockets a finding names, safely: stop the bleeding while the fix ships.

    A fresh diagnosis of the namespace picks the sockets of FINDING_ID (CLOSE_WAIT_LEAK,
    IDLE_ESTABLISHED, EPHEMERAL_PORT_EXHAUSTION, ORPHAN_PRESSURE, FIN_WAIT2_BUILDUP); the
    filters narrow them, or pick sockets on their own. A socket a process holds is shut
    down through a duplicate of its descriptor (the peer reads end of stream; the process
    keeps running); one without an owner, or with --reset, is ended by the kernel
    (SOCK_DESTROY: a RST; TIME_WAIT removed), by 4-tuple and cookie, so that a socket that
    replaced it is never touched. Listeners and tcpdoctor's own sockets are always refused.

    Without --apply nothing changes. With it, a report of every socket is written before
    the first one is touched, and the table is read again afterwards.

    \b
    Exit: 0 done (or a dry run, or nothing matched); 1 some sockets vanished or failed;
          3 refused (rights, kernel) or an error.

    \b
    Examples:
      tcpdoctor relieve CLOSE_WAIT_LEAK --netns web        what would be ended (dry run)
      tcpdoctor relieve CLOSE_WAIT_LEAK --netns web --apply
      tcpdoctor relieve EPHEMERAL_PORT_EXHAUSTION --apply  TIME_WAIT to the exhausted service
      tcpdoctor relieve --state close-wait --process java --max 500 --rate 100
      tcpdoctor relieve IDLE_ESTABLISHED --ip 10.0.0.0/8 --reset --json
      tcpdoctor relieve --conntrack-ghosts --netns nat-gw  conntrack entries without sockets
    """
    from tcpdoctor import relief
    from tcpdoctor.model.tcp import parse_state_option
    from tcpdoctor.relief.plan import Choice

    if sock.all_netns:
        raise TcpDoctorError(Msg("relieve acts on one namespace per run: name it with --netns"))
    if ghosts:
        if finding or states or pids or processes or reset:
            raise TcpDoctorError(Msg("--conntrack-ghosts takes only --port, --ip, --max, "
                                     "--rate, --netns and --apply"))
        from tcpdoctor.cli.relieve_ghosts import relieve_ghosts

        return relieve_ghosts(sock, ports, remotes, limit, rate, do_apply, report_path,
                              state_dir)
    parse_state_option(states, groups=True)
    choice = Choice(finding.upper() if finding else None, states, ports, remotes, pids,
                    processes, reset, limit)
    target = sock.target(owners=not sock.no_processes)
    plan, read_notes = relief.make_plan(target, choice, thresholds)
    summary = relief.plan_json(plan)
    if not do_apply:
        show_plan(sock, summary, read_notes)
        return ExitCode.OK
    return _apply(sock, target, plan, summary, reset, rate, report_path, state_dir)


def show_plan(sock: SocketOptions, summary: dict[str, Any], read_notes: list[str],
              render: Any = None, dry_run: bool = True) -> None:
    """The plan as JSON or for people (render: relieve's sockets by default), with the
    command that would apply it when this is a dry run."""
    if sock.as_json:
        emit_json({"schema": 1, "dry_run": True, **summary})
        return
    if render is None:
        from tcpdoctor.render.relief import render_plan as render

    render(summary, _apply_command() if dry_run else None)
    notes(read_notes)


def _apply_command() -> str:
    args = [a for a in sys.argv[1:] if a != "--json"]
    return "tcpdoctor " + " ".join(shlex.quote(a) for a in [*args, "--apply"])


def _apply(sock: SocketOptions, target: Any, plan: Any, summary: dict[str, Any],
           reset: bool, rate: float, report_path: str | None, state_dir: str) -> ExitCode:
    from tcpdoctor import relief
    from tcpdoctor.relief import act

    if not len(plan):
        show_plan(sock, summary, [])
        return ExitCode.OK
    problems = act.preflight(plan, reset)
    if problems:
        raise TcpDoctorError(problems[0])
    act.find_fds(plan)
    path = report_path or act.default_report_path(state_dir)
    act.write_report(plan, path, {"schema": 1, "netns": plan.netns, "finding": plan.finding,
                                  "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "pid": os.getpid()})
    if not sock.as_json:
        from tcpdoctor.render.relief import render_plan

        render_plan(summary, None)
    started = time.perf_counter()
    errnos = act.carry_out(plan, rate)
    seconds = time.perf_counter() - started
    ended = errnos == 0
    result = {"report": os.path.abspath(path), "sockets": len(plan), "seconds": round(seconds, 3),
              **act.outcome_counts(errnos), "errors": act.failures(errnos),
              "still_there": relief.still_there(plan, ended, target),
              "owner_fds_open": act.owner_fds_open(plan, ended)}
    from tcpdoctor.render.relief import render_outcome

    return report_result(sock, summary, result, render_outcome)


def report_result(sock: SocketOptions, summary: dict[str, Any], result: dict[str, Any],
                  render: Any) -> ExitCode:
    """What --apply did, as JSON or for people; 1 when anything vanished, failed or stays."""
    if sock.as_json:
        emit_json({"schema": 1, "dry_run": False, **summary, "result": result})
    else:
        render(result)
    bad = result["vanished"] or result["failed"] or result["still_there"]
    return ExitCode.WARNING if bad else ExitCode.OK


COMMANDS = (relieve,)
