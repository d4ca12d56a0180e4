"""A private tracing instance (instances/tcpdoctor-PID-TOKEN): nothing else's tracing is
touched, and it is removed on exit, Ctrl-C and SIGTERM.

Its owner holds an exclusive lock on LOCKS/NAME.lock for the instance's whole life; the
kernel releases it however the owner ends (SIGKILL included). An instance is stale only when
its lock file is there and can be locked: its owner is proven dead. Without a lock file —
another container's tracer (its own /run), or an older tcpdoctor — nothing proves the
owner dead, so the instance is left alone: a pid that does not exist here may well exist in
another PID namespace, and a pid that exists may be a new process."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from types import FrameType

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, c_locale

ROOT = "/sys/kernel/tracing"
PREFIX = "tcpdoctor-"
LOCKS = "/run/tcpdoctor/trace"  # one lock file per live instance, held by its owner
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


def remove_stale(root: str, locks: str = LOCKS) -> list[str]:
    """Instances whose owner is proven dead (its lock file can be locked): removed."""
    removed = []
    base = os.path.join(root, "instances")
    for name in os.listdir(base):
        if not re.fullmatch(rf"{PREFIX}\d+-[0-9a-f]+", name):
            continue  # not one this version made: nothing proves its owner dead
        lock = os.path.join(locks, f"{name}.lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # another mount namespace's tracer, or one removing itself
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its owner runs
        try:
            _remove(os.path.join(base, name))
            with contextlib.suppress(OSError):
                os.unlink(lock)
            removed.append(name)
        finally:
            os.close(fd)
    return removed


def _hold_lock(name: str, locks: str = LOCKS) -> int:
    """The open, exclusively locked lock file proving this process owns instance `name`."""
    try:
        os.makedirs(locks, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(locks, f"{name}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise TcpDoctorError(Msg("cannot hold the tracing lock in {locks}: {error}",
                                 locks=locks, error=exc.strerror)) from None
    return fd


def _release_lock(fd: int, name: str, locks: str = LOCKS) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(locks, f"{name}.lock"))
    os.close(fd)


def switched_off(path: str) -> bool:
    """Whether something else turned this instance's tracing off (it was on)."""
    try:
        with open(os.path.join(path, "tracing_on")) as fh:
            return fh.read().strip() == "0"
    except OSError:
        return True  # removed under us


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
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    path = os.path.join(root, "instances", name)
    lock = _hold_lock(name)
    # SIGTERM ends the trace through the finally below from before the instance exists: a
    # signal right after mkdir must not leave it behind.
    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not the main thread: the caller handles signals
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            os.mkdir(path)
        except OSError as exc:
            raise TcpDoctorError(Msg("cannot create the tracing instance {path}: {error}",
                                     path=path, error=exc.strerror)) from None
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
        _release_lock(lock, name)
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous)
