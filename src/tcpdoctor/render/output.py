"""Where output goes: JSON on stdout, notes on stderr, a rich console for people.

rich is imported lazily so that `--json` runs do not pay for it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tcpdoctor.i18n import _f, tr
from tcpdoctor.i18n.width import fill

# How each severity looks on a terminal (one table for the report, tune and watch).
SEVERITY_STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def notes(lines: list[str]) -> None:
    for line in lines:
        # stderr: stdout stays clean for pipes and --json
        sys.stderr.write(_f("note: {note}", note=line) + "\n")


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def printer() -> tuple[Any, Any]:
    """A rich console and a print function that wraps plain text with hanging indents
    (textwrap, not rich padding: no trailing spaces in captured reports)."""
    from rich.console import Console
    from rich.text import Text

    con = Console(highlight=False)
    width = min(con.width, 100)

    def out(text: str, indent: int = 0, hang: int = 0, style: str = "") -> None:
        wrapped = fill(str(tr(text)), width, " " * indent, " " * (indent + hang))
        con.print(Text(wrapped, style=style), soft_wrap=True)

    return con, out
