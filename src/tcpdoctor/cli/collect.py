"""`collect`: the dependency-free script that gathers a bundle on a host without tcpdoctor."""

from __future__ import annotations

import sys

import click

from tcpdoctor.i18n import _f
from tcpdoctor.render.output import write


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the script to this file (executable) instead of printing it.")
def collect(output: str | None) -> None:
    """Print a POSIX sh script that gathers everything `analyze` needs into one bundle.

    \b
    The script needs no Python and no tcpdoctor: a shell, cat, head, ls, awk, tar and
    gzip (BusyBox is enough); it uses ss and ip when they exist. It reads /proc twice,
    INTERVAL seconds apart (rates), and writes tcpdoctor-HOST-TIME.tar.gz: sockets (ss
    -tanpoiem, and /proc/net/tcp{,6} always), sockstat, netstat, snmp, conntrack, the
    sysctls tcpdoctor reads, TCP slab sizes, open files and limits of the processes that
    own sockets, the sysctl.d files, uname, host and time. It changes nothing on the host;
    run it as root for owners and slab sizes (without root it says what is missing).
    Script options: -i SECONDS (default 5), -d DIR, --all-netns (named namespaces).

    \b
    Examples:
      tcpdoctor collect -o collect.sh && scp collect.sh web1:
      ssh web1 sudo sh collect.sh -i 10          prints the bundle's path
      tcpdoctor analyze tcpdoctor-web1-20261126T101500Z.tar.gz
      tcpdoctor analyze BUNDLE.tar.gz --netns blue     a namespace of an --all-netns bundle
      tcpdoctor diff before.tar.gz after.tar.gz
    """
    from tcpdoctor.render.collect import script

    text = script()
    if output is None:
        write(text)
        return
    from tcpdoctor.util.atomic import atomic_write_bytes

    atomic_write_bytes(output, text.encode(), mode=0o755)
    sys.stderr.write(_f("wrote {path}: run it on the server with `sudo sh {path}`",
                        path=output) + "\n")


COMMANDS = (collect,)
