"""What history keeps of a sample, as plain values (ready for SQLite or JSON), and what
comes back from the database: the records history, watch and render share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.times import iso


@dataclass
class Point:
    """What history keeps of one sample (plain values, ready for SQLite or JSON)."""

    ts: float  # seconds since the epoch
    host: str
    netns: str | None
    states: dict[str, int]
    kernel: dict[str, float]
    groups: list[tuple[str, str, str, int]]  # (dimension, key, state, count)
    findings: list[dict[str, Any]]  # id, severity, summary, processes
    # What runs out, and when (the report's forecasts; shown by watch, not stored).
    forecasts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def taken_at(self) -> str:
        return iso(self.ts, "milliseconds")

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def established(self) -> int:
        return self.states.get("ESTABLISHED", 0)

    def as_json(self) -> dict[str, Any]:
        return {"taken_at": self.taken_at, "total": self.total,
                "established": self.established,
                "non_established": self.total - self.established, "states": self.states,
                "findings": [f["id"] for f in self.findings]}


@dataclass
class Taken:
    """One sample for `watch`: its point and the sockets it was taken from."""

    point: Point
    snap: Snapshot


@dataclass
class Stored:
    """One sample as read back from the database."""

    id: int
    ts: float
    host: str
    netns: str | None
    states: dict[str, int]
    kernel: dict[str, float]
    covers: int
    findings: list[dict[str, Any]]

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def established(self) -> int:
        return self.states["ESTABLISHED"]
