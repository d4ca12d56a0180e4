"""`relieve --conntrack-ghosts`: the dry run, or the report, the deletes and a re-read."""

from __future__ import annotations

import errno
import os
import time

from tcpdoctor.cli.options import SocketOptions
from tcpdoctor.status import ExitCode


def relieve_ghosts(sock: SocketOptions, ports: tuple[int, ...], remotes: tuple[str, ...],
                   limit: int, rate: float, do_apply: bool, report_path: str | None,
                   state_dir: str) -> ExitCode:
    from tcpdoctor.cli.relieve import report_result, show_plan
    from tcpdoctor.relief import conntrack as ghosts
    from tcpdoctor.relief.act import default_report_path, failures, outcome_counts
    from tcpdoctor.render.relief import render_ghost_outcome, render_ghost_plan

    target = sock.target(owners=False)
    plan, read_notes = ghosts.make_plan(target, sock.netns[0] if sock.netns else None, limit,
                                        ports, remotes)
    summary = ghosts.plan_json(plan)
    if not do_apply or not summary["entries"]:
        show_plan(sock, summary, read_notes, render_ghost_plan, dry_run=not do_apply)
        return ExitCode.OK
    path = report_path or default_report_path(state_dir)
    ghosts.write_report(plan, path, {"schema": 1, "netns": plan.table.netns,
                                     "conntrack_ghosts": True, "pid": os.getpid(),
                                     "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if not sock.as_json:
        render_ghost_plan(summary, None)
    started = time.perf_counter()
    errnos = ghosts.carry_out(plan, target, rate)
    result = {"report": os.path.abspath(path), "entries": int(errnos.shape[0]),
              "seconds": round(time.perf_counter() - started, 3),
              **outcome_counts(errnos, (errno.ENOENT,), "deleted"),
              "errors": failures(errnos, (errno.ENOENT,)),
              "still_there": ghosts.still_there(plan, target)}
    return report_result(sock, summary, result, render_ghost_outcome)
