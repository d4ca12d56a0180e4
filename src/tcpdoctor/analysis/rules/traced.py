"""What `check --trace` saw, as evidence for the snapshot's findings: the processes behind
sockets that have none (TIME_WAIT, SYN_SENT), their rates and lifetimes."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.context import Context
from tcpdoctor.i18n import Msg


def _rows(ctx: Context, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (ctx.trace or {}).get(key, [])
    return rows


def traced_opener(ctx: Context, service: str) -> str:
    """Who opens the connections to service, how fast, how long they live
    ("php-fpm opens 450/s to 10.0.0.5:3306, median lifetime 12 ms")."""
    for r in _rows(ctx, "remote_services"):
        if r["service"] == service and r["processes"]:
            comm = next(iter(r["processes"]))
            return (Msg("{comm} opens {rate:,}/s to {service}, median lifetime "
                        "{median:g} ms", comm=comm, rate=r['per_second'],
                        service=service, median=r['lifetime_ms']['p50']))
    return ""


def traced_closer(ctx: Context, port: int) -> str:
    """Which process closes first the connections it accepted on port, and how often
    ("td-web closed first 480 of 500 connections on port 8080 (96%), 166/s, ...")."""
    for r in _rows(ctx, "local_ports"):
        if r["port"] == port and r["opened"]:
            local = r["closed_first_by"].get("local", 0)
            closers = r.get("closers") or {}
            who = next(iter(closers), Msg("this host"))
            return (Msg("{who} closed first {local:,} of {opened:,} connections on port "
                        "{port} ({share:.0%}), {rate:,}/s, median lifetime "
                        "{median:g} ms", who=who, local=local, opened=r['opened'],
                        port=port, share=local / r['opened'],
                        rate=r['per_second'], median=r['lifetime_ms']['p50']))
    return ""


def traced_connects(ctx: Context, service: str) -> str:
    """connect() calls to service during the trace and how many failed
    ("td-app started 4.0/s to 198.19.0.10:5432; 3.0/s failed (timeout 9)")."""
    seconds = (ctx.trace or {}).get("seconds", 0)
    for r in _rows(ctx, "connects"):
        if r["service"] == service:
            comm = next(iter(r["processes"]), "?")
            failed = ", ".join(f"{k} {v:,}" for k, v in sorted(r["failed"].items()))
            return (Msg("{comm} started {rate:,} connects/s to {service}; {failed_rate:,}/s "
                        "failed", comm=comm, rate=r["per_second"], service=service,
                        failed_rate=r["failed_per_second"])
                    + (f" ({failed})" if failed else "")
                    + Msg(" during the {seconds:g} s trace", seconds=seconds))
    if ctx.trace is not None:
        return Msg("no new connect to {service} during the {seconds:g} s trace", service=service,
                   seconds=seconds)
    return ""
