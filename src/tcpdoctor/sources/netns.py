"""Run a function inside another network namespace without moving the whole process.

setns(CLONE_NEWNET) changes only the calling thread, so a short-lived helper thread enters
the namespace, opens its sockets and /proc/thread-self/net files there, and exits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.util.text import visible

CLONE_NEWNET = 0x40000000  # include/uapi/linux/sched.h
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` bind-mounts named namespaces

T = TypeVar("T")


def resolve(netns: str) -> str:
    """A namespace name (under /run/netns) or a path such as /proc/PID/ns/net."""
    path = netns if "/" in netns else f"{NETNS_RUN_DIR}/{netns}"
    try:
        os.stat(path)
    except FileNotFoundError:
        raise TcpDoctorError(Msg("network namespace {netns!r} not found ({path} does not exist)",
                                 netns=netns, path=path)) from None
    except OSError as exc:  # there, but not for us: say so, not "not found"
        raise TcpDoctorError(Msg("network namespace {netns!r} unreadable ({path}: "
                                 "{error}; it needs root)", netns=netns, path=path,
                                 error=exc.strerror)) from None
    return path


def inode(netns: str) -> int:
    """The namespace's inode number (what /proc/PID/ns/net of its processes points at)."""
    return os.stat(resolve(netns)).st_ino


def named() -> list[str]:
    """The namespaces `ip netns` knows by name (bind mounts under /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return []


def current_netns_fd() -> int:
    """An fd of the calling thread's network namespace (threads it starts begin elsewhere)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def enter_fd(fd: int, what: str = Msg("the caller's network namespace")) -> None:
    """setns() the calling thread into the namespace of fd, unless it is already there."""
    if os.stat(f"/proc/self/fd/{fd}").st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
        return  # already there: no privilege needed
    import ctypes  # here, not at the top: only entering another namespace needs it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        hint = (Msg(" (entering another namespace needs root or CAP_SYS_ADMIN)") if err == 1
                else "")
        raise TcpDoctorError(Msg("cannot enter {what}: {error}{hint}", what=what,
                                 error=os.strerror(err), hint=hint))


def _setns(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise TcpDoctorError(Msg("cannot open network namespace {path}: {error}", path=path,
                                 error=exc.strerror)) from None
    try:
        enter_fd(fd, Msg("network namespace {path}", path=path))
    finally:
        os.close(fd)


def run_in(netns: str | None, fn: Callable[[], T]) -> T:
    """fn() in the given network namespace (None = the current one)."""
    if netns is None:
        return fn()
    path = resolve(netns)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            _setns(path)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread below
            error.append(exc)

    thread = threading.Thread(target=target, name="tcpdoctor-netns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# The initial network namespace's inode where the kernel gives it a fixed one
# (PROC_NET_INIT_INO, include/linux/proc_ns.h); older kernels number it like any other.
INIT_NET_INO = 0xEFFFFFF9


def in_initial(proc_root: str = "/proc") -> bool | None:
    """Whether this process runs in the host's (initial) network namespace; None when that
    cannot be told (PID 1's and kthreadd's namespaces unreadable, no fixed inode)."""
    me = _stat_ino(f"{proc_root}/self/ns/net")
    if me is None:
        return None
    if me == INIT_NET_INO:
        return True
    for pid in (1, 2):  # kthreadd lives in the initial namespace where PID 1 hides its own
        ino = _stat_ino(f"{proc_root}/{pid}/ns/net")
        if ino is not None:
            return me == ino
    return None


def current_name(proc_root: str = "/proc") -> str | None:
    """The name of the namespace this process runs in, when it is not the host's (`ip netns
    exec NAME`: NAME; a container: netns:[INODE]); None in the host's or when unknown."""
    if in_initial(proc_root) is not False:
        return None
    me = _stat_ino(f"{proc_root}/self/ns/net")
    for name in named():
        if _stat_ino(f"{NETNS_RUN_DIR}/{name}") == me:
            return printable(name)
    return f"netns:[{me}]"


def printable(name: str) -> str:
    """A namespace name as a report may show it: escapes instead of control characters."""
    return visible(name)


def _stat_ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
