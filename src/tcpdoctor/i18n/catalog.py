"""The catalog's files: read a .po, write the .mo gettext loads (no msgfmt needed: a fresh
machine has none). `python -m tcpdoctor.i18n.catalog` rebuilds every .mo from its .po; a
test checks that the committed .mo files are what their .po files build.
"""

from __future__ import annotations

import ast
import glob
import os
import struct
import sys
from dataclasses import dataclass, field

from tcpdoctor.i18n import LOCALEDIR

HEADER_PLURALS = "nplurals=1; plural=0;"


@dataclass
class Entry:
    msgid: str
    msgstr: str
    plural: str | None = None
    plural_strs: list[str] = field(default_factory=list)


def _unquote(line: str) -> str:
    value: str = ast.literal_eval(line)
    return value


def read_po(path: str) -> list[Entry]:
    """Entries of a .po file (msgid, msgid_plural, msgstr, msgstr[N]; comments skipped)."""
    entries: list[Entry] = []
    fields: dict[str, str] = {}
    key = ""

    def flush() -> None:
        if "msgid" in fields:
            plurals = [fields[k] for k in sorted(f for f in fields if f.startswith("msgstr["))]
            entries.append(Entry(fields["msgid"], fields.get("msgstr", ""),
                                 fields.get("msgid_plural"), plurals))
        fields.clear()

    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith('"'):
                fields[key] += _unquote(line)
                continue
            key, _, rest = line.partition(" ")
            if key == "msgid":
                flush()
            fields[key] = _unquote(rest)
    flush()
    return entries


def mo_bytes(entries: list[Entry]) -> bytes:
    """The GNU .mo layout: header, sorted originals, translations (no hash table)."""
    pairs = []
    for e in entries:
        if e.plural is not None:
            if any(e.plural_strs):
                pairs.append((f"{e.msgid}\0{e.plural}", "\0".join(e.plural_strs)))
        elif e.msgstr or not e.msgid:
            pairs.append((e.msgid, e.msgstr))
    pairs.sort()
    ids = [k.encode() for k, _ in pairs]
    strs = [v.encode() for _, v in pairs]
    n = len(pairs)
    start = 7 * 4 + 16 * n
    table_ids: list[tuple[int, int]] = []
    table_strs: list[tuple[int, int]] = []
    blob = b""
    for data, table in ((ids, table_ids), (strs, table_strs)):
        for s in data:
            table.append((len(s), start + len(blob)))
            blob += s + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    tables = b"".join(struct.pack("<2I", *t) for t in table_ids + table_strs)
    return head + tables + blob


def catalogs() -> list[str]:
    return sorted(glob.glob(os.path.join(LOCALEDIR, "*", "LC_MESSAGES", "*.po")))


def build(po: str) -> str:
    mo = po[:-3] + ".mo"
    tmp = mo + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(mo_bytes(read_po(po)))
    os.replace(tmp, mo)
    return mo


if __name__ == "__main__":
    for po in catalogs():
        sys.stdout.write(build(po) + "\n")
