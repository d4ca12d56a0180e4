"""tcpdoctor(1), written from the commands' own help texts (the ones --help prints).

The package build runs this (setup.py) and installs the page as share/man/man1/tcpdoctor.1;
`python -m tcpdoctor.cli.manpage > tcpdoctor.1` writes it by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from tcpdoctor import __version__
from tcpdoctor.render.output import write
from tcpdoctor.status import ExitCode

SEE_ALSO = r"\fBss\fR(8), \fBnetstat\fR(8), \fBsysctl\fR(8), \fBtcp\fR(7), \fBproc\fR(5)"


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and lines that would read as requests."""
    out = []
    for line in text.replace("\\", "\\e").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _help(text: str) -> list[str]:
    """click's help text as roff paragraphs; \\b paragraphs keep their lines (.nf)."""
    out: list[str] = []
    for para in text.strip().split("\n\n"):
        lines = para.split("\n")
        if lines[0].strip() == "\b":
            body = "\n".join(line[2:] if line.startswith("  ") else line for line in lines[1:])
            out += [".PP", ".nf", _roff(body), ".fi"]
        else:
            out += [".PP", _roff(" ".join(line.strip() for line in lines))]
    return out


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out: list[str] = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        opts, text = record
        out += [".TP", f"\\fB{_roff(opts)}\\fR", _roff(text)]
    return out


def manpage(group: click.Group) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    ctx = click.Context(group, info_name="tcpdoctor")
    lines = [
        f'.TH TCPDOCTOR 1 "{date}" "tcpdoctor {__version__}" "User Commands"',
        ".SH NAME",
        "tcpdoctor \\- find out why a Linux server's TCP connections are exploding",
        ".SH SYNOPSIS",
        ".B tcpdoctor",
        "[\\fICOMMAND\\fR] [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION", *_help(group.help or ""),
        ".SH COMMANDS",
    ]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        usage = " ".join(cmd.collect_usage_pieces(sub))
        lines += [f".SS tcpdoctor {name} {_roff(usage)}", *_help(cmd.help or "")]
        lines += _options(cmd, sub)
    lines += [".SH EXIT STATUS", ".TP", "0", "healthy", ".TP", "1",
              "at least one warning (or a report that lost rows of its input)", ".TP", "2",
              "at least one critical finding", ".TP", str(int(ExitCode.UNKNOWN)),
              "tcpdoctor could not do its job (bad input, no permission, unsupported "
              "system), with a one-line reason on standard error",
              ".SH SEE ALSO", SEE_ALSO]
    return "\n".join(lines) + "\n"


def main() -> None:
    from tcpdoctor.cli import cli

    write(manpage(cli))


if __name__ == "__main__":
    main()
