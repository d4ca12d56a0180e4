"""`check --format npd`: node-problem-detector's custom plugin protocol. One line of at most
80 bytes on stdout (NPD cuts the rest) and the exit code NPD reads: 0 OK, 1 a problem,
2 unknown (the check could not run)."""

from __future__ import annotations

from typing import Any

from tcpdoctor.render.output import write
from tcpdoctor.util.text import fit_bytes, visible

MAX_BYTES = 80
OK, PROBLEM, UNKNOWN = 0, 1, 2


def npd_line(findings: list[tuple[str | None, Any]], sockets: int) -> tuple[str, int]:
    """The worst warning or critical finding (where, finding), or OK."""
    loud = [(where, f) for where, f in findings if f.severity in ("warning", "critical")]
    if not loud:
        return fit_bytes(f"OK: {sockets:,} TCP sockets, no problem found", MAX_BYTES), OK
    where, worst = max(loud, key=lambda wf: wf[1].severity.rank)
    place = f" in {visible(where)}" if where and where not in ("host", "all") else ""
    more = f" (+{len(loud) - 1} more)" if len(loud) > 1 else ""
    head = f"{worst.severity.upper()} {worst.id}{place}{more}: "
    return fit_bytes(head + visible(" ".join(str(worst.summary).split())), MAX_BYTES), PROBLEM


def emit_npd(line: str) -> None:
    write(line + "\n")


def unknown(reason: str) -> str:
    return fit_bytes("UNKNOWN: " + visible(" ".join(reason.split())), MAX_BYTES)
