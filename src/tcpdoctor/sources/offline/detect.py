"""Which kind of capture a pasted text is, from its first lines, and what is refused.

Decided by the first decisive line, so that a paste with a shell prompt, a Markdown fence
or a translated header before its rows is still recognised: a column header where there is
one (Linux netstat heads "Recv-Q", Windows netstat does not), else the rows themselves.
"""

from __future__ import annotations

import re

from tcpdoctor.i18n import Msg
from tcpdoctor.model.tcp import STATE_ALIASES
from tcpdoctor.sources.offline import lsof
from tcpdoctor.sources.offline.foreign import bsd_proto_at
from tcpdoctor.sources.offline.textdump import SS_STATES

# Formats recognised in order to be refused, each with what to capture instead.
# (Counts per state and `ss -s` are read as counts: sources/offline/counts.py.)
COUNTS = ("state-counts", "ss-summary")
REFUSED = {
    "bsd-nostate": Msg("a FreeBSD/macOS `netstat` whose state column is replaced by counters "
                       "(-T or -x): capture `netstat -an` instead"),
}
BSD_ONLY = ("tcp4", "tcp46")
_COUNT_LINE = re.compile(r"^\s*([0-9]+)\s+([A-Za-z][A-Za-z0-9_-]*)\s*$")  # uniq -c
_STATE_COUNT = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s*[:=]\s*|\s+)[0-9]+\s*$")  # awk
COUNT_LINE_MAX = 200  # characters: a count line is short (and a long one costs no regex)


def detect(head: list[str]) -> str | None:
    """ss, netstat, windows, bsd, proc, or one of REFUSED; None when nothing is recognised."""
    if any(line.strip().startswith("TCP:") and "estab" in line for line in head[:8]):
        return "ss-summary"
    if _state_counts(head):
        return "state-counts"
    # Linux netstat says tcp6 too, but never tcp4 or tcp46.
    if any(bsd_proto_at(f) is not None and any(w in BSD_ONLY for w in f[:3])
           for f in map(str.split, head)):
        return "bsd" if _bsd_has_states(head) else "bsd-nostate"
    for line in head:
        kind = decisive(line.split(), line)
        if kind:
            return kind
    return None


def decisive(f: list[str], line: str) -> str | None:
    """The kind a single line proves, if any (a header, or a socket row)."""
    if not f:
        return None
    if f[0] == "sl" and "local_address" in line:
        return "proc"
    if f[0] in ("State", "Netid") and "Local" in line:
        return "ss"
    if f[0] == "Proto":
        return "bsd" if "(state)" in line else "netstat" if "Recv-Q" in line else "windows"
    if line.startswith("Active Connections"):
        return "windows"
    if lsof.is_header(line) or lsof.is_row(line):
        return "lsof"
    return decisive_row(f, line)


def decisive_row(f: list[str], line: str) -> str | None:
    """The kind a socket row is written in (ss, Linux netstat, Windows netstat)."""
    if not f:
        return None
    if f[0] in SS_STATES or (f[0] == "tcp" and len(f) > 1 and f[1] in SS_STATES):
        return "ss"
    if f[0] in ("tcp", "tcp6") and len(f) > 5:
        return "netstat"
    if f[0] == "TCP" and len(f) >= 3:
        return "windows"
    return None


def is_tcp_row(f: list[str], line: str) -> bool:
    """A socket row of any format read (Linux/Windows netstat, ss, BSD netstat)."""
    return bool(f) and (bsd_proto_at(f) is not None
                        or decisive_row(f, line) in ("ss", "netstat", "windows"))


def _bsd_has_states(head: list[str]) -> bool:
    headers = [line for line in head if "Proto" in line.split()[:3]]
    return not headers or any("(state)" in line for line in headers)


def _state_counts(head: list[str]) -> bool:
    """Lines of "COUNT STATE" (uniq -c) or "STATE COUNT" (awk), and no socket row."""
    short = [line for line in head if len(line) <= COUNT_LINE_MAX]
    states = [m for line in short if (m := _COUNT_LINE.match(line))
              and m.group(2).upper() in STATE_ALIASES]
    states += [m for line in short if (m := _STATE_COUNT.match(line))
               and m.group(1).upper() in STATE_ALIASES]
    rows = [line for line in head if decisive(line.split(), line) in ("ss", "netstat",
                                                                        "windows")
            and not (len(line) <= COUNT_LINE_MAX
                     and (_COUNT_LINE.match(line) or _STATE_COUNT.match(line)))]
    return len(states) >= 2 and not rows


def common_prefix(head: list[str]) -> str:
    """What every non-empty line starts with, made of blanks and quote marks (a Markdown
    code block, an e-mail quote "> "), to be taken off before parsing: ss marks its
    continuation lines by leading blanks, so a shared indentation would hide the rows."""
    prefixes = [line[:len(line) - len(line.lstrip(" \t>"))] for line in head if line.strip()]
    if not prefixes:
        return ""
    common = min(prefixes)
    for other in prefixes:  # characters, not path components: os.path's helper is for paths
        while not other.startswith(common):
            common = common[:-1]
    return common


def dedent(line: str, prefix: str) -> str:
    return line[len(prefix):] if line.startswith(prefix) else line.lstrip(" \t>")
