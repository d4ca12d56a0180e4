"""`tcpdoctor tune`: gather the inputs, run the audit, then print, write, apply or roll back."""

from __future__ import annotations

import click

from tcpdoctor.cli.options import SocketOptions, socket_options
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, _, _f, tr
from tcpdoctor.render.output import emit_json, write
from tcpdoctor.status import ExitCode


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    from tcpdoctor.analysis.sysctl_kb import normalize_key

    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise TcpDoctorError(Msg("--set: expected KEY=VALUE, got {item!r}", item=item))
        out[normalize_key(key)] = " ".join(value.split())
    return out


def _rollback(sock: SocketOptions, write_path: str | None, state_dir: str) -> ExitCode:
    from tcpdoctor.diagnose import sysctl_apply

    netns = sock.one_netns
    done = sysctl_apply.rollback(write_path or (None if netns else sysctl_apply.DEFAULT_DROPIN),
                                 netns, state_dir)
    if sock.as_json:
        emit_json({"schema": 1, "rollback": done})
    else:
        write(_f("restored {n} value(s): ", n=len(done["restored"])) + ", ".join(
            f"{k} = {v}" for k, v in done["restored"].items()) + "\n")
    return ExitCode.OK


def _explain(key: str) -> ExitCode:
    from tcpdoctor.analysis.sysctl_kb import BY_KEY, explain, normalize_key

    if normalize_key(key) not in BY_KEY:
        raise TcpDoctorError(Msg("--explain: unknown key {key!r} (known: {known})", key=key,
                                 known=', '.join(BY_KEY)))
    write(f"{tr(explain(key))}\n")
    return ExitCode.OK


@click.command()
@socket_options("tune", no_processes_help="Skip the owner lookup for the evidence "
                "(FD_LIMIT is then not checked).")
@click.option("--audit-file", "audit_files", multiple=True, type=click.Path(dir_okay=False),
              help="Audit this file instead of the system's sysctl configuration "
                   "(repeatable, applied in order).")
@click.option("--write", "write_path", type=click.Path(dir_okay=False),
              help="Write the drop-in to FILE (atomically). With --apply: put it there "
                   "instead of /etc/sysctl.d/99-tcpdoctor.conf.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Write the drop-in and apply its values now, saving every previous value.")
@click.option("--rollback", "do_rollback", is_flag=True,
              help="Restore the values saved by --apply and remove (or restore) the drop-in.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Add a value to the drop-in (validated like the rest, dry run included).")
@click.option("--explain", metavar="KEY", help="Explain one key in plain words and exit.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between counter samples for the evidence (0: no rates).")
@click.option("--state-dir", default="/var/lib/tcpdoctor", show_default=True,
              help="Where --apply keeps its backups.")
@click.option("--prove", "do_prove", is_flag=True,
              help="(root) Replay each diagnosed pattern in throwaway namespaces on this "
                   "kernel, as configured and with each candidate change, and measure which "
                   "change helps; nothing of the host or the target changes.")
@click.option("--finding", "prove_finding", metavar="ID",
              help="With --prove: prove this finding's advice even if it is not present now.")
@click.option("--seconds", "prove_seconds", default=4.0, show_default=True,
              type=click.FloatRange(3, 60),
              help="With --prove: seconds of load per replay of the port patterns.")
def tune(sock: SocketOptions, audit_files: tuple[str, ...], write_path: str | None,
         do_apply: bool, do_rollback: bool, sets: tuple[str, ...], explain: str | None,
         interval: float, state_dir: str, do_prove: bool,
         prove_finding: str | None, prove_seconds: float) -> ExitCode:
    """Audit sysctls against the running kernel; print, write, apply or roll back a drop-in.

    \b
    Dry run by default. Obsolete or harmful settings (tcp_tw_recycle, a tiny
    tcp_max_tw_buckets, syncookies off, ...) are flagged where they are configured;
    values are recommended only with evidence (e.g. somaxconn after accept-queue
    overflows) and never outside the key's valid range.

    \b
    Exit codes: 0 nothing to change, 1 a change is recommended (or a warning),
    2 a harmful value is running, 3 could not run; --write, --apply and --rollback
    exit 0 once done.

    \b
    Examples:
      tcpdoctor tune                             audit this host
      tcpdoctor tune --audit-file /etc/sysctl.conf --json
      tcpdoctor tune --explain net.ipv4.tcp_fin_timeout
      sudo tcpdoctor tune --apply                write /etc/sysctl.d/99-tcpdoctor.conf, apply
      sudo tcpdoctor tune --rollback             restore the saved values
      sudo tcpdoctor tune --prove --netns web    measure which change helps, on this kernel
      sudo tcpdoctor tune --prove --finding ACCEPT_QUEUE_OVERFLOW --json
    """
    if explain:
        return _explain(explain)
    if do_prove or prove_finding:
        if do_apply or do_rollback or write_path:
            raise TcpDoctorError(Msg("--prove measures in a sandbox: it goes without --apply, "
                                     "--rollback and --write"))
        from tcpdoctor.cli.tune_prove import run_prove

        return run_prove(sock, prove_finding, prove_seconds)
    if do_apply and do_rollback:
        raise TcpDoctorError(Msg("--apply and --rollback exclude each other"))
    if do_rollback:
        return _rollback(sock, write_path, state_dir)
    return _audit(sock, audit_files, write_path, do_apply, sets, interval, state_dir)


def _audit(sock: SocketOptions, audit_files: tuple[str, ...], write_path: str | None,
           do_apply: bool, sets: tuple[str, ...], interval: float,
           state_dir: str) -> ExitCode:
    from tcpdoctor.analysis import tune as audit_mod
    from tcpdoctor.diagnose import sysctl_apply
    from tcpdoctor.diagnose.audit import audit_sysctls
    from tcpdoctor.util.atomic import atomic_write

    netns = sock.one_netns
    g = audit_sysctls(sock.target(), audit_files, interval)
    result = g.audit
    values = audit_mod.dropin_values(result, netns is not None)
    values.update(_parse_sets(sets))
    # The same refusal in a dry run as in --write and --apply: never print what would fail.
    sysctl_apply.validate(values, netns, g.ehash)
    header = g.header(Msg("Generated by tcpdoctor tune"))
    text = audit_mod.dropin_text(result, values, header, tr)  # for people: their language
    action = applied = None
    if do_apply:
        dropin = write_path or (None if netns else sysctl_apply.DEFAULT_DROPIN)
        applied = sysctl_apply.apply(values, dropin, text, netns, state_dir, g.ehash)
        action = _f("Applied {n} value(s); drop-in: {dropin}; backup: {backup}", n=len(values),
                    dropin=dropin or _("(none, --netns)"), backup=applied["backup"])
    elif write_path:
        atomic_write(write_path, text)
        action = _f("Wrote {path}:", path=write_path)
    if sock.as_json:
        emit_json({"schema": 1, "kernel": g.kernel, "netns": netns,
                   "entries": [e.as_json() for e in result.entries],
                   "findings": [f.as_json() for f in result.findings],
                   "dropin": audit_mod.dropin_text(result, values, header),
                   "applied": applied, "notes": result.notes})
    else:
        from tcpdoctor.render.report import render_tune

        render_tune(result, g.header(), text, values, action)
    if do_apply or write_path:
        return ExitCode.OK
    # A recommended change is a warning at least: scripts can tell "nothing to change" (0).
    return max(result.exit_code(), ExitCode.WARNING if values else ExitCode.OK)


COMMANDS = (tune,)
