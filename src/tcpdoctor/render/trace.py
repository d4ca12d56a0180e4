"""`trace` output: the event stream (one line per state change) and the summary."""

from __future__ import annotations

from typing import Any

STREAM_HEAD = (f"{'TIME(s)':>9} {'PID':>7} {'COMM':<15} {'LOCAL':<22} {'REMOTE':<22} "
               f"{'OLD -> NEW':<26} {'MS':>9}")


def stream_line(e: dict[str, Any]) -> str:
    change = f"{e['old']} -> {e['new']}"
    ms = "" if e["ms"] is None else f"{e['ms']:.3f}"
    return (f"{e['time']:9.3f} {e['pid']:>7} {e['comm'][:15]:<15} {e['local']:<22} "
            f"{e['remote']:<22} {change:<26} {ms:>9}")


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"


def summary_lines(s: dict[str, Any]) -> list[str]:
    out = [f"Traced {s['seconds']:.1f} s: {s['events']:,} events, {s['events_lost']:,} lost"
           + (f", {s['sockets_dropped']:,} sockets not followed (table full)"
              if s["sockets_dropped"] else "")]
    if s.get("note"):
        out.append(f"  Note: {s['note']}.")
    if s["events_lost"]:
        out.append("  Some events were lost (ring-buffer overrun): counts below are low.")
    for title, rows, key in (("Connections this host opened, by remote service",
                              s["remote_services"], "service"),
                             ("Connections this host accepted, by local port",
                              s["local_ports"], "port")):
        out.append("")
        out.append(f"{title}:")
        if not rows:
            out.append("  none completed during the trace")
        for r in rows:
            life = r["lifetime_ms"]
            out.append(f"  {r[key]}: {r['opened']:,} ({r['per_second']:,}/s) by "
                       f"{_counts(r['processes'])}")
            if r["failed"]:
                out.append(f"    failed: {_counts(r['failed'])}")
            if r["closed_first_by"]:
                out.append(f"    lifetime p50 {life['p50']} ms, p90 {life['p90']} ms, "
                           f"p99 {life['p99']} ms; closed first by "
                           f"{_counts(r['closed_first_by'])}"
                           + (f" (closing process: {_counts(r['closers'])})"
                              if r["closers"] else ""))
    out.append("")
    rps = s["resets_per_second"]
    out.append(f"Resets: {rps['sent']}/s sent, {rps['received']}/s received")
    out.extend(f"  sent {r['count']:,} from {r['local']} ({r['reason']})"
               for r in s["resets_sent"][:5])
    out.extend(f"  received {r['count']:,} from {r['peer']}" for r in s["resets_received"][:5])
    if s["retransmits"]:
        out.append("Retransmits: " + ", ".join(f"{r['peer']} {r['count']:,}"
                                               for r in s["retransmits"][:5]))
    if s["state_time_share"]:
        out.append("Time in states: " + ", ".join(
            f"{k} {v:.0%}" for k, v in list(s["state_time_share"].items())[:6]))
    return out
