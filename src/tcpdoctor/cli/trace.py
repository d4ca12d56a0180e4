"""`trace`: who opens, who closes, how long connections live (kernel tracepoints)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from tcpdoctor.cli.options import SocketOptions, socket_options
from tcpdoctor.i18n import _f, tr
from tcpdoctor.render.output import emit_json, emit_ndjson, write
from tcpdoctor.status import ExitCode


@click.command()
@click.option("--summary", "as_summary", is_flag=True,
              help="Sum up instead of streaming: per remote service and local port.")
@click.option("--duration", type=click.FloatRange(0.1, 86_400), default=None,
              help="Seconds to trace (default: 10 with --summary, else until Ctrl-C).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Stream: only events on this local or remote port.")
@click.option("--ip", default=None, help="Stream: only events with this address.")
@click.option("--comm", default=None, help="Stream: only events of this command name.")
@click.option("--pid", type=int, default=None, help="Stream: only events of this pid.")
@click.option("--state", default=None,
              help="Stream: only changes into or out of this state (e.g. TIME_WAIT).")
@socket_options("trace", not_used={
    "--source": "the tracepoints are the source",
    "--no-processes": "events name the process that caused them at no cost"},
    netns_help="Only connections of processes in this namespace (`all`: every one, the "
               "default).", json_help="JSON: one object per event (NDJSON), or the summary "
                                      "object.")
@click.option("--reader", type=click.Choice(["auto", "raw", "text"]), default="auto",
              show_default=True,
              help="raw: the binary per-CPU buffers; text: the slower trace_pipe; auto: raw, "
                   "else text with a note.")
def trace(sock: SocketOptions, as_summary: bool, duration: float | None,
          port: int | None, ip: str | None, comm: str | None, pid: int | None,
          state: str | None, reader: str) -> int:
    """Trace TCP connections through the kernel's tracepoints (root; nothing to compile).

    \b
    Reads sock:inet_sock_set_state, tcp:tcp_send_reset, tcp:tcp_receive_reset and
    tcp:tcp_retransmit_skb from a private tracing instance (removed on exit, Ctrl-C and
    SIGTERM). Lost events (ring-buffer overruns) are counted and reported.

    \b
    Examples:
      sudo tcpdoctor trace                         every state change, like tcpstates
      sudo tcpdoctor trace --port 3306 --state TIME_WAIT
      sudo tcpdoctor trace --summary --duration 10 who opens, who closes, lifetimes
      sudo tcpdoctor trace --summary --json --netns blue
      sudo tcpdoctor trace -6 --netns pod:shop/cart-7d9f
    """
    from tcpdoctor.model.tcp import STATE_NAMES, parse_state_option

    as_json = sock.as_json
    state_name = STATE_NAMES[parse_state_option([state])[0] - 1] if state else None
    from tcpdoctor.sources.tracefs.instance import tracefs_root

    tracefs_root()  # root and a mounted tracefs, or exit 3 with the reason, before all else
    from tcpdoctor.sources.tracefs.run import Trace

    seconds = duration if duration is not None else (10.0 if as_summary else None)
    target = sock.target(every_netns=True)  # pod:/container: resolved; all = no filter
    want = target.netns_inode()
    filters = {"port": port, "ip": ip, "comm": comm, "pid": pid, "state": state_name}
    on_batch = None if as_summary else _streamer(as_json, filters, want)
    run = Trace(seconds, on_batch, reader=reader, families=_families(sock))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the trace, not the report
        run.run()
    result = run.result(want)
    if as_summary:
        if as_json:
            emit_json(result)
        else:
            from tcpdoctor.render.trace import summary_lines

            write("\n".join(summary_lines(result)) + "\n")
    else:
        if result.get("note"):
            sys.stderr.write(f"tcpdoctor: {tr(result['note'])}\n")
        if result["events_lost"]:
            sys.stderr.write("tcpdoctor: " + _f("{n:,} events lost (ring-buffer overrun)",
                                                n=result["events_lost"]) + "\n")
    return ExitCode.WARNING if result["events_lost"] else ExitCode.OK


def _families(sock: SocketOptions) -> tuple[int, ...]:
    from tcpdoctor.model.tcp import AF_INET, AF_INET6

    v4, v6 = sock.families()
    return (AF_INET,) * v4 + (AF_INET6,) * v6


def _streamer(as_json: bool, filters: dict[str, Any], netns: int | None) -> Any:
    from tcpdoctor.render.trace import STREAM_HEAD, stream_line
    from tcpdoctor.sources.tracefs.stream import events

    if not as_json:
        write(STREAM_HEAD + "\n")
    last: dict[int, int] = {}

    def emit(cols: Any, tracker: Any) -> None:
        for e in events(cols, tracker.comms, last, filters, netns):
            if as_json:
                emit_ndjson(e)
            else:
                write(stream_line(e) + "\n")
    return emit


COMMANDS = (trace,)
