"""Helpers the rule families share, and the kernel facts their advice quotes."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.context import Context
from tcpdoctor.i18n import Msg
from tcpdoctor.model.columns import among_ports
from tcpdoctor.model.tcp import DEFAULT_PORT_RANGE, TCP_LISTEN, TCP_TIME_WAIT

TIME_WAIT_FIXED = (Msg("TIME_WAIT lasts a fixed 60 s on Linux (TCP_TIMEWAIT_LEN): "
                       "tcp_fin_timeout does not shorten it, and tcp_tw_recycle was removed in "
                       "Linux 4.12 (it broke clients behind NAT) — do not use either for this."))
WIDE_RANGE = (16384, 65535)  # even/odd ends, as the kernel prefers; leaves 1024-16383 to services


def in_state(ctx: Context, state: int) -> np.ndarray:
    return ctx.snap.columns["state"] == state


def ports_text(ports: list[tuple[Any, int]]) -> str:
    return ", ".join(str(p) for p, _ in ports[:3])


def owners_by_listen_port(ctx: Context, mask: np.ndarray) -> list[dict[str, Any]]:
    """TIME_WAIT and request sockets have no owner: attribute them to whoever listens on
    their local port, counting the matched sockets on that process's ports."""
    c = ctx.snap.columns
    ports = ctx.top("sport", mask, limit=20)
    per_port = dict(ports)
    listen = (c["state"] == TCP_LISTEN) & among_ports(c["sport"], np.array(list(per_port)))
    procs = ctx.processes(listen)
    for p in procs:
        mine = listen & (c["pid"] == p["pid"])
        p["count"] = sum(per_port.get(int(port), 0) for port in np.unique(c["sport"][mine]))
    return sorted(procs, key=lambda p: -p["count"])


def service_ports(ctx: Context) -> tuple[np.ndarray, str]:
    """This host's service ports, and how they were decided: its LISTEN rows; or, in an
    input without any (a partial paste, `grep TIME_WAIT`), the local ports that serve:
    below 1024, or shared by several sockets whose peers are on ephemeral ports. Computed
    once per report: the TIME_WAIT and CLOSE_WAIT rules all ask."""
    if "service_ports" not in ctx.memo:
        ctx.memo["service_ports"] = _service_ports(ctx)
    found: tuple[np.ndarray, str] = ctx.memo["service_ports"]
    return found


def _service_ports(ctx: Context) -> tuple[np.ndarray, str]:
    listening = ctx.snap.listening_ports()
    if listening.size or (ctx.snap.columns["state"] == TCP_LISTEN).any():
        return listening, Msg("LISTEN rows")
    c = ctx.snap.columns
    lo, hi = port_range(ctx)
    peer_ephemeral = (c["dport"] >= lo) & (c["dport"] <= hi)
    ports, inverse, counts = np.unique(c["sport"], return_inverse=True, return_counts=True)
    ephemeral_peers = np.bincount(inverse.ravel(), peer_ephemeral, ports.shape[0])
    serving = (ports < 1024) | ((counts >= 3) & (ephemeral_peers >= 0.8 * counts)
                                & ~((ports >= lo) & (ports <= hi) & (counts < 20)))
    found = ports[serving & (ports > 0)]
    how = (Msg("inferred, no LISTEN rows in the input: local ports below 1024, or shared by "
               "several sockets whose peers use ephemeral ports")
           + (f" ({', '.join(str(p) for p in found[:5])})" if found.size else Msg(" (none)")))
    return found, how


def on_service_port(ctx: Context) -> np.ndarray:
    """Whether each socket's local port is one of service_ports; worked out once per report
    (read-only: the TIME_WAIT and CLOSE_WAIT rules and the excerpt patterns share it)."""
    if "on_service_port" not in ctx.memo:
        served = among_ports(ctx.snap.columns["sport"], service_ports(ctx)[0])
        served.flags.writeable = False
        ctx.memo["on_service_port"] = served
    found: np.ndarray = ctx.memo["on_service_port"]
    return found


def server_side_tw(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """TIME_WAIT on a service port (this host closed first as the server) and the rest;
    worked out once per report: both TIME_WAIT rules ask."""
    if "server_side_tw" not in ctx.memo:
        c = ctx.snap.columns
        tw = c["state"] == TCP_TIME_WAIT
        server = tw & on_service_port(ctx)
        client = tw & ~server
        server.flags.writeable = client.flags.writeable = False  # shared by both rules
        ctx.memo["server_side_tw"] = (server, client)
    found: tuple[np.ndarray, np.ndarray] = ctx.memo["server_side_tw"]
    return found





def port_range_evidence(ctx: Context) -> list[int] | str:
    """ip_local_port_range as evidence: the input's, or what was assumed and why."""
    rng = ctx.kernel.sysctl_ints("net.ipv4.ip_local_port_range") if ctx.kernel else None
    if rng and len(rng) == 2 and 0 < rng[0] <= rng[1]:
        return [rng[0], rng[1]]
    lo, hi = DEFAULT_PORT_RANGE
    return Msg("{missing} (assumed {lo}-{hi}, the kernel's default)", missing=ctx.missing,
               lo=lo, hi=hi)


def port_range(ctx: Context) -> tuple[int, int]:
    rng = ctx.kernel.sysctl_ints("net.ipv4.ip_local_port_range") if ctx.kernel else None
    if rng and len(rng) == 2 and 0 < rng[0] <= rng[1]:
        return rng[0], rng[1]
    return DEFAULT_PORT_RANGE  # absent or nonsensical (the kernel would reject it)
