"""Write files so that a reader (or a crash) sees the old content or the new, never half.

The one writer of every file tcpdoctor writes: a temp file in the same directory, every
byte written (short writes are continued), fsync, rename over the target, fsync of the
directory. A full or read-only filesystem, a file-size limit or a missing permission is
a one-line TcpDoctorError (exit 3), and the temp file is removed: never success on a
partial file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg

# Test-only fault injection: seconds to sleep between chunks, to widen the window in which a
# kill lands mid-write (tests/test_tune.py kills writers with SIGKILL at random moments).
SLOW_ENV = "TCPDOCTOR_SLOW_WRITE"
CHUNK = 64
WHY = {errno.ENOSPC: Msg("no space left on the device"),
       errno.EDQUOT: Msg("disk quota exceeded"),
       errno.EROFS: Msg("read-only file system"),
       errno.EACCES: Msg("permission denied"),
       errno.EPERM: Msg("operation not permitted"),
       errno.EFBIG: Msg("file too large (a file-size limit, ulimit -f?)"),
       errno.ENOENT: Msg("no such directory"),
       errno.ENOTDIR: Msg("a path component is not a directory"),
       errno.EISDIR: Msg("it is a directory")}


def atomic_write(path: str, data: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, data.encode(), mode)


def atomic_write_bytes(path: str, raw: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tcpdoctor-{os.getpid()}.tmp")
    try:
        _write_new(tmp, raw, mode)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        why = WHY.get(exc.errno or 0, exc.strerror or str(exc))
        raise TcpDoctorError(Msg("cannot write {path}: {why}", path=path, why=why)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_new(tmp: str, raw: bytes, mode: int) -> None:
    slow = float(os.environ.get(SLOW_ENV, "0") or 0)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    # Past a file-size limit the kernel sends SIGXFSZ (default: kill the process); ignored,
    # the write fails with EFBIG instead and is reported.
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN) if _main_thread() else None
    try:
        view = memoryview(raw)
        while view:
            written = os.write(fd, view[:CHUNK] if slow else view)
            if written <= 0:
                raise OSError(errno.EIO, Msg("write returned nothing"))
            view = view[written:]  # a short write: continue with the rest
            if slow:
                time.sleep(slow)
        os.fsync(fd)
    finally:
        os.close(fd)
        if old is not None:
            signal.signal(signal.SIGXFSZ, old)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fsync_dir(directory: str) -> None:
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
