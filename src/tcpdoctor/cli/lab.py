"""`lab`: build a pathology in throwaway namespaces and hold it (root only)."""

from __future__ import annotations

import click

from tcpdoctor.i18n import _f
from tcpdoctor.render.output import write


@click.command()
@click.argument("scenario", required=False)
@click.option("--sockets", "--n", "count", type=click.IntRange(min=1),
              help="How many sockets to build (--n: the older spelling).")
@click.option("--hold", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to hold the pathology before tearing it down.")
@click.option("--list", "list_all", is_flag=True, help="List the scenarios.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab's details as JSON.")
@click.option("--cleanup", is_flag=True,
              help="Remove what labs killed with SIGKILL left: tdlab-* namespaces and the "
                   "lab workers inside them.")
def lab(scenario: str | None, count: int | None, hold: float, list_all: bool,
        as_json: bool, cleanup: bool) -> None:
    """Build a pathology in a throwaway network namespace and hold it (root only).

    \b
    Traffic stays inside two namespaces the lab creates (198.18.0.0/15, RFC 2544);
    everything is removed on exit, Ctrl-C or SIGTERM.

    \b
    Examples:
      tcpdoctor lab --list
      sudo tcpdoctor lab close-wait --hold 60 &
      sudo tcpdoctor check --netns <printed name>
      sudo tcpdoctor lab --cleanup               after a lab was killed with SIGKILL
    """

    from tcpdoctor.lab import runner

    if cleanup:
        from tcpdoctor.lab.net import cleanup as remove_leftovers

        removed = remove_leftovers()
        write(_f("removed {n} namespace(s)", n=len(removed))
                         + (": " + " ".join(removed) if removed else "") + "\n")
        return

    if list_all or scenario is None:
        runner.list_scenarios()
        return
    runner.run(scenario, count, hold, as_json)


COMMANDS = (lab,)
