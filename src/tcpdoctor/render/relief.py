"""`relieve` for people: the dry run (what would be ended, how, what each side will see)
and the result after --apply."""

from __future__ import annotations

from typing import Any

from tcpdoctor.i18n import _, _f
from tcpdoctor.render.output import printer
from tcpdoctor.util.text import visible

SHOWN = 15  # groups listed; the rest summed


def _seen(row: dict[str, Any]) -> tuple[str, str]:
    """(what the peer sees, what the owner sees) when this group is ended."""
    if row["method"] == "graceful":
        return (_("end of stream (FIN), as after a normal close"),
                _("keeps running; its next read returns 0; the descriptor stays open until it "
                  "closes it"))
    if row["state"] == "TIME_WAIT":
        return _("nothing (the connection had ended)"), _("none: the port is free at once")
    if row["pid"] is None:
        return _("a reset (RST)"), _("none (no process holds it)")
    return (_("a reset (RST)"),
            _("its next call on the socket fails (ECONNABORTED); the descriptor stays open"))


def render_plan(plan: dict[str, Any], apply_command: str | None) -> None:
    _con, out = printer()
    where = plan["netns"] or _("this namespace")
    head = (_f("relieve {finding} in {where}", finding=plan["finding"], where=where)
            if plan["finding"] else _f("relieve in {where}", where=where))
    out(head + (" — " + _("dry run") if apply_command else ""), style="bold")
    if not plan["sockets"]:
        out(_("Nothing to relieve: no socket matched (nothing was changed)."), style="bold green")
    for row in plan["groups"][:SHOWN]:
        owner = f"{row['process']} (pid {row['pid']})" if row["pid"] is not None else _(
            "no owner")
        peer, sees = _seen(row)
        service = (_f("port {port} here, from {peers:,} address(es)", port=row["local_port"],
                      peers=row["peers"]) if row["local_port"] is not None else
                   _f("to {remote}", remote=row["remote"]))
        out(_f("{count:>7,} {state} · {owner} · {service} · {method}", count=row["count"],
               state=row["state"], owner=owner, service=service,
               method=_("graceful") if row["method"] == "graceful" else _("reset")), 2, 10)
        out(_f("peer: {peer}; owner: {owner}", peer=peer, owner=sees), 10, 2)
    rest = plan["groups"][SHOWN:]
    if rest:
        out(_f("{count:>7,} in {n} more groups", count=sum(r["count"] for r in rest),
               n=len(rest)), 2)
    if plan["sockets"]:
        out(_f("Total: {n:,} sockets ({graceful:,} graceful, {reset:,} reset)",
               n=plan["sockets"], graceful=plan["by_method"]["graceful"],
               reset=plan["by_method"]["reset"]), style="bold")
    for r in plan["refused"]:
        out(_f("Refused: {count:,} {state}: {reason}", count=r["count"], state=r["state"],
               reason=r["reason"]), 0, 2, style="yellow")
    if plan["beyond_limit"]:
        out(_f("{n:,} more matched beyond --max: run again afterwards, or raise --max",
               n=plan["beyond_limit"]), 0, 2)
    if apply_command and plan["sockets"]:
        out(_f("Nothing was changed. To end them: {command}", command=apply_command), 0, 2)


def _done(out: Any, result: dict[str, Any], line: str) -> None:
    """The report's path, what was done (line), and the failures by errno."""
    out(_f("Report written before acting: {path}", path=result["report"]), 0, 2)
    out(line, 0, 2, style="bold")
    for name, count in result["errors"].items():
        out(_f("failed: {count:,} with {error}", count=count, error=name), 2, 2)


def render_outcome(result: dict[str, Any]) -> None:
    _con, out = printer()
    _done(out, result, _f("Relieved {relieved:,} of {total:,} sockets in {seconds:.2f} s; "
                          "{vanished:,} vanished before they were reached (never touched); "
                          "{failed:,} failed", relieved=result["relieved"],
                          total=result["sockets"], seconds=result["seconds"],
                          vanished=result["vanished"], failed=result["failed"]))
    if result["still_there"]:
        out(_f("{n:,} relieved sockets are still in the table in their state",
               n=result["still_there"]), 0, 2, style="yellow")
    else:
        out(_("Read again: none of the relieved sockets is left in its state."), 0, 2)
    if result["owner_fds_open"]:
        out(_f("{n:,} descriptors stay open in their owners until the application closes them "
               "(the sockets are shut down; only the numbers are held): the fix in the "
               "application is still the cure.", n=result["owner_fds_open"]), 0, 2)


def render_ghost_plan(plan: dict[str, Any], apply_command: str | None) -> None:
    """relieve --conntrack-ghosts: what would be deleted."""
    _con, out = printer()
    where = plan["netns"] or _("this namespace")
    out(_f("relieve conntrack ghosts in {where}", where=where)
        + (" — " + _("dry run") if apply_command else ""), style="bold")
    if not plan["entries"]:
        out(_("Nothing to relieve: no ghost entry (nothing was changed)."), style="bold green")
        return
    for row in plan["by_namespace"][:SHOWN]:
        out(_f("{count:>7,} from {namespace} · {states}", count=row["entries"],
               namespace=visible(str(row["namespace"])),
               states=", ".join(f"{k} {v:,}" for k, v in row["states"].items())), 2, 10)
    for row in plan["examples"][:5]:
        out(f"{row['state']} {row['original']} (id {row['id']})", 10, 2)
    out(_f("Total: {n:,} of the table's {total:,} entries", n=plan["entries"],
           total=plan["table_entries"]), style="bold")
    if plan["beyond_limit"]:
        out(_f("{n:,} more matched beyond --max: run again afterwards, or raise --max",
               n=plan["beyond_limit"]), 0, 2)
    if apply_command:
        out(_f("Nothing was changed. To delete them: {command}", command=apply_command), 0, 2)


def render_ghost_outcome(result: dict[str, Any]) -> None:
    _con, out = printer()
    _done(out, result, _f("Deleted {deleted:,} of {total:,} entries in {seconds:.2f} s; "
                          "{vanished:,} were gone or replaced before they were reached (never "
                          "touched); {failed:,} failed", deleted=result["deleted"],
                          total=result["entries"], seconds=result["seconds"],
                          vanished=result["vanished"], failed=result["failed"]))
    if result["still_there"]:
        out(_f("{n:,} deleted entries are still in the table", n=result["still_there"]), 0, 2,
            style="yellow")
    else:
        out(_("Read again: none of the deleted entries is left."), 0, 2)
