"""The few facts of the running kernel's BTF (/sys/kernel/btf/vmlinux) the iterators need:
a function's type id, and the offset and size of struct members (nested ones too).

BTF is the kernel's own description of its types; reading offsets from it (rather than
assuming a layout) is what keeps the iterator right on every kernel build. Only what the
iterator asks for is looked up; anything unexpected answers None and the caller falls back.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from array import array
from collections.abc import Iterator

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F
MAX_BYTES = 64 << 20  # a vmlinux BTF is 5-10 MB; anything far larger is not one

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_FUNC = 1, 2, 3, 4, 5, 12
# Kinds that only qualify another type: typedef, volatile, const, restrict, type tag.
_QUALIFIERS = frozenset({8, 9, 10, 11, 18})
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
        size = (self.types_end - self.types_at) // 4 * 4
        self._words = memoryview(self.blob)[self.types_at:self.types_at + size].cast("I")
        # Record offsets by type id, indexed as far as a lookup has needed (id 0 is void).
        self._offsets = array("Q", [0])
        self._walked = 0  # words of the type section indexed so far
        self._found: dict[tuple[int, str], int] = {}  # find_all's answers so far
        self.lock = threading.Lock()  # the owner and socket iterators may share one Btf

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
        found = {key: self._found[key] for key in wanted if key in self._found}
        if len(found) == len(wanted):
            return found
        by_off: dict[int, list[tuple[int, str]]] = {}
        for kind, name in wanted:
            needle = b"\0" + name.encode() + b"\0"
            at = self.blob.find(needle, self.strings_at, self.strings_end)
            while at >= 0:  # the same name may be stored more than once
                by_off.setdefault(at + 1 - self.strings_at, []).append((kind, name))
                at = self.blob.find(needle, at + 1, self.strings_end)
        for type_id, off, info, keys in self._named(by_off):
            for key in keys:
                if key[0] == (info >> 24) & 0x1F and key not in found:
                    found[key] = self._found[key] = type_id
                    self.records[type_id] = off
                    if len(found) == len(wanted):
                        return found
        return found

    def _named(self, by_off: dict[int, list[tuple[int, str]]],
               ) -> Iterator[tuple[int, int, int, list[tuple[int, str]]]]:
        """(type id, record offset, info, keys) of each type whose name offset is in by_off,
        in id order: the records already indexed, then the walk goes on."""
        words, at = self._words, self.types_at
        type_id = 1
        while True:
            while type_id < len(self._offsets):
                pos = (self._offsets[type_id] - at) // 4
                keys = by_off.get(words[pos])
                if keys is not None:
                    yield type_id, self._offsets[type_id], words[pos + 1], keys
                type_id += 1
            if not self._extend(type_id + 4096):
                return

    def _extend(self, upto: int) -> bool:
        """Index records until `upto` ids are known (ids are ordinal, so every record on the
        way is stepped over: one word view and a loop of integer steps, about 0.5 us a
        record); False at the end of the types."""
        words, fixed, per, offsets = self._words, _FIXED_WORDS, _PER_ENTRY_WORDS, self._offsets
        count, pos, at = len(words), self._walked, self.types_at
        grew = False
        while len(offsets) < upto and pos + 3 <= count:
            offsets.append(at + 4 * pos)
            info = words[pos + 1]
            kind = (info >> 24) & 0x1F
            pos += 3 + fixed[kind] + per[kind] * (info & 0xFFFF)
            grew = True
        self._walked = pos
        return grew

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


    def field(self, struct_name: str, path: str) -> tuple[int, int] | None:
        """(byte offset, size) of a member of a struct, reached through nested members
        ("sk_timer.expires") and anonymous structs and unions on the way ("skc_state" of
        sock_common sits in none, "skc_portpair" in an anonymous union); None when absent,
        a bitfield, or not a whole number of bytes."""
        type_id = self.find(KIND_STRUCT, struct_name)
        if type_id is None:
            return None
        offset = 0
        for name in path.split("."):
            found = self._member(type_id, name)
            if found is None:
                return None
            type_id, at = found
            offset += at
        return offset, self.size_of(type_id)

    def _member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(type id, byte offset) of a named member, looking into anonymous members."""
        off = self._record(self._resolve(type_id))
        _name, info, _size = _TYPE.unpack_from(self.blob, off)
        if (info >> 24) & 0x1F not in (KIND_STRUCT, KIND_UNION):
            return None
        bitfields = bool(info >> 31)
        for i in range(info & 0xFFFF):
            name_off, member_type, bits = _MEMBER.unpack_from(self.blob, off + 12 + 12 * i)
            if bitfields:
                if bits >> 24:
                    continue
                bits &= 0xFFFFFF
            if bits % 8:
                continue
            if name_off == 0:  # anonymous: its members are this struct's members
                inner = self._member(member_type, name)
                if inner is not None:
                    return inner[0], bits // 8 + inner[1]
            elif self.name(name_off) == name:
                return member_type, bits // 8
        return None

    def size_of(self, type_id: int) -> int:
        off = self._record(self._resolve(type_id))
        _name, info, size = _TYPE.unpack_from(self.blob, off)
        kind = (info >> 24) & 0x1F
        if kind == KIND_PTR:
            return 8
        if kind == KIND_ARRAY:
            elem, _index, count = _TYPE.unpack_from(self.blob, off + 12)
            return self.size_of(elem) * count
        return int(size)

    def _resolve(self, type_id: int) -> int:
        for _ in range(32):  # qualifier chains are short; a loop would be a corrupt blob
            _name, info, ref = _TYPE.unpack_from(self.blob, self._record(type_id))
            if (info >> 24) & 0x1F not in _QUALIFIERS:
                return type_id
            type_id = ref
        raise ValueError("BTF qualifier chain too long")

    def _record(self, type_id: int) -> int:
        if type_id >= len(self._offsets):
            self._extend(type_id + 1)
        if not 0 < type_id < len(self._offsets):
            raise ValueError(f"BTF type id {type_id} out of range")
        return self._offsets[type_id]


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


_shared: list[Btf | None] = []
_users = [0]
_shared_lock = threading.Lock()


@contextlib.contextmanager
def borrowed() -> Iterator[Btf | None]:
    """The running kernel's BTF, shared by whoever looks types up at the same time (the
    owner and socket iterators start on two threads at once: one read, one index) and
    dropped when the last of them is done: 5-10 MB a one-shot command need not keep.
    Hold its lock while looking up."""
    with _shared_lock:
        if not _shared:
            _shared.append(load())
        _users[0] += 1
        types = _shared[0]
    try:
        yield types
    finally:
        with _shared_lock:
            _users[0] -= 1
            if not _users[0]:
                _shared.clear()
