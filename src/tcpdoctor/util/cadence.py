"""The one periodic loop: record, watch and the exporter's textfile writer all tick here.

A fixed cadence: tick n is due at start + n × interval. A step that overruns its slot
skips to the next slot instead of drifting (sleeping a full interval after slow work) or
bursting (running the missed ticks back to back).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator


def ticks(interval: float, count: int | None = None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """Yields 0, 1, 2 ... (count of them, or forever) on the cadence; the caller's work
    between two yields counts against the slot."""
    start = clock()
    n = 0
    while count is None or n < count:
        yield n
        n += 1
        if count is not None and n >= count:
            return
        sleep(wait_for_next(start, interval, clock()))


def wait_for_next(start: float, interval: float, now: float) -> float:
    """Seconds from `now` to the next slot boundary after it."""
    if interval <= 0:
        return 0.0
    slots = int((now - start) / interval) + 1
    return max(0.0, start + slots * interval - now)
