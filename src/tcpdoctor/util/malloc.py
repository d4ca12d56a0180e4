"""glibc malloc settings, set when a command starts."""

from __future__ import annotations

import contextlib

M_MMAP_THRESHOLD = -3  # glibc malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # long-running commands
ONE_SHOT_MMAP_THRESHOLD = 3 << 20  # commands that read once and exit


def limit_malloc_arenas(count: int = 2, long_running: bool = False) -> None:
    """Each thread otherwise gets its own glibc arena (the exporter's connection threads,
    the netlink reader's second thread): RSS then climbs in 4-100 MB steps and never comes
    back (measured in tests/test_exporter.py and tests/test_live_history.py). Not glibc
    (musl): nothing to do."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, count)
        # A fixed threshold keeps every large (numpy) block in its own mapping, returned to
        # the kernel when freed; glibc's sliding threshold otherwise moves them onto the heap
        # after the first frees, where RSS then rises in steps of a few MB, and the pieces of
        # a big dump, freed as they are joined, stay resident (a million sockets: +100 MB).
        # A command that reads once and exits takes 3 MB: the blocks of one dump chunk and
        # a million-row mask are then reused from the heap instead of being mapped, faulted
        # in, zeroed and unmapped each time (check at a million sockets: about 82,000 page
        # faults instead of 100,000); the joined columns above it still get their own
        # mappings, and drain_columns trims. Not 4 MB: a million-row 32-bit column (4.0 MB)
        # would then come from the heap too, and the rules' freed ones stay there while the
        # next rule maps its 8 MB arrays afresh (check with the BPF socket reader and
        # TIME_WAIT present: 199 MB peak with 4 MB, 171 MB with 3 MB, the same time). The
        # exporter, watch and record keep 128 KB: over their many readings the heap would
        # hold more (an exporter at a million sockets peaked at 316 MB with 4 MB, 262-264
        # MB with 128 KB).
        libc.mallopt(M_MMAP_THRESHOLD,
                     MMAP_THRESHOLD if long_running else ONE_SHOT_MMAP_THRESHOLD)


_libc: object = None


def trim() -> None:
    """Give the heap's free pages back to the kernel now (glibc malloc_trim): the small
    pieces of a big dump, freed as they are joined, otherwise stay resident."""
    global _libc
    import ctypes

    if _libc is None:
        try:
            _libc = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc(0)  # type: ignore[operator]
