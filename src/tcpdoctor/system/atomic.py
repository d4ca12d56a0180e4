"""Write files so that a reader (or a crash) sees the old content or the new, never half."""

from __future__ import annotations

import contextlib
import os
import time

# Test-only fault injection: seconds to sleep between chunks, to widen the window in which a
# kill lands mid-write (tests/test_tune.py kills writers with SIGKILL at random moments).
SLOW_ENV = "TCPDOCTOR_SLOW_WRITE"
CHUNK = 64


def atomic_write(path: str, data: str, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory."""
    atomic_write_bytes(path, data.encode(), mode)


def atomic_write_bytes(path: str, raw: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tcpdoctor-{os.getpid()}.tmp")
    slow = float(os.environ.get(SLOW_ENV, "0") or 0)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        for i in range(0, len(raw), CHUNK if slow else len(raw) or 1):
            os.write(fd, raw[i:i + (CHUNK if slow else len(raw))])
            if slow:
                time.sleep(slow)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove_stale_temps(path: str) -> None:
    """Temp files a killed writer left beside path (their pid no longer runs)."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    prefix = f".{os.path.basename(path)}.tcpdoctor-"
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):-4]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
