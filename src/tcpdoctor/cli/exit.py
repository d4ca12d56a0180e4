"""The one place that turns what a command raised into an exit code and one stderr line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import _f, tr
from tcpdoctor.status import ExitCode


def run(invoke: Callable[[], int | None]) -> int:
    """invoke() returns the command's exit code (None = OK)."""
    try:
        code = invoke()
    except TcpDoctorError as exc:
        said = exc.args[0] if len(exc.args) == 1 else str(exc)
        sys.stderr.write(f"tcpdoctor: {tr(said)}\n")
        return ExitCode.UNKNOWN
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:  # one line, like every other error
        where = exc.ctx.command_path if exc.ctx else "tcpdoctor"
        sys.stderr.write(f"tcpdoctor: {exc.format_message()} "
                         + _f("(see {command} --help)", command=where) + "\n")
        return ExitCode.UNKNOWN
    except click.ClickException as exc:
        sys.stderr.write(f"tcpdoctor: {exc.format_message()}\n")
        return ExitCode.UNKNOWN
    except (click.exceptions.Abort, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    except SystemExit as exc:
        from tcpdoctor.render.output import reader_gone, reader_left

        if exc.code == 1 and reader_left():  # click's echo met a closed pipe (--help | head)
            reader_gone()
            return ExitCode.OK
        raise
    except BrokenPipeError:
        # A write that did not go through render.output met a closed pipe: stop quietly.
        from tcpdoctor.render.output import reader_gone

        reader_gone()
        return ExitCode.OK
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("TCPDOCTOR_DEBUG"):
            raise
        sys.stderr.write(_f("tcpdoctor: internal error: {kind}: {exc} (set TCPDOCTOR_DEBUG=1 "
                            "for a traceback)", kind=type(exc).__name__, exc=exc) + "\n")
        return ExitCode.UNKNOWN
    return ExitCode.OK if code is None else int(code)
