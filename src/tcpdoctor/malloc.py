"""glibc malloc settings for the long-running commands (exporter, watch, record)."""

from __future__ import annotations

import contextlib

M_ARENA_MAX = -8  # glibc malloc.h


def limit_malloc_arenas(count: int = 2) -> None:
    """Each thread otherwise gets its own glibc arena (the exporter's connection threads,
    the netlink reader's second thread): RSS then climbs in 4-100 MB steps and never comes
    back (measured in tests/test_exporter.py and tests/test_live_history.py). Not glibc
    (musl): nothing to do."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, count)
