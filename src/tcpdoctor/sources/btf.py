"""The few facts of the running kernel's BTF (/sys/kernel/btf/vmlinux) the owner iterator
needs: a function's type id and struct member offsets.

BTF is the kernel's own description of its types; reading offsets from it (rather than
assuming a layout) is what keeps the iterator right on every kernel build. Only what the
iterator asks for is looked up; anything unexpected answers None and the caller falls back.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F
MAX_BYTES = 64 << 20  # a vmlinux BTF is 5-10 MB; anything far larger is not one

KIND_STRUCT, KIND_UNION, KIND_FUNC = 4, 5, 12
# Bytes that follow the 12-byte header of each kind: fixed, or per vlen entry.
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_ENTRY = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
# The same in 32-bit words, indexed by kind (5 bits), for the walk's inner loop.
_FIXED_WORDS = [_FIXED.get(k, 0) // 4 for k in range(32)]
_PER_ENTRY_WORDS = [_PER_ENTRY.get(k, 0) // 4 for k in range(32)]

_HEADER = struct.Struct("=HBBIIIII")
_TYPE = struct.Struct("=III")
_MEMBER = struct.Struct("=III")


class Btf:
    """Types of one BTF blob, indexed by id (1-based) as record offsets."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < _HEADER.size:
            raise ValueError("short BTF")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(blob))
        if magic != MAGIC:
            raise ValueError("not BTF")
        self.blob = blob
        self.types_at = hdr_len + type_off
        self.strings_at = hdr_len + str_off
        self.strings_end = self.strings_at + str_len
        self.types_end = self.types_at + type_len
        self.records: dict[int, int] = {}  # record offset of each type id found so far

    def name(self, name_off: int) -> str:
        start = self.strings_at + name_off
        end = self.blob.find(b"\0", start, self.strings_end)
        return self.blob[start:end].decode("ascii", "replace") if end >= 0 else ""

    def find(self, kind: int, name: str) -> int | None:
        """The id of the first type of this kind and name."""
        return self.find_all([(kind, name)]).get((kind, name))

    def find_all(self, wanted: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """The ids of the first type of each (kind, name), found in one walk that stops
        when all are found (the iterator's target sits half-way through vmlinux's BTF)."""
        by_off: dict[int, list[tuple[int, str]]] = {}
        for kind, name in wanted:
            needle = b"\0" + name.encode() + b"\0"
            at = self.blob.find(needle, self.strings_at, self.strings_end)
            while at >= 0:  # the same name may be stored more than once
                by_off.setdefault(at + 1 - self.strings_at, []).append((kind, name))
                at = self.blob.find(needle, at + 1, self.strings_end)
        found: dict[tuple[int, str], int] = {}
        for type_id, off, info, keys in self._named(by_off):
            for key in keys:
                if key[0] == (info >> 24) & 0x1F and key not in found:
                    found[key] = type_id
                    self.records[type_id] = off
                    if len(found) == len(wanted):
                        return found
        return found

    def _named(self, by_off: dict[int, list[tuple[int, str]]],
               ) -> Iterator[tuple[int, int, int, list[tuple[int, str]]]]:
        """(type id, record offset, info, keys) of each type whose name offset is in by_off.

        Type ids are ordinal, so every record is stepped over (60,000+ in a vmlinux BTF):
        one word view and a loop of integer steps, about 23 ms where a struct unpack per
        record took 70."""
        size = (self.types_end - self.types_at) // 4 * 4
        words = memoryview(self.blob)[self.types_at:self.types_at + size].cast("I")
        count, fixed, per = len(words), _FIXED_WORDS, _PER_ENTRY_WORDS
        pos, type_id = 0, 1
        while pos + 3 <= count:
            info = words[pos + 1]
            keys = by_off.get(words[pos])
            if keys is not None:
                yield type_id, self.types_at + 4 * pos, info, keys
            kind = (info >> 24) & 0x1F
            pos += 3 + fixed[kind] + per[kind] * (info & 0xFFFF)
            type_id += 1

    def member_offset(self, struct_name: str, member: str) -> int | None:
        """Byte offset of a direct member of a struct (not a bitfield), or None."""
        type_id = self.find(KIND_STRUCT, struct_name)
        if type_id is None:
            return None
        off = self.records[type_id]
        _name, info, _size = _TYPE.unpack_from(self.blob, off)
        bitfields = bool(info >> 31)
        for i in range(info & 0xFFFF):
            name_off, _type, bits = _MEMBER.unpack_from(self.blob, off + 12 + 12 * i)
            if bitfields:
                if bits >> 24:  # a bitfield member: no byte load reads it
                    continue
                bits &= 0xFFFFFF
            if self.name(name_off) == member:
                return bits // 8 if bits % 8 == 0 else None
        return None


def load(path: str = VMLINUX) -> Btf | None:
    """The running kernel's BTF, or None where the kernel has none (or it is unreadable)."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read(MAX_BYTES + 1)
        if len(blob) > MAX_BYTES:
            return None
        return Btf(blob)
    except (OSError, ValueError, struct.error):
        return None
