"""Each event's layout, read from its tracefs `format` file: field offsets differ between
kernels (`protocol` widened from u8 to u16, `reason` added to tcp_send_reset in 6.10), so
nothing here is hard-coded but the field names."""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg

_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"\s*signed:(?P<signed>\d)")
_SYMBOLS = re.compile(r"__print_symbolic\(REC->(\w+),((?:\s*\{\s*\w+,\s*\"\w+\"\s*\},?)+)\)")
_PAIR = re.compile(r"\{\s*(\w+),\s*\"(\w+)\"\s*\}")


@dataclass
class EventFormat:
    """One event: its id, and a struct that unpacks the wanted fields in a given order."""

    name: str
    id: int
    fields: tuple[str, ...]  # the wanted fields this kernel has, in unpacking order
    unpack: struct.Struct
    symbols: dict[str, dict[int, str]] = field(default_factory=dict)


def read_format(events_dir: str, event: str, wanted: tuple[str, ...]) -> EventFormat:
    """events_dir/event/format -> the struct for the wanted fields (missing ones left out:
    the caller fills their defaults)."""
    path = os.path.join(events_dir, event, "format")
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise TcpDoctorError(f"{path}: {exc.strerror}") from None
    m = re.search(r"^ID:\s*(\d+)", text, re.MULTILINE)
    if m is None:
        raise TcpDoctorError(Msg("{path}: no ID line", path=path))
    found = {}
    for f in _FIELD.finditer(text):
        name = f.group("decl").split()[-1].split("[")[0]
        found[name] = (int(f.group("off")), int(f.group("size")), f.group("signed") == "1",
                       "[" in f.group("decl"))
    names = tuple(sorted((n for n in wanted if n in found), key=lambda n: found[n][0]))
    code, at = "<", 0
    for n in names:
        off, size, signed, is_array = found[n]
        code += "x" * (off - at) + _code(size, signed, is_array)
        at = off + size
    symbols = {m.group(1): {int(k, 0) if k[0].isdigit() else 0: v
                            for k, v in _PAIR.findall(m.group(2))}
               for m in _SYMBOLS.finditer(text) if m.group(1) == "reason"}
    return EventFormat(event.rsplit("/", 1)[-1], int(m.group(1)), names, struct.Struct(code),
                       symbols)


def _code(size: int, signed: bool, is_array: bool) -> str:
    if is_array:
        return f"{size}s"
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
    return code if signed else code.upper()
