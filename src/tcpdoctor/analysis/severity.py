"""One severity order for findings, tune entries and exit codes."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from tcpdoctor.status import ExitCode


class Severity(enum.StrEnum):
    """Compares by gravity, not alphabetically; equal to its JSON string ("warning")."""

    OK = "ok"  # tune entries only: nothing to change
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        return self.rank < Severity(other).rank if isinstance(other, str) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= Severity(other).rank if isinstance(other, str) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > Severity(other).rank if isinstance(other, str) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= Severity(other).rank if isinstance(other, str) else NotImplemented

    __hash__ = enum.StrEnum.__hash__

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT.get(self, ExitCode.OK)


_RANK = {Severity.OK: 0, Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}
_EXIT = {Severity.WARNING: ExitCode.WARNING, Severity.CRITICAL: ExitCode.CRITICAL}


def worst(severities: Iterable[str]) -> Severity | None:
    """The gravest of these severities (None for none)."""
    return max((Severity(s) for s in severities), default=None)


def exit_code(severities: Iterable[str]) -> ExitCode:
    """0 healthy, 1 a warning, 2 a critical (info and ok count as healthy)."""
    w = worst(severities)
    return w.exit_code if w is not None else ExitCode.OK
