"""One checked converter per field kind of the text dumps: ASCII digits only, a bounded
length (Python's int() of a 5,000-digit string raises; a float of '1.2.3' too), a range
that fits the column. None means "not this kind of field": the caller then counts the
line as unparsed (or stops, with --strict), and never raises on it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from tcpdoctor.model.tcp import STATE_ALIASES

PORT = 65_535
PID = 2**31 - 1  # the i4 column; the kernel's pid_max is at most 2**22
U32 = 2**32 - 1  # queues, inodes, uids, tcp_info milliseconds
_DECIMAL = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?")


def whole(text: str, limit: int) -> int | None:
    """A non-negative integer of at most `limit`, written in ASCII digits."""
    if not text or len(text) > len(str(limit)) or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= limit else None


def scaled(text: str, factor: int, limit: int = U32) -> int | None:
    """A decimal such as '1.25' times factor (seconds to ms: 1000), truncated; '1.2.3',
    '.', '1e9' and overflowing values are None."""
    m = _DECIMAL.fullmatch(text)
    if m is None:
        return None
    frac = (m.group(2) or "")[:9]
    value = int(m.group(1)) * factor + (int(frac) * factor) // 10 ** len(frac) if frac \
        else int(m.group(1)) * factor
    return value if value <= limit else None


# Lines a paste carries around a table: a Markdown fence, a shell prompt and its command
# (`$ cat ...`, `# ss`, `root@web1:~# exit`, `angler:/proc/1/net # cat tcp`, `PS C:\> ...`),
# or the command alone, as people copy it above its output (`cat /proc/net/tcp`,
# `netstat -anl | grep 3000 | awk ...`): a line that starts with a command these captures
# come from. No socket row of any format starts with one of these words.
COMMANDS = (rb"(?:cat|ss|netstat|lsof|grep|egrep|awk|watch|head|tail|sort|uniq|wc|ip|nsenter|"
            rb"docker|kubectl|crictl|echo|sysctl|less|more)")
CHATTER = re.compile(rb"^\s*(?:```|~~~|[$#%>]\s|[$#]$|[\w.-]+@[\w.-]+[:~][^\s]*\s*[$#]"
                     rb"|[\w.-]+:[/~][^\s]*\s*[$#]\s|PS [A-Z]:\\|(?:sudo\s+)?" + COMMANDS
                     + rb"\s+[-/'\"|\w])")


def is_chatter(line: bytes | str) -> bool:
    raw = line.encode("utf-8", "replace") if isinstance(line, str) else line
    return bool(CHATTER.match(raw))


# A Markdown fence glued to a row ("```tcp 0 0 ...", "... ESTABLISHED```"): people paste
# tables straight after the backticks. A fence with a word or nothing after it is chatter.
# Plain string operations, linear in the line (a regex with a leading \s* searched over a
# long line of spaces was quadratic: the fuzz harness found it).
FENCES = ("```", "~~~")
ROW_WORDS = 4  # fewer words after a fence: a language tag, not a row


def unfenced(line: str) -> str:
    """The row a fence was glued to, without the fence; a row written as inline code
    (`` `TCP 0.0.0.0:80 ... LISTENING` ``, `` results: `httpd 1 ... (LISTEN)` ``) without
    its backticks; any other line as it is."""
    if "`" in line and "``" not in line:
        return _inline(line)
    body = line.lstrip()
    if body.startswith(FENCES):
        rest = body.lstrip("`~")
        if rest[:1] and not rest[:1].isspace() and len(rest.split()) >= ROW_WORDS:
            line = line[:len(line) - len(body)] + rest
    tail = line.rstrip()
    if tail.endswith(FENCES):
        core = tail.rstrip("`~")
        if len(core.split()) >= ROW_WORDS:
            line = core.rstrip()
    return line


LABEL = 24  # characters before an inline-code row: a label such as "results:", not text


def _inline(line: str) -> str:
    first, last = line.find("`"), line.rfind("`")
    inner = line[first + 1:last].strip()
    if (first < last and first <= LABEL and not line[last + 1:].strip()
            and len(inner.split()) >= ROW_WORDS):
        return inner
    return line


ENDPOINT = re.compile(r"[\w\]*]:(?:\d{1,5}|\*)(?![\w:])")


def _endpoint_at(line: str, at: int) -> bool:
    """An ENDPOINT match is an address and a port, not a clock time ("at 14:05 it grew"):
    the word it ends is not one or two digits."""
    start = max(line.rfind(" ", 0, at), line.rfind("\t", 0, at)) + 1
    word = line[start:at + 1]
    return not (len(word) <= 2 and word.isdigit())


NUMBERED = re.compile(r"\s*\d+:")  # /proc's "12:"


def looks_like_row(line: bytes | str) -> bool:
    """Whether a line that was not understood could have been a socket row: it names a TCP
    state, holds an endpoint (ADDRESS:PORT) or starts with a row number (/proc's "12:").
    Prose around a pasted table does none of these, and is skipped without being counted
    as a lost row."""
    line = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if NUMBERED.match(line) or any(_endpoint_at(line, m.start())
                                   for m in ENDPOINT.finditer(line)):
        return True
    return any(word.strip("()[]").upper() in STATE_ALIASES for word in line.split()[:32])


# What people put where an address was before posting: "...", "…", "x.x.x.x",
# "192.168.1.x", "178.63.YYY.YYY", "XX.XX.XX.XX", "*.*.*.*" with digits kept or not,
# "*snip*", "<ip>", "[REDACTED]", "<server-ip>". A host name never looks like these.
_MASKED_QUAD = re.compile(r"(?:\d{1,3}|[xXyYzZ*#?]{1,3})(?:\.(?:\d{1,3}|[xXyYzZ*#?]{1,3})){3}")
_MASK_WORDS = ("snip", "redact", "hidden", "masked", "removed", "censored", "anonymi")


def is_redacted(text: str) -> bool:
    """Whether an address cell (without its port) was redacted by its poster."""
    if not text or len(text) > 64:
        return False
    if text.strip(".…") == "" or (text.startswith("<") and text.endswith(">")):
        return True
    low = text.lower()
    if any(word in low for word in _MASK_WORDS):
        return True
    return bool(_MASKED_QUAD.fullmatch(text)) and not all(
        part.isdigit() for part in text.split("."))


def unfenced_lines(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    return ((no, unfenced(text)) for no, text in lines)


def rejoined(lines: Iterable[tuple[int, str]], first: tuple[str, ...],
             fields: int) -> Iterator[tuple[int, str]]:
    """Rows a narrow terminal or a web page broke in two (a long IPv6 address pushed the
    rest onto the next line) joined again: a row start (its first word in `first`) with
    fewer than `fields` words and no state, followed by a line that starts no row."""
    held: tuple[int, str] | None = None
    for no, line in lines:
        if held is not None:
            f = line.split()
            if f and f[0] not in first and f[0] not in ROW_STARTS:
                yield held[0], f"{held[1]} {line.strip()}"
                held = None
                continue
            yield held
            held = None
        # A broken row ends with its last endpoint; a whole row goes on after it (a state,
        # an owner, a timer). Only the former is split here: the parser reads rows once.
        colon = line.rfind(":")
        after = line.find(" ", colon) if colon >= 0 else 0
        if (colon >= 0 and (after < 0 or not line[after:].strip())
                and line.lstrip().startswith(first)):
            f = line.split()
            if (f[0] in first and len(f) < fields
                    and not any(w.upper() in STATE_ALIASES for w in f)):
                held = (no, line)
                continue
        yield no, line
    if held is not None:
        yield held


# First words of the lines that start something of their own in a netstat listing.
ROW_STARTS = {"tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix", "TCP", "UDP", "Proto",
              "Active", "Netid", "State"}


def lost_first_cell(f: list[str]) -> bool:
    """A netstat row whose protocol cell was lost in the copy ("0 0 1.2.3.4:80 ... LISTEN")."""
    return (len(f) >= 5 and whole(f[0], U32) is not None and whole(f[1], U32) is not None
            and ":" in f[2] and ":" in f[3] and f[4].upper() in STATE_ALIASES)
