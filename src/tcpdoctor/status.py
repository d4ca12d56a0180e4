"""Exit codes (the monitoring-plugin convention of docs/spec.md), in one place."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # healthy
    WARNING = 1  # at least one warning
    CRITICAL = 2  # at least one critical finding
    UNKNOWN = 3  # tcpdoctor could not do its job (one-line reason on stderr)
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
