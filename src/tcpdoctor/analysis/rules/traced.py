"""What `check --trace` saw, as evidence for the snapshot's findings: the processes behind
sockets that have none (TIME_WAIT, SYN_SENT), their rates and lifetimes."""

from __future__ import annotations

from typing import Any

from tcpdoctor.analysis.context import Context


def _rows(ctx: Context, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (ctx.trace or {}).get(key, [])
    return rows


def traced_opener(ctx: Context, service: str) -> str:
    """Who opens the connections to service, how fast, how long they live
    ("php-fpm opens 450/s to 10.0.0.5:3306, median lifetime 12 ms")."""
    for r in _rows(ctx, "remote_services"):
        if r["service"] == service and r["processes"]:
            comm = next(iter(r["processes"]))
            return (f"{comm} opens {r['per_second']:,}/s to {service}, median lifetime "
                    f"{r['lifetime_ms']['p50']:g} ms")
    return ""


def traced_closer(ctx: Context, port: int) -> str:
    """Which process closes first the connections it accepted on port, and how often
    ("td-web closed first 480 of 500 connections on port 8080 (96%), 166/s, ...")."""
    for r in _rows(ctx, "local_ports"):
        if r["port"] == port and r["opened"]:
            local = r["closed_first_by"].get("local", 0)
            closers = r.get("closers") or {}
            who = next(iter(closers), "this host")
            return (f"{who} closed first {local:,} of {r['opened']:,} connections on port "
                    f"{port} ({local / r['opened']:.0%}), {r['per_second']:,}/s, median "
                    f"lifetime {r['lifetime_ms']['p50']:g} ms")
    return ""


def traced_connects(ctx: Context, service: str) -> str:
    """connect() calls to service during the trace and how many failed
    ("td-app started 4.0/s to 198.19.0.10:5432; 3.0/s failed (timeout 9)")."""
    seconds = (ctx.trace or {}).get("seconds", 0)
    for r in _rows(ctx, "connects"):
        if r["service"] == service:
            comm = next(iter(r["processes"]), "?")
            failed = ", ".join(f"{k} {v:,}" for k, v in sorted(r["failed"].items()))
            return (f"{comm} started {r['per_second']:,} connects/s to {service}; "
                    f"{r['failed_per_second']:,}/s failed" + (f" ({failed})" if failed else "")
                    + f" during the {seconds:g} s trace")
    if ctx.trace is not None:
        return f"no new connect to {service} during the {seconds:g} s trace"
    return ""
