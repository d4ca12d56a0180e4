"""`watch`: the live view, full-screen on a terminal, plain or JSON lines when piped."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from tcpdoctor.analysis.dimensions import WATCH_DIMENSIONS as DIMS
from tcpdoctor.cli.options import (
    SocketOptions,
    can_trace,
    default_scope,
    socket_options,
    threshold_options,
)
from tcpdoctor.i18n import _, tr
from tcpdoctor.render.output import notes, on_terminal, write, write_lines
from tcpdoctor.util.cadence import ticks, wait_for_next

if TYPE_CHECKING:
    from tcpdoctor.history.series import Series
    from tcpdoctor.render.watch import View


@click.command()
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between samples.")
@click.option("--by", "by", default="remote-ip", show_default=True,
              type=click.Choice(DIMS),
              help="First grouping of the top table (g cycles through them).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N samples.")
@click.option("--trace", "trace", is_flag=True,
              help="Also read the kernel's TCP tracepoints all along (root): each sample's "
                   "findings name the processes and rates seen since the one before.")
@socket_options("watch")
@threshold_options
def watch(sock: SocketOptions, thresholds: Any, interval: float, by: str,
          count: int | None, trace: bool) -> None:
    """Live view: states with rates and sparklines, top groups of the growing states,
    findings as they appear and clear.

    \b
    Keys: g switch grouping (remote IP, service port, process, remote /24), p pause, q quit.
    When stdout is not a terminal, prints one line per sample (and per finding event);
    --json prints one JSON object per sample (with rates and finding events).

    \b
    Examples:
      tcpdoctor watch
      tcpdoctor watch --netns blue --interval 1 --by process
      tcpdoctor watch --count 30 > watch.log
      tcpdoctor watch --json | jq -c '{t: .taken_at, cw: .states.CLOSE_WAIT}'
      tcpdoctor watch --netns all        every namespace; g cycles to the netns grouping
      sudo tcpdoctor watch --trace       findings name who opens and closes, per sample
    """
    from tcpdoctor.cli.history import series

    if trace:
        can_trace(sock)
    else:
        sock, said = default_scope(sock)  # as root in the host's namespace: every one
        notes(said)
    taker = series(sock, thresholds, 5, trace=trace)
    try:
        _run(taker, sock, by, interval, count)
    finally:
        taker.close()


def _run(taker: Series, sock: SocketOptions, by: str, interval: float,
         count: int | None) -> None:
    from tcpdoctor.render.watch import View

    dims = tuple(d for d in DIMS if d != "process" or not sock.no_processes)
    if sock.all_netns:
        dims = (*dims, "netns")  # which namespace (pod, container) the sockets are in
    view = View(dims, dims.index(by) if by in dims else 0)
    if on_terminal() and sys.stdin.isatty() and not sock.as_json:
        where = _("every namespace") if sock.all_netns else sock.one_netns or _("host")
        run_terminal(taker, view, interval, where, count)
    else:
        run_lines(taker, view, interval, count, sock.as_json)


@contextlib.contextmanager
def leave_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (`timeout 60 tcpdoctor watch`, a closed terminal) unwind like q:
    the screen, the cursor and the terminal's line mode are restored on the way out."""
    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one by one without Enter; the terminal is restored however we leave."""
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def read_key(fd: int, timeout: float) -> str | None:
    ready, _writable, _failed = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return None
    data = os.read(fd, 1)
    return data.decode(errors="replace") if data else "q"  # EOF on stdin: quit


def run_terminal(series: Series, view: View, interval: float, where: str,
                 count: int | None) -> None:
    from rich.live import Live

    from tcpdoctor.render.output import console
    from tcpdoctor.render.watch import screen

    fd = sys.stdin.fileno()
    taken = 0
    start = time.monotonic()
    with leave_on_signals(), cbreak(fd), Live(console=console(), screen=True,
                                              auto_refresh=False) as live:
        while count is None or taken < count:
            if not view.paused:
                view.update(series.take())
                taken += 1
            live.update(screen(view, where, interval), refresh=True)
            deadline = time.monotonic() + wait_for_next(start, interval, time.monotonic())
            while (left := deadline - time.monotonic()) > 0:
                key = read_key(fd, left)
                if key in ("q", "Q", "\x1b"):
                    return
                if key in ("g", "G"):
                    view.dim = (view.dim + 1) % len(view.dims)
                elif key in ("p", "P", " "):
                    view.paused = not view.paused
                else:
                    continue
                live.update(screen(view, where, interval), refresh=True)


def run_lines(series: Series, view: View, interval: float, count: int | None,
              as_json: bool) -> None:
    from tcpdoctor.render.watch import json_line, line

    for _tick in ticks(interval, count):
        events = view.update(series.take())
        if as_json:
            write(json_line(view, events) + "\n")
        else:
            write_lines([line(view) + "\n", *(f"{tr(e)}\n" for e in events)])


COMMANDS = (watch,)
