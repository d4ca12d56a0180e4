"""Which kind of capture a pasted text is, from its first lines, and what is refused.

Decided by the first decisive line, so that a paste with a shell prompt, a Markdown fence
or a translated header before its rows is still recognised: a column header where there is
one (Linux netstat heads "Recv-Q", Windows netstat does not), else the rows themselves.
"""

from __future__ import annotations

import re

from tcpdoctor.i18n import Msg
from tcpdoctor.sources.offline import foreign, lsof, table, textdump
from tcpdoctor.sources.offline.counts import SS_S_LINE_MAX, line_counts
from tcpdoctor.sources.offline.fields import looks_like_row, unfenced

PARSERS = {"ss": textdump.parse_ss, "netstat": textdump.parse_netstat,
           "windows": foreign.parse_windows, "bsd": foreign.parse_bsd, "lsof": lsof.parse_lsof,
           "table": table.parse_table}
LABELS = {"proc": "/proc/net/tcp", "ss": "ss", "netstat": "netstat",
          "windows": "Windows netstat", "bsd": "macOS/FreeBSD netstat", "lsof": "lsof",
          "table": "connection table"}

# Formats recognised in order to be refused, each with what to capture instead.
# (Counts per state and `ss -s` are read as counts: sources/offline/counts.py.)
COUNTS = ("state-counts", "ss-summary")
REFUSED = {
    "bsd-nostate": Msg("a FreeBSD/macOS `netstat` whose state column is replaced by counters "
                       "(-T or -x): capture `netstat -an` instead"),
}
BSD_ONLY = ("tcp4", "tcp46")
SS_SUMMARY = re.compile(r"(?:^|\s)TCP:\s+[0-9]+\s+\(estab ")


def detect(head: list[str]) -> str | None:
    """ss, netstat, windows, bsd, proc, or one of REFUSED; None when nothing is recognised."""
    head = [unfenced(line) for line in head]
    if any(SS_SUMMARY.search(line[:SS_S_LINE_MAX]) for line in head[:8]):
        return "ss-summary"
    if _state_counts(head):
        return "state-counts"
    # Linux netstat says tcp6 too, but never tcp4 or tcp46.
    if any(foreign.bsd_proto_at(f) is not None and any(w in BSD_ONLY for w in f[:3])
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
    if f[0] in ("State", "Netid") and "Recv-Q" in line:
        return "ss"
    if f[0] == "Proto":
        if "(state)" in line or "Recv-Q" in line:
            return "bsd" if "(state)" in line else "netstat"
        # Windows names its columns Local Address and Foreign Address (translated
        # elsewhere, under another first word); another tool's table says Local, Remote.
        return "windows" if "Foreign" in line or not table.header_order(line) else "table"
    if line.startswith("Active Connections"):
        return "windows"
    if lsof.is_header(line) or lsof.is_row(line):
        return "lsof"
    return decisive_row(f, line) or ("table" if table.header_order(line) else None)


def decisive_row(f: list[str], line: str) -> str | None:
    """The kind a socket row is written in (ss, Linux netstat, Windows netstat)."""
    if not f:
        return None
    if f[0] in textdump.SS_STATES or (f[0] == "tcp" and len(f) > 1 and f[1] in textdump.SS_STATES):
        return "ss"
    if f[0] in ("tcp", "tcp6") and len(f) > 5:
        return "netstat"
    if f[0] == "TCP" and len(f) >= 3:
        return "windows"
    return None


def is_tcp_row(f: list[str], line: str) -> bool:
    """A socket row of any format read (Linux/Windows netstat, ss, BSD netstat)."""
    return bool(f) and (foreign.bsd_proto_at(f) is not None
                        or decisive_row(f, line) in ("ss", "netstat", "windows"))


def _bsd_has_states(head: list[str]) -> bool:
    headers = [line for line in head if "Proto" in line.split()[:3]]
    return not headers or any("(state)" in line for line in headers)


def _state_counts(head: list[str]) -> bool:
    """Counts per state ("COUNT STATE" of uniq -c, "STATE COUNT" of awk, a web page's
    squeezed line of either) for two states at least, and no socket row."""
    found = [line_counts(line) for line in head]
    states = sum(len(pairs) for pairs in found if pairs)
    rows = [line for line, pairs in zip(head, found, strict=True) if not pairs
            and decisive(line.split(), line) in ("ss", "netstat", "windows")]
    return states >= 2 and not rows


def common_prefix(head: list[str]) -> str:
    """What every non-empty line starts with, made of blanks and quote marks (a Markdown
    code block, an e-mail quote "> "), to be taken off before parsing: ss marks its
    continuation lines by leading blanks, so a shared indentation would hide the rows.
    Only the table's lines count when there are any: a sentence above a quoted or indented
    table ("I see this:" then "> tcp ...") has no indentation of its own."""
    table = [line for line in head if line.strip() and looks_like_row(line)]
    prefixes = [line[:len(line) - len(line.lstrip(" \t>"))] for line in table or head
                if line.strip()]
    if not prefixes:
        return ""
    common = min(prefixes)
    for other in prefixes:  # characters, not path components: os.path's helper is for paths
        while not other.startswith(common):
            common = common[:-1]
    return common


def dedent(line: str, prefix: str) -> str:
    return line[len(prefix):] if line.startswith(prefix) else line.lstrip(" \t>")
