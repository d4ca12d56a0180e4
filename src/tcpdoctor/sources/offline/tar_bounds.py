"""A bundle's tar structure checked against fixed bounds before anything is unpacked.

Python's tarfile reads a pax or GNU long-name header whole, at whatever size the header
claims, before any check of ours could run: a 1 MB bundle can ask for gigabytes. This walk
reads the decompressed stream header by header (512-byte blocks), refuses oversized
headers, members over their cap, too many members and too many bytes in all, and skips
member data in bounded chunks: memory stays fixed, time is bounded by the caps.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, cast

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg

BLOCK = 512
MAX_MEMBERS = 20_000  # a bundle holds tens of files per namespace
MAX_TOTAL = 1 << 30  # bytes a bundle may unpack to
MAX_DEPTH = 16  # directory levels: the script's deepest file is 9 levels down
MAX_NAME = 1024  # characters of a member name
MAX_HEADER = 64 << 10  # pax and GNU long-name headers: names and a few keys
LISTING_CAP = 256 << 20  # a socket listing (ss.txt, tcp, tcp6)
# Per file name: what the collect script writes there could never be larger.
CAPS = {"FORMAT": 4 << 10, "meta.txt": 64 << 10, "notes.txt": 1 << 20,
        "processes.txt": 16 << 20, "owners.txt": 32 << 20, "ss.txt": LISTING_CAP,
        "tcp": LISTING_CAP, "tcp6": LISTING_CAP}
DEFAULT_CAP = 16 << 20  # /proc copies: sockstat, netstat, slabinfo, sysctls ...
LONG_HEADERS = (b"x", b"g", b"L", b"K")  # pax extended/global, GNU long name/link
CHUNK = 1 << 20


@dataclass
class Scanned:
    members: int
    total: int


def open_stream(path: str) -> IO[bytes]:
    """The archive's decompressed bytes (gzip, bzip2, xz or none, by magic)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    if magic.startswith(b"BZh"):
        return cast(IO[bytes], bz2.open(path, "rb"))
    if magic.startswith(b"\xfd7zXZ"):
        return cast(IO[bytes], lzma.open(path, "rb"))
    return open(path, "rb")


def _size(field: bytes) -> int:
    """A header's size field: octal text, or base-256 when the high bit is set."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    if not all(48 <= c <= 55 for c in text):  # only octal digits
        raise ValueError(text)
    return int(text, 8)


def scan(path: str, name: str) -> Scanned:
    """Walk every header; raise ParseError naming BUNDLE:member on the first bound broken."""
    members = total = 0
    with open_stream(path) as stream:
        zeros = 0
        while True:
            header = stream.read(BLOCK)
            if len(header) < BLOCK:
                if members == 0:
                    raise ParseError(name, None, Msg("a tar archive"), header[:16])
                break  # a truncated end: tarfile says what is missing
            if header == bytes(BLOCK):
                zeros += 1
                if zeros == 2:
                    break
                continue
            zeros = 0
            member = header[:100].split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            if prefix and header[257:262] == b"ustar":
                member = f"{prefix}/{member}"
            try:
                size = _size(header[124:136])
            except ValueError:
                raise ParseError(name, None, Msg("a tar header with a numeric size"),
                                 member) from None
            kind = header[156:157]
            where = f"{name}:{member}"
            if kind in LONG_HEADERS:
                if size > MAX_HEADER:
                    raise ParseError(where, None, Msg("a tar name header of at most {n}",
                                                      n=human(MAX_HEADER)), f"{size:,} bytes")
            else:
                members += 1
                cap = CAPS.get(PurePosixPath(member).name, DEFAULT_CAP)
                if size > cap:
                    raise ParseError(where, None, Msg("a file of at most {n} here",
                                                      n=human(cap)), f"{size:,} bytes")
                total += size
                if members > MAX_MEMBERS or total > MAX_TOTAL:
                    raise ParseError(name, None, Msg(
                        "a bundle of at most {members:,} files and {gb} GB",
                        members=MAX_MEMBERS, gb=MAX_TOTAL >> 30),
                        f"{members:,} files, {total:,} bytes")
            _skip(stream, (size + BLOCK - 1) // BLOCK * BLOCK)
    return Scanned(members, total)


def human(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB"


def _skip(stream: IO[bytes], count: int) -> None:
    while count > 0:
        got = stream.read(min(count, CHUNK))
        if not got:
            return
        count -= len(got)
