"""The one timestamp format of tcpdoctor: ISO 8601 in local time with its UTC offset
(unambiguous for scripts, readable for people; the same in snapshots, history and JSON)."""

from __future__ import annotations

import time
from datetime import datetime


def iso(ts: float | None = None, timespec: str = "seconds") -> str:
    """`ts` (seconds since the epoch; now when None) as ISO 8601 with its offset. History
    passes timespec="milliseconds", since samples can be 50 ms apart."""
    return datetime.fromtimestamp(time.time() if ts is None else ts).astimezone() \
        .isoformat(timespec=timespec)


def iso_ms(ts: float) -> str:
    """History's timestamps: milliseconds, since samples can be 50 ms apart."""
    return iso(ts, "milliseconds")
