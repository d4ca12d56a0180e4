"""The command line (click only): one module per command family, the shared options in
options.py, exit codes in exit.py. Nothing here parses input or formats reports."""

from __future__ import annotations

import importlib
import os
import sys

import click

from tcpdoctor import __version__
from tcpdoctor.cli.exit import run
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import LANGUAGES, Msg, _, choose, language, set_language

# Command -> the module that defines it. A command's module (and what it imports) is loaded
# only when that command runs: start-up costs only what the command uses.
COMMANDS = {
    "check": "check", "analyze": "check", "states": "sockets", "top": "sockets",
    "snapshot": "sockets", "diff": "sockets", "tune": "tune", "watch": "watch",
    "record": "history", "history": "history", "exporter": "exporter", "lab": "lab",
    "collect": "collect", "trace": "trace", "relieve": "relieve", "conntrack": "conntrack",
}


class DefaultGroup(click.Group):
    """`tcpdoctor` alone (or with only options) runs `check`; commands load on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"tcpdoctor.cli.{COMMANDS[cmd_name]}")
        return localize(next(c for c in module.COMMANDS if c.name == cmd_name))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        completing = ctx.resilient_parsing  # shell completion lists the commands instead
        if not completing and (not args or (args[0].startswith("-") and args[0] not in (
                "--help", "-h", "--version"))):
            args = ["check", *args]
        return super().parse_args(ctx, args)


def _version_message() -> str:
    """--version: tcpdoctor's, and what it would read on this host."""
    import os

    from tcpdoctor.sources.live import source_in_use

    source = source_in_use()
    return (f"tcpdoctor {__version__}\nkernel: Linux {os.uname().release}\n"
            f"source: {source}")


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit()


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Show the version, the kernel and the source it would read, and exit.")
# take_lang removes --lang before click parses (it may stand after any command); the option is
# declared here so that --help and the man page show it.
@click.option("--lang", type=click.Choice(sorted(LANGUAGES)), expose_value=False,
              help="Language of the text for people: zh (Chinese) or en (English); also "
                   "TCPDOCTOR_LANG, then LANG and the other locale variables. Works before "
                   "or after any command. JSON output is the same in every language.")
def cli() -> None:
    """Find out why this server's TCP connections are exploding, and how to fix it.

    \b
    Examples:
      tcpdoctor                          diagnose this host (same as `tcpdoctor check`)
      tcpdoctor states                   counts per TCP state
      tcpdoctor top --by remote-ip,state -n 5
      tcpdoctor check --netns blue --json
      tcpdoctor watch                    live view, q quits
      tcpdoctor record --interval 10 &   history; then: tcpdoctor history --html report.html
    """


def take_lang(args: list[str]) -> tuple[str | None, list[str]]:
    """--lang VALUE (or --lang=VALUE), wherever it is on the command line, taken out of it:
    the language must be known before click writes a word (--help, its errors)."""
    rest: list[str] = []
    lang = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--lang" or arg.startswith("--lang="):
            if arg == "--lang":
                if i + 1 >= len(args):
                    raise TcpDoctorError(Msg("--lang needs a value: {choices}",
                                             choices=_choices()))
                value, i = args[i + 1], i + 1
            else:
                value = arg.split("=", 1)[1]
            if value not in LANGUAGES:
                raise TcpDoctorError(Msg("--lang {value}: unknown language; choose one of "
                                         "{choices}", value=value, choices=_choices()))
            lang = value
        else:
            rest.append(arg)
        i += 1
    return lang, rest


def _choices() -> str:
    return ", ".join(f"{code} ({name})" for code, name in sorted(LANGUAGES.items()))


def localize(command: click.Command) -> click.Command:
    """The command's help texts in the chosen language (click prints them as given)."""
    if language() == "en" or getattr(command, "_localized", False):
        return command
    command.help = _(command.help) if command.help else command.help
    command.short_help = _(command.short_help) if command.short_help else None
    for param in command.params:
        if isinstance(param, click.Option) and param.help:
            param.help = _(param.help)
    command._localized = True  # type: ignore[attr-defined]
    return command


def wrap_help_in_cells() -> None:
    """click wraps help by characters; a Chinese character takes two terminal cells, so its
    paragraphs would run twice as wide. Its wrapper is given one that counts cells."""
    from click._textwrap import TextWrapper

    from tcpdoctor.i18n.width import fill

    by_chars = TextWrapper.fill
    if getattr(by_chars, "in_cells", False):
        return

    def by_cells(self: TextWrapper, text: str) -> str:
        if text.isascii():
            return by_chars(self, text)
        return fill(" ".join(text.split()), self.width, self.initial_indent,
                    self.subsequent_indent)

    by_cells.in_cells = True  # type: ignore[attr-defined]
    TextWrapper.fill = by_cells  # type: ignore[method-assign, assignment]


def start(argv: list[str] | None) -> int | None:
    from tcpdoctor.util.malloc import limit_malloc_arenas

    limit_malloc_arenas()  # every command: a million-socket table is freed in pieces
    lang, args = take_lang(list(sys.argv[1:] if argv is None else argv))
    set_language(choose(lang))
    if language() != "en":
        wrap_help_in_cells()
    localize(cli)
    result: int | None = cli.main(args=args, prog_name="tcpdoctor", standalone_mode=False)
    return result


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit codes follow docs/spec.md (0/1/2 health, 3 = could
    not run)."""
    # numpy's OpenBLAS starts a thread per CPU at import, and nothing here multiplies
    # matrices: one thread leaves the cores to the dump (set before numpy loads).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(run(lambda: start(argv)))
