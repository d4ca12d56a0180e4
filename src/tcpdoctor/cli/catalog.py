"""The catalog's files, a maintainer tool: read a .po, write the .mo gettext loads (no msgfmt
needed: a fresh machine has none), and find every text the catalog must translate.

What it must cover, and why it is bounded that way:
- tcpdoctor's own texts (the code's Msg/_/_f literals, rule titles, evidence keys, help
  texts, i18n/words.py): exactly, no more and no less;
- click's own texts (usage lines, headings, its errors): every one any click of the declared
  range has shown. They are added when a newer click brings them and never dropped, because
  an older click of the range still uses them. A click release that adds a text therefore
  cannot make the catalog "stale"; tests check what users see (help and errors in Chinese).

    python -m tcpdoctor.cli.catalog update    add new texts (untranslated), drop unused ones
    python -m tcpdoctor.cli.catalog           rebuild every .mo from its .po
"""

from __future__ import annotations

import ast
import glob
import os
import struct
import sys
from dataclasses import dataclass, field

from tcpdoctor.i18n import LOCALEDIR
from tcpdoctor.render.output import write
from tcpdoctor.util.atomic import atomic_write, atomic_write_bytes


@dataclass
class Entry:
    msgid: str
    msgstr: str
    plural: str | None = None
    plural_strs: list[str] = field(default_factory=list)
    where: str = ""  # the "#:" reference: where the text is used ("click/core.py" ...)

    @property
    def from_click(self) -> bool:
        return self.where.startswith("click/")

    @property
    def key(self) -> str:
        """What the .mo and wanted() know it by: the msgid, or msgid NUL plural."""
        return self.msgid if self.plural is None else f"{self.msgid}\0{self.plural}"


def _unquote(line: str) -> str:
    value: str = ast.literal_eval(line)
    return value


def read_po(path: str) -> list[Entry]:
    """Entries of a .po file (msgid, msgid_plural, msgstr, msgstr[N]; comments skipped)."""
    entries: list[Entry] = []
    fields: dict[str, str] = {}
    key = ""
    where = ""

    def flush() -> None:
        if "msgid" in fields:
            plurals = [fields[k] for k in sorted(f for f in fields if f.startswith("msgstr["))]
            entries.append(Entry(fields["msgid"], fields.get("msgstr", ""),
                                 fields.get("msgid_plural"), plurals, where))
        fields.clear()

    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if line.startswith("#:"):
                flush()
                where = line[2:].strip()
                continue
            if not line or line.startswith("#"):
                continue
            if line.startswith('"'):
                fields[key] += _unquote(line)
                continue
            key, _, rest = line.partition(" ")
            if key == "msgid" and "msgid" in fields:
                flush()
                where = ""
            fields[key] = _unquote(rest)
    flush()
    return entries


def mo_bytes(entries: list[Entry]) -> bytes:
    """The GNU .mo layout: header, sorted originals, translations (no hash table)."""
    pairs = []
    for e in entries:
        if e.plural is not None:
            if any(e.plural_strs):
                pairs.append((e.key, "\0".join(e.plural_strs)))
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


PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = ("Msg", "_", "_f")
# click's own texts a tcpdoctor user can meet (usage, help, its errors).
CLICK_MODULES = ("core", "exceptions", "formatting", "parser", "types", "decorators")


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


def code_ids() -> dict[str, str]:
    """msgid -> where it is first used: Msg/_/_f calls with a literal, rule titles, the
    evidence keys rules report (shown as labels)."""
    found: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, os.path.dirname(PACKAGE))
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else ""
            texts: list[str | None] = []
            if name in MARKERS and node.args:
                texts.append(_literal(node.args[0]))
            elif name == "rule" and len(node.args) > 1:
                texts.append(_literal(node.args[1]))
            elif name == "Found" and len(node.args) > 2:
                texts += [_literal(k) for d in ast.walk(node.args[2]) if isinstance(d, ast.Dict)
                          for k in d.keys if k is not None]
            for text in texts:
                if text:
                    found.setdefault(text, f"{rel}:{node.lineno}")
    return found


def help_ids() -> dict[str, str]:
    """Every command's and option's help text, as click prints it."""
    import click

    from tcpdoctor.cli import COMMANDS, cli

    found: dict[str, str] = {}
    ctx = click.Context(cli)
    commands: list[click.Command] = [cli]
    commands += [c for c in (cli.get_command(ctx, n) for n in COMMANDS) if c is not None]
    for cmd in commands:
        for text in (cmd.help, cmd.short_help):
            if text:
                found.setdefault(text, f"--help of {cmd.name}")
        for param in cmd.params:
            if isinstance(param, click.Option) and param.help:
                found.setdefault(param.help, f"--help of {cmd.name} {param.opts[0]}")
    return found


def click_ids() -> dict[str, str]:
    """click's own texts (msgid, or msgid NUL plural for ngettext)."""
    import click

    found: dict[str, str] = {}
    for module in CLICK_MODULES:
        path = os.path.join(os.path.dirname(click.__file__), f"{module}.py")
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                one = _literal(node.args[0]) if node.args else None
                if node.func.id == "_" and one:
                    found.setdefault(one, f"click/{module}.py")
                elif node.func.id == "ngettext" and one and len(node.args) > 1:
                    other = _literal(node.args[1])
                    found.setdefault(f"{one}\0{other}", f"click/{module}.py")
    return found


def own_ids() -> dict[str, str]:
    """Every text of tcpdoctor's own the catalog must translate, with where it is used."""
    from tcpdoctor.analysis.dimensions import GROUP_KEYS
    from tcpdoctor.i18n.words import WORDS

    out = {w: "tcpdoctor/i18n/words.py" for w in (*WORDS, *GROUP_KEYS)}
    for part in (code_ids(), help_ids()):
        for k, v in part.items():
            out.setdefault(k, v)
    return out


def _quote(text: str) -> str:
    """A .po string: one quoted line per source line, as msgmerge writes them."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    lines = body.split("\n")
    parts = [line + "\\n" for line in lines[:-1]] + [lines[-1]]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return f'"{parts[0] if parts else ""}"'
    return '""\n' + "\n".join(f'"{p}"' for p in parts)


def write_po(path: str, entries: list[Entry], where: dict[str, str], header: str) -> None:
    """The catalog, sorted by where each text is used; written whole, then renamed."""
    out = [f'msgid ""\nmsgstr {_quote(header)}\n']
    for e in sorted((e for e in entries if e.msgid),
                    key=lambda e: (where.get(e.key, "~"), e.msgid)):
        out.append(f"#: {where.get(e.key, e.where or 'unused')}")
        if e.plural is None:
            out.append(f"msgid {_quote(e.msgid)}\nmsgstr {_quote(e.msgstr)}\n")
        else:
            strs = e.plural_strs or [""]
            out.append(f"msgid {_quote(e.msgid)}\nmsgid_plural {_quote(e.plural)}\n"
                       + "".join(f"msgstr[{i}] {_quote(s)}\n" for i, s in enumerate(strs)))
    atomic_write(path, "\n".join(out))


def update(po: str) -> tuple[int, int]:
    """Add the texts the code now uses (untranslated), drop those it no longer uses:
    (added, dropped)."""
    entries = read_po(po) if os.path.exists(po) else []
    header = next((e.msgstr for e in entries if not e.msgid), HEADER)
    own, theirs = own_ids(), click_ids()
    have = {e.key: e for e in entries if e.msgid}
    # click's texts stay: an older click of the declared range may still show them
    kept = [e for k, e in have.items() if k in own or (e.from_click and k not in own)]
    want = {**{e.key: e.where for e in kept if e.from_click}, **theirs, **own}
    added = [_blank(k) for k in want if k not in have]
    write_po(po, kept + added, want, header)
    return len(added), len(have) - len(kept)


def _blank(key: str) -> Entry:
    """An untranslated entry for a msgid (or msgid NUL plural)."""
    one, _, other = key.partition("\0")
    return Entry(one, "", other, [""]) if other else Entry(one, "")


HEADER = ("Project-Id-Version: tcpdoctor\nMIME-Version: 1.0\n"
          "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
          "Language: zh_CN\nPlural-Forms: nplurals=1; plural=0;\n")


def catalogs() -> list[str]:
    return sorted(glob.glob(os.path.join(LOCALEDIR, "*", "LC_MESSAGES", "*.po")))


def build(po: str) -> str:
    mo = po[:-3] + ".mo"
    atomic_write_bytes(mo, mo_bytes(read_po(po)))
    return mo


if __name__ == "__main__":
    if sys.argv[1:] == ["update"]:  # after changing texts: new ones to translate
        for po in catalogs():
            new, gone = update(po)
            write(f"{po}: {new} new, {gone} no longer used\n")
    for po in catalogs():
        write(build(po) + "\n")
