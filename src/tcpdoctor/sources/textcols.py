"""Vectorized helpers that turn lines of text into numpy columns without a loop per line.

A block of lines becomes a padded character matrix; token positions come from one
np.nonzero; fixed-width hex and variable-width decimal fields are decoded with table
lookups and dot products.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from tcpdoctor.errors import ParseError

SPACE = 32
MAX_LINE = 1 << 16  # bytes: no TCP socket line comes near; longer lines are left out
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_POW16 = np.array([16**k for k in range(16)][::-1], dtype=np.uint64)


def line_blocks(stream: BinaryIO, size: int, first_line: int = 1,
                on_long: Callable[[int], None] | None = None,
                max_line: int = MAX_LINE) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines (about size bytes each) and the number of each block's first
    line, so that a parser working a block at a time still names the line at fault.

    Memory stays bounded whatever the input: a line longer than max_line is never held
    whole; it is read past, given to on_long (its number) and left in the block as an empty
    line, so that the numbering of the rest holds."""
    line_no = first_line  # number of the first line not yet yielded
    pending = b""  # the start of a line not yet ended (at most max_line bytes)
    skipping = False  # inside an overlong line: drop bytes up to its newline
    while data := stream.read(size):
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                continue
            data, skipping = data[nl + 1:], False
            yield b"\n", line_no
            line_no += 1
        data = pending + data
        cut = data.rfind(b"\n") + 1
        block, pending = data[:cut], data[cut:]
        if block:
            yield _short_lines(block, line_no, on_long, max_line), line_no
            line_no += block.count(b"\n")
        if len(pending) > max_line:
            if on_long:
                on_long(line_no)
            pending, skipping = b"", True
    if skipping:
        yield b"\n", line_no
    elif pending:
        yield _short_lines(pending, line_no, on_long, max_line), line_no


def _short_lines(block: bytes, first: int, on_long: Callable[[int], None] | None,
                 max_line: int) -> bytes:
    """The block with every line over max_line bytes emptied (rare: checked in C first)."""
    # A line over max_line holds a whole window of max_line // 2 bytes without a newline;
    # looking for a newline in each such window costs a few bytes of scanning per window.
    half = max_line // 2
    if all(block.find(b"\n", i, i + half) >= 0 for i in range(0, len(block) - half, half)):
        return block
    arr = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], ends + 1))[:ends.size + 1]
    lens = np.append(ends, len(block)) - starts
    long = np.flatnonzero(lens > max_line)
    if long.size == 0:
        return block
    out, at = [], 0
    for i in long:
        if on_long:
            on_long(first + int(i))
        out.append(block[at:int(starts[i])])
        at = int(starts[i] + lens[i])
    out.append(block[at:])
    return b"".join(out)


def line_bounds(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of every non-empty line of a byte array."""
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [arr.shape[0]]))
    keep = ends > starts
    return starts[keep], ends[keep]


def char_matrix(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                width: int | None = None) -> np.ndarray:
    """Lines as rows of a uint8 matrix padded with spaces (tabs and CR become spaces)."""
    lens = ends - starts
    w = int(lens.max()) if width is None and lens.size else int(width or 0)
    cols = np.arange(w)
    idx = np.minimum(starts[:, None] + cols[None, :], max(arr.shape[0] - 1, 0))
    mat = arr[idx] if arr.shape[0] else np.zeros((starts.shape[0], w), dtype=np.uint8)
    mat = np.where(cols[None, :] < lens[:, None], mat, SPACE).astype(np.uint8)
    mat[(mat == 9) | (mat == 13)] = SPACE
    return mat


def token_starts(mat: np.ndarray, ntok: int, source: str,
                 line_numbers: np.ndarray, expected: str) -> np.ndarray:
    """Column of the first ntok whitespace-separated tokens of every row: shape (rows, ntok)."""
    nonspace = mat != SPACE
    first = nonspace.copy()
    first[:, 1:] &= ~nonspace[:, :-1]
    rows, cols = np.nonzero(first)
    counts = np.bincount(rows, minlength=mat.shape[0])
    short = np.flatnonzero(counts < ntok)
    if short.size:
        r = int(short[0])
        raise ParseError(source, int(line_numbers[r]), expected, bytes(mat[r]).rstrip())
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return cols[offsets[:, None] + np.arange(ntok)[None, :]]


def gather(mat: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """Characters mat[r, pos[r] : pos[r] + width] of every row (padded with spaces)."""
    idx = pos[:, None] + np.arange(width)[None, :]
    inside = idx < mat.shape[1]
    out = mat[np.arange(mat.shape[0])[:, None], np.minimum(idx, mat.shape[1] - 1)]
    return np.where(inside, out, SPACE).astype(np.uint8)


def hex_values(chars: np.ndarray, source: str, line_numbers: np.ndarray,
               expected: str) -> np.ndarray:
    """Fixed-width hex fields (rows, width<=16) -> uint64 values."""
    nib = _HEX[chars]
    bad = (nib == 255).any(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ParseError(source, int(line_numbers[r]), expected, bytes(chars[r]))
    w = chars.shape[1]
    return nib.astype(np.uint64) @ _POW16[16 - w:]


def dec_values(chars: np.ndarray, source: str, line_numbers: np.ndarray,
               expected: str) -> np.ndarray:
    """Decimal numbers starting each row (rows, width<=19) -> uint64; stops at a non-digit."""
    digits = chars.astype(np.int16) - 48
    valid = np.cumprod((digits >= 0) & (digits <= 9), axis=1).astype(bool)
    length = valid.sum(axis=1)
    if (length == 0).any():
        r = int(np.flatnonzero(length == 0)[0])
        raise ParseError(source, int(line_numbers[r]), expected, bytes(chars[r]).rstrip())
    exp = length[:, None] - 1 - np.arange(chars.shape[1])[None, :]
    pow10 = np.power(np.uint64(10), np.clip(exp, 0, 19).astype(np.uint64))
    return (np.where(valid, digits, 0).astype(np.uint64) * pow10).sum(axis=1, dtype=np.uint64)
