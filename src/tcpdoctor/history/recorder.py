"""`tcpdoctor record`: sample at a fixed cadence into the history database until told to stop."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from tcpdoctor.history.series import Series
from tcpdoctor.history.store import History
from tcpdoctor.model.history import Point
from tcpdoctor.util.cadence import ticks

PRUNE_EVERY = 3600.0  # seconds between retention passes while recording


class Stopped(Exception):
    """SIGTERM (systemd stop) or SIGINT: leave after rolling back any unfinished sample."""


@dataclass
class Retention:
    keep: float  # seconds of history to keep
    downsample_after: float  # older samples are thinned ...
    bucket: float  # ... to one per bucket seconds


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def record(history: History, series: Series, interval: float,
           count: int | None, retention: Retention, on_stored: Callable[[int, Point], None],
           on_pruned: Callable[[int, int], None]) -> int:
    """Returns how many samples were taken (count counts them); a sweep stores one per
    namespace. Each is stored whole or not at all."""
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    stored = 0
    try:
        on_pruned(*history.prune(retention.keep, retention.downsample_after, retention.bucket))
        last_prune = time.monotonic()
        for _ in ticks(interval, count):
            for point in series.points():
                last = history.last_ts()
                if last is not None and point.ts <= last:
                    point.ts = last + 1e-3  # the wall clock stepped back: keep order
                on_stored(history.add(point), point)
            stored += 1
            if time.monotonic() - last_prune >= PRUNE_EVERY:
                on_pruned(*history.prune(retention.keep, retention.downsample_after,
                                         retention.bucket))
                last_prune = time.monotonic()
    except Stopped:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return stored
