"""`trace` output: the event stream (one line per state change) and the summary."""

from __future__ import annotations

from typing import Any

from tcpdoctor.i18n import _, _f, tr

STREAM_HEAD = (f"{'TIME(s)':>9} {'PID':>7} {'COMM':<15} {'LOCAL':<22} {'REMOTE':<22} "
               f"{'OLD -> NEW':<26} {'MS':>9}")


def stream_line(e: dict[str, Any]) -> str:
    change = f"{e['old']} -> {e['new']}"
    ms = "" if e["ms"] is None else f"{e['ms']:.3f}"
    return (f"{e['time']:9.3f} {e['pid']:>7} {e['comm'][:15]:<15} {e['local']:<22} "
            f"{e['remote']:<22} {change:<26} {ms:>9}")


def _counts(d: dict[str, int], words: bool = False) -> str:
    """'td-client 60, php 3'; words: the keys are tcpdoctor's words (local, refused...)."""
    return ", ".join(f"{_(k) if words else k} {v}" for k, v in d.items()) or "-"


def summary_lines(s: dict[str, Any]) -> list[str]:
    out = [_f("Traced {seconds:.1f} s: {events:,} events, {lost:,} lost", seconds=s["seconds"],
              events=s["events"], lost=s["events_lost"])
           + (_f(", {n:,} sockets not followed (table full)", n=s["sockets_dropped"])
              if s["sockets_dropped"] else "")]
    if s.get("note"):
        out.append("  " + _f("Note: {note}.", note=s["note"]))
    if s["events_lost"]:
        out.append("  " + _("Some events were lost (ring-buffer overrun): counts below are "
                            "low."))
    for title, rows, key in ((_("Connections this host opened, by remote service:"),
                              s["remote_services"], "service"),
                             (_("Connections this host accepted, by local port:"),
                              s["local_ports"], "port")):
        out.append("")
        out.append(title)
        if not rows:
            out.append("  " + _("none completed during the trace"))
        for r in rows:
            out += _service_lines(r, key)
    failures = s.get("connect_failures") or []
    if failures:
        out.append("")
        out.append(_("connect() refused for want of a local port (EADDRNOTAVAIL; no kernel "
                     "counter records these):"))
        out.extend("  " + _f("{destination}: {count:,} by {process} (pid {pid})", **f)
                   for f in failures)
    out.append("")
    rps = s["resets_per_second"]
    out.append(_f("Resets: {sent}/s sent, {received}/s received", sent=rps["sent"],
                  received=rps["received"]))
    out.extend("  " + _f("sent {count:,} from {local} ({reason})", count=r["count"],
                         local=r["local"], reason=r["reason"]) for r in s["resets_sent"][:5])
    out.extend("  " + _f("received {count:,} from {peer}", count=r["count"], peer=r["peer"])
               for r in s["resets_received"][:5])
    if s["retransmits"]:
        out.append(_("Retransmits: ") + _(", ").join(f"{r['peer']} {r['count']:,}"
                                                      for r in s["retransmits"][:5]))
    if s["state_time_share"]:
        out.append(_("Time in states: ") + _(", ").join(
            f"{k} {v:.0%}" for k, v in list(s["state_time_share"].items())[:6]))
    return [str(tr(line)) for line in out]


def _service_lines(r: dict[str, Any], key: str) -> list[str]:
    life = r["lifetime_ms"]
    out = ["  " + _f("{service}: {opened:,} ({rate:,}/s) by {processes}", service=r[key],
                     opened=r["opened"], rate=r["per_second"],
                     processes=_counts(r["processes"]))]
    if r["failed"]:
        out.append("    " + _f("failed: {counts}", counts=_counts(r["failed"], True)))
    if r["closed_first_by"]:
        out.append("    " + _f("lifetime p50 {p50} ms, p90 {p90} ms, p99 {p99} ms; closed first "
                               "by {closers}", p50=life["p50"], p90=life["p90"],
                               p99=life["p99"], closers=_counts(r["closed_first_by"], True))
                   + (_f(" (closing process: {names})", names=_counts(r["closers"]))
                      if r["closers"] else ""))
    return out
