"""Which findings ending sockets can relieve, and which of their sockets it may end.

Relief stops the bleeding (file descriptors, ports, memory) while the application fix,
which every such finding still names, is deployed: it is never the cure.
"""

from __future__ import annotations

import shlex

from tcpdoctor.model.tcp import (
    TCP_CLOSE_WAIT,
    TCP_CLOSING,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_TIME_WAIT,
)

# finding id -> the states of its sockets that relief may end
RELIEF_STATES: dict[str, tuple[int, ...]] = {
    "CLOSE_WAIT_LEAK": (TCP_CLOSE_WAIT,),
    "IDLE_ESTABLISHED": (TCP_ESTABLISHED,),
    # Only the TIME_WAIT towards the exhausted destination: the live connections are in use.
    "EPHEMERAL_PORT_EXHAUSTION": (TCP_TIME_WAIT,),
    "ORPHAN_PRESSURE": (TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_CLOSING),
    "FIN_WAIT2_BUILDUP": (TCP_FIN_WAIT2,),
}


def relief_command(finding_id: str, netns: str | None = None) -> str | None:
    """The dry run that shows what relieving this finding would end (None: it cannot help)."""
    if finding_id not in RELIEF_STATES:
        return None
    where = f" --netns {shlex.quote(netns)}" if netns and netns not in ("all", "host") else ""
    return f"tcpdoctor relieve {finding_id}{where}"
