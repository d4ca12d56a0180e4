"""The one owner of stdout: JSON, NDJSON and text for scripts and pipes, a rich console for
people, notes on stderr.

A reader that goes away early (`tcpdoctor states | head -1`) is not an error: the rest of
the output goes to /dev/null and the command ends with the exit code of its verdict, as if
everything had been read (a healthy host still exits 0 under `set -o pipefail`). rich's own
reaction, SystemExit(1), is replaced by the same handling.

rich is imported lazily so that `--json` runs do not pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from tcpdoctor.i18n import _f, tr
from tcpdoctor.i18n.width import fill

# How each severity looks on a terminal (one table for the report, tune and watch).
SEVERITY_STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}

_gone = False  # the reader closed stdout: everything else is dropped


def reader_gone() -> None:
    """stdout's reader left: point fd 1 at /dev/null so that later writes and the final
    flush at exit succeed quietly."""
    global _gone
    _gone = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or replaced: nothing to redirect
        pass


def reader_left() -> bool:
    """stdout is a pipe whose reader has closed it (poll reports an error on its write end):
    click's own echo (help, --version) turns that into SystemExit(1)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def on_terminal() -> bool:
    """stdout is a terminal (full-screen views), not a pipe or a file."""
    return sys.stdout.isatty()


def write(text: str) -> None:
    """Text on stdout, flushed at once: a line a long-running command prints reaches a pipe
    or a file when it is printed, not when the command ends."""
    write_lines((text,))


def write_lines(texts: Iterable[str]) -> None:
    """Several pieces, one flush (the trace stream writes a batch of events at a time)."""
    if _gone:
        return
    try:
        for text in texts:
            sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        reader_gone()


def emit_json(obj: Any) -> None:
    """One JSON document (check --json, top --json ...)."""
    write(json.dumps(obj, indent=2) + "\n")


def emit_ndjson(obj: Any) -> None:
    """One line of a JSON stream (watch --json, trace --json, record --json)."""
    write(json.dumps(obj) + "\n")


def notes(lines: list[str]) -> None:
    for line in lines:
        # stderr: stdout stays clean for pipes and --json
        sys.stderr.write(_f("note: {note}", note=line) + "\n")


def _console_class() -> Any:
    from rich.console import Console

    class PipeSafeConsole(Console):
        def on_broken_pipe(self) -> None:
            reader_gone()
            self.quiet = True  # nothing more to render for nobody

    return PipeSafeConsole


def console(**kwargs: Any) -> Any:
    return _console_class()(highlight=False, soft_wrap=False, **kwargs)


def printer() -> tuple[Any, Any]:
    """A rich console and a print function that wraps plain text with hanging indents
    (textwrap, not rich padding: no trailing spaces in captured reports)."""
    from rich.text import Text

    con = _console_class()(highlight=False)
    width = min(con.width, 100)

    def out(text: str, indent: int = 0, hang: int = 0, style: str = "") -> None:
        wrapped = fill(str(tr(text)), width, " " * indent, " " * (indent + hang))
        con.print(Text(wrapped, style=style), soft_wrap=True)

    return con, out
