"""A private tracing instance (instances/tcpdoctor-PID): nothing else's tracing is touched,
and it is removed on exit, Ctrl-C and SIGTERM; instances left by a killed tcpdoctor are
removed at the next start."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from types import FrameType

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, c_locale

ROOT = "/sys/kernel/tracing"
PREFIX = "tcpdoctor-"
EVENTS = ("sock/inet_sock_set_state", "tcp/tcp_send_reset", "tcp/tcp_receive_reset",
          "tcp/tcp_retransmit_skb")
# Only TCP's state changes (the tracepoint reports SCTP and MPTCP too); IPPROTO_TCP = 6.
FILTERS = {"sock/inet_sock_set_state": "protocol == 6"}
BUFFER_KB = 8192  # per CPU: about a second of a 150,000 events/s storm


def tracefs_root() -> str:
    """/sys/kernel/tracing, mounted if it is not (root only)."""
    if os.geteuid() != 0:
        raise TcpDoctorError(Msg("trace needs root: the kernel's tracepoints are read through "
                                 "tracefs (/sys/kernel/tracing), which only root may use"))
    if not os.path.exists(os.path.join(ROOT, "instances")):
        proc = subprocess.run(["mount", "-t", "tracefs", "nodev", ROOT], capture_output=True,
                              text=True, env=c_locale(), check=False)
        if proc.returncode or not os.path.exists(os.path.join(ROOT, "instances")):
            raise TcpDoctorError(Msg("tracefs is not mounted at {ROOT} and mounting it failed "
                                     "({why}); mount it: mount -t tracefs "
                                     "nodev {ROOT}", ROOT=ROOT,
                                     why=proc.stderr.strip()
                                     or Msg("no instances directory")))
    return ROOT


def remove_stale(root: str) -> list[str]:
    """Instances of tcpdoctor processes that no longer run (killed with SIGKILL)."""
    removed = []
    base = os.path.join(root, "instances")
    for name in os.listdir(base):
        m = re.fullmatch(rf"{PREFIX}(\d+)", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _remove(os.path.join(base, name))
            removed.append(name)
    return removed


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise TcpDoctorError(Msg("{path}: {error} (writing {value!r})", path=path,
                                 error=exc.strerror, value=value)) from None


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        _write(os.path.join(path, "tracing_on"), "0")
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def instance(events: tuple[str, ...] = EVENTS) -> Iterator[str]:
    """The path of a fresh instance with the TCP events enabled; removed afterwards."""
    root = tracefs_root()
    remove_stale(root)
    path = os.path.join(root, "instances", f"{PREFIX}{os.getpid()}")
    if os.path.exists(path):
        _remove(path)
    try:
        os.mkdir(path)
    except OSError as exc:
        raise TcpDoctorError(Msg("cannot create the tracing instance {path}: {error}",
                                 path=path, error=exc.strerror)) from None
    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not the main thread: the caller handles signals
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _write(os.path.join(path, "buffer_size_kb"), str(BUFFER_KB))
        # One clock for all CPUs, the one time.monotonic_ns() reads: the raw reader orders
        # events across CPUs by it (the default "local" clock may differ between CPUs) and
        # checks that it is set.
        with contextlib.suppress(TcpDoctorError):
            _write(os.path.join(path, "trace_clock"), "mono")
        for event in events:
            where = os.path.join(path, "events", event)
            if not os.path.isdir(where):
                raise TcpDoctorError(Msg("this kernel has no {event} tracepoint", event=event))
            if event in FILTERS:
                _write(os.path.join(where, "filter"), FILTERS[event])
            _write(os.path.join(where, "enable"), "1")
        _write(os.path.join(path, "tracing_on"), "1")
        yield path
    finally:
        _remove(path)
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous)
