"""The command line (click only): one module per command family, the shared options in
options.py, exit codes in exit.py. Nothing here parses input or formats reports."""

from __future__ import annotations

import importlib
import sys

import click

from tcpdoctor import __version__
from tcpdoctor.cli.exit import run

# Command -> the module that defines it. A command's module (and what it imports) is loaded
# only when that command runs: start-up costs only what the command uses.
COMMANDS = {
    "check": "check", "analyze": "check", "states": "sockets", "top": "sockets",
    "snapshot": "sockets", "diff": "sockets", "tune": "tune", "watch": "watch",
    "record": "history", "history": "history", "exporter": "exporter", "lab": "lab",
    "collect": "collect", "trace": "trace",
}


class DefaultGroup(click.Group):
    """`tcpdoctor` alone (or with only options) runs `check`; commands load on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"tcpdoctor.cli.{COMMANDS[cmd_name]}")
        return next(c for c in module.COMMANDS if c.name == cmd_name)

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit codes follow docs/spec.md (0/1/2 health, 3 = could
    not run)."""
    sys.exit(run(lambda: cli.main(args=argv, prog_name="tcpdoctor", standalone_mode=False)))
