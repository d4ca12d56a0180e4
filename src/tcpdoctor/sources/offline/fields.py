"""One checked converter per field kind of the text dumps: ASCII digits only, a bounded
length (Python's int() of a 5,000-digit string raises; a float of '1.2.3' too), a range
that fits the column. None means "not this kind of field": the caller then counts the
line as unparsed (or stops, with --strict), and never raises on it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

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
# (`$ cat ...`, `# ss`, `root@web1:~# exit`, `PS C:\> ...`), nothing else.
CHATTER = re.compile(rb"^\s*(?:```|~~~|[$#%>]\s|[$#]$|[\w.-]+@[\w.-]+[:~][^\s]*\s*[$#]"
                     rb"|PS [A-Z]:\\)")


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
    """The row a fence was glued to, without the fence; any other line as it is."""
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


def unfenced_lines(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    return ((no, unfenced(text)) for no, text in lines)
