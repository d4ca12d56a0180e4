"""Errors tcpdoctor reports to the user as one line and exit code 3."""

from __future__ import annotations

from tcpdoctor.i18n import Msg


class TcpDoctorError(Exception):
    """tcpdoctor could not do its job (bad input, no permission, unsupported system)."""


class ParseError(TcpDoctorError):
    """Input that does not match the expected format, located precisely."""

    def __init__(self, source: str, line: int | None, expected: str,
                 got: bytes | str = b"") -> None:
        where = f"{source}:{line}" if line is not None else source
        detail = f"{got[:60]!r}" if got else ""
        super().__init__(Msg("{where}: expected {expected}, got {detail}", where=where,
                             expected=expected, detail=detail) if got else
                         Msg("{where}: expected {expected}", where=where, expected=expected))
        self.source = source
        self.line = line
        self.expected = expected
        self.got = got
