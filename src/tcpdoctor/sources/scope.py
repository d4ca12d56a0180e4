"""Which namespaces a plain `check` or `watch` looks at, and what the others hold.

A paged SRE types `tcpdoctor check`, not `--netns all`: run as root in the host's own
namespace, tcpdoctor reads every namespace of the host when there are others (their
sockstat is read first, so idle ones cost almost nothing). Run inside another namespace
(`ip netns exec`, a container), it reads that one, as the user chose it. Without the
rights to read the others, the report says they exist and were not read. `states`, `top`
and `snapshot` keep the current namespace and only say what the others hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tcpdoctor.i18n import Msg
from tcpdoctor.sources import namespaces, netns
from tcpdoctor.sources.target import Target


@dataclass
class Scope:
    every: bool  # read every namespace
    busy: int = 0  # of them, those holding TCP sockets (sockstat)
    sockets: int = 0  # the TCP sockets they hold
    notes: list[str] = field(default_factory=list)

    def hint(self) -> str | None:
        """One line for commands that keep the current namespace (states, top, snapshot)."""
        if self.busy:
            return Msg("{busy} other network namespace(s) hold {sockets:,} TCP sockets: "
                       "--netns all shows them", busy=self.busy, sockets=self.sockets)
        return self.notes[0] if self.notes else None


def default_scope(target: Target, count: bool = False) -> Scope:
    """What a command given no --netns should look at, from the namespace it runs in;
    count: also what the others hold (for the note of states, top and snapshot; check and
    watch read every namespace anyway, with a sockstat pass of their own)."""
    proc = target.proc_root
    if netns.in_initial(proc) is False:
        return Scope(False)  # inside a chosen namespace: that one
    if os.geteuid() != 0:
        named = [netns.printable(n) for n in netns.named()]
        if not named:
            return Scope(False)
        return Scope(False, notes=[Msg(
            "{n} other network namespace(s) exist ({names}) and were not read: reading them "
            "needs root", n=len(named), names=", ".join(named[:3]) + (", ..." if len(named) > 3
                                                                      else ""))])
    from tcpdoctor.sources import every_netns

    others = namespaces.discover(proc).namespaces[1:]
    if not others or not count:
        return Scope(bool(others))
    counts = [every_netns.tcp_sockets(s) for s in every_netns.sockstats(target, others)]
    busy = [n for n in counts if n != 0]
    return Scope(True, len(busy), sum(n for n in busy if n > 0))
