"""Several captures pasted one after the other in one file (before and after, in one
ticket): found at the header line each format prints once per capture, and loaded one by
one, so that `analyze` can say so and compare them instead of summing them."""

from __future__ import annotations

import itertools
import os
import re
import tempfile

from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.sources.offline.detect import is_tcp_row
from tcpdoctor.sources.offline.loader import REDUCE_ABOVE, _file_time, _open, load

# The column-header line each text format prints once per capture.
CAPTURE_HEADER = re.compile(
    rb"^[ \t]*(?:Proto[ \t]+Recv-Q|State[ \t]+Recv-Q|Netid[ \t]+State|sl[ \t]+local_address"
    rb"|Proto[ \t]+Local Address)", re.MULTILINE)
SPLIT_LIMIT = 64 << 20  # larger files are read as one capture


def load_captures(path: str, strict: bool = False, reduce_above: int = REDUCE_ABOVE,
                  port_range: tuple[int, int] | None = None, netns: str | None = None,
                  ) -> list[tuple[Snapshot, KernelState | None, list[str]]]:
    """The captures a file holds: one, or several, each loaded on its own."""
    parts = split(path)
    if len(parts) < 2:
        return [load(path, strict, reduce_above, port_range, netns)]
    out = []
    with tempfile.TemporaryDirectory(prefix="tcpdoctor-captures-") as tmp:
        for i, (first_line, data) in enumerate(parts, 1):
            part = os.path.join(tmp, f"capture-{i}")
            with open(part, "wb") as fh:
                fh.write(data)
            snap, kernel, notes = load(part, strict, reduce_above, port_range, netns)
            label = f"{path}, capture {i} of {len(parts)} (from line {first_line})"
            snap.source = snap.source.replace(part, label)
            snap.notes = [n.replace(part, label) for n in snap.notes]
            snap.taken_at = _file_time(path)
            out.append((snap, kernel, notes))
    return out


def split(path: str) -> list[tuple[int, bytes]]:
    """(first line number, bytes) of each capture of a small text file; empty when the
    file holds one capture (or is stdin, binary or large)."""
    if path == "-" or not os.path.isfile(path) or os.path.getsize(path) > SPLIT_LIMIT:
        return []
    with _open(path) as stream:
        data = stream.read(SPLIT_LIMIT + 1)
    if len(data) > SPLIT_LIMIT or b"\x00" in data[:4096]:
        return []
    starts = [m.start() for m in CAPTURE_HEADER.finditer(data)]
    if len(starts) < 2:
        return []
    bounds = [0, *(_cut(data, s) for s in starts[1:]), len(data)]
    parts = [(data.count(b"\n", 0, a) + 1, data[a:b]) for a, b in itertools.pairwise(bounds)]
    # A part without TCP rows (a header repeated by a pager, the UDP or UNIX section of the
    # same netstat run) belongs to the capture before it.
    merged: list[tuple[int, bytes]] = []
    for first, part in parts:
        if merged and not _has_tcp_rows(part):
            merged[-1] = (merged[-1][0], merged[-1][1] + part)
        else:
            merged.append((first, part))
    if merged and not _has_tcp_rows(merged[0][1]) and len(merged) > 1:
        merged[1] = (merged[0][0], merged[0][1] + merged[1][1])
        del merged[0]
    return merged if len(merged) > 1 else []


def _has_tcp_rows(part: bytes) -> bool:
    return any(is_tcp_row(line.split(), line)
               for line in part.decode("utf-8", "replace").splitlines())


def _cut(data: bytes, start: int) -> int:
    """Where a capture begins: its header line, or netstat's "Active ..." line before it."""
    prev_end = data.rfind(b"\n", 0, start)
    if prev_end < 0:
        return start
    prev_start = data.rfind(b"\n", 0, prev_end) + 1
    return prev_start if data[prev_start:prev_end].lstrip().startswith(b"Active") else start
