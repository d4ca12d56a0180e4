"""Errors tcpdoctor reports to the user as one line and exit code 3."""

from __future__ import annotations


class TcpDoctorError(Exception):
    """tcpdoctor could not do its job (bad input, no permission, unsupported system)."""


class ParseError(TcpDoctorError):
    """Input that does not match the expected format, located precisely."""

    def __init__(self, source: str, line: int | None, expected: str,
                 got: bytes | str = b"") -> None:
        where = f"{source}:{line}" if line is not None else source
        detail = f", got {got[:60]!r}" if got else ""
        super().__init__(f"{where}: expected {expected}{detail}")
        self.source = source
        self.line = line
        self.expected = expected
