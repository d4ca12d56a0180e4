"""Load saved inputs for `analyze` and `diff`: detect the format, parse, make a Snapshot."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import select
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.i18n import Msg, joined
from tcpdoctor.model import snapshot_file
from tcpdoctor.model.columns import WEIGHT
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import AF_INET, AF_INET6, DEFAULT_PORT_RANGE, TCP_LISTEN
from tcpdoctor.model.times import iso
from tcpdoctor.sources import kstate, netlink, procfs, textcols
from tcpdoctor.sources.netlink.layout import NLMSG_DONE, NLMSG_ERROR, REPLY_TYPES
from tcpdoctor.sources.offline import bundle_reader, detect, lsof, netstat_fast, textdump
from tcpdoctor.sources.offline.accumulate import Accumulator
from tcpdoctor.sources.offline.detect import LABELS, PARSERS
from tcpdoctor.sources.offline.fields import is_chatter, looks_like_row, unfenced_lines

FORMATS = ("ss -D netlink dump, tcpdoctor snapshot JSON, /proc/net/tcp{,6}, ss -tan[poime], "
           "netstat -an[tpo], lsof -i, Windows netstat -ano, macOS/FreeBSD netstat -an, counts "
           "per state, or a table whose header names local, remote and state columns")


HEAD = 65536  # bytes read to detect the format
BINARY_LIMIT = 512 << 20  # netlink dumps and snapshots are read whole; text is streamed
REDUCE_ABOVE = 1_000_000  # sockets kept one row each; above, rows are folded (reduce.py)
BLOCK_ROWS = 65_536  # sockets parsed between two hand-overs to the accumulator


class _Prefixed(io.RawIOBase):
    """The bytes already read to detect the format, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = memoryview(head)
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buf))
        buf[:len(data)] = data
        return len(data)


FIFO_WAIT = 10.0  # seconds a named pipe may stay without a writer or data
UTF16_LIMIT = 64 << 20  # UTF-16 files (PowerShell's `netstat -ano > f.txt`) are read whole


def _open_file(path: str) -> BinaryIO:
    """The file, or a named pipe that has delivered data within FIFO_WAIT (a pipe nobody
    writes to would block forever)."""
    if path == "-":
        return sys.stdin.buffer
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return open(path, "rb")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TcpDoctorError(f"{path}: {exc.strerror}") from None
    ready, _, _ = select.select([fd], [], [], FIFO_WAIT)
    if not ready:
        os.close(fd)
        raise TcpDoctorError(Msg("{path}: a named pipe with no data after {FIFO_WAIT:.0f} s (is "
                                 "anything writing to it?)", path=path, FIFO_WAIT=FIFO_WAIT))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _utf16(fh: BinaryIO, bom: bytes, path: str) -> BinaryIO:
    data = bom + fh.read(UTF16_LIMIT + 1)
    if len(data) > UTF16_LIMIT:
        raise TcpDoctorError(Msg("{path}: over {mib} MB of UTF-16 text; convert it "
                                 "to UTF-8 first (iconv -f UTF-16 -t UTF-8)", path=path,
                                 mib=UTF16_LIMIT >> 20))
    return io.BytesIO(data.decode("utf-16", "replace").encode())


@contextlib.contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    """The input as a binary stream: gunzipped when it starts with the gzip magic, decoded
    when it is UTF-16 (a byte-order mark), as Windows tools write it."""
    fh = _open_file(path)
    try:
        magic = fh.read(2)
        if magic in (b"\xff\xfe", b"\xfe\xff"):
            yield _utf16(fh, magic, path)
            return
        stream: BinaryIO = io.BufferedReader(_Prefixed(magic, fh), 1 << 20)
        if magic == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        yield stream
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) \
                and exc.strerror:
            raise TcpDoctorError(f"{path}: {exc.strerror}") from None
        raise ParseError(path, None, Msg("a complete gzip stream ({exc})", exc=exc)) from None
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _is_netlink(data: bytes) -> bool:
    if len(data) < 16:
        return False
    length, mtype = struct.unpack_from("=IH", data, 0)
    return 16 <= length <= len(data) and mtype in (*REPLY_TYPES, NLMSG_DONE,
                                                    NLMSG_ERROR)


def _lines(stream: BinaryIO, on_long: Callable[[int], None]) -> Iterator[tuple[int, str]]:
    """Numbered lines, in bounded memory (an overlong line goes to on_long instead)."""
    for block, first in textcols.line_blocks(stream, 1 << 20, on_long=on_long):
        for no, raw in enumerate(block.decode("utf-8", "replace").split("\n"), first):
            yield no, raw.rstrip("\r")


def load(path: str, strict: bool = False, reduce_above: int = REDUCE_ABOVE,
         port_range: tuple[int, int] | None = None, netns: str | None = None,
         ) -> tuple[Snapshot, KernelState | None, list[str]]:
    """One saved input; netns picks a namespace of a collect bundle (--all-netns)."""
    name = "stdin" if path == "-" else path
    with _open(path) as stream:
        head = stream.read(HEAD)
        if not head.strip():
            raise TcpDoctorError(Msg("{name}: empty file (expected {FORMATS})", name=name,
                                     FORMATS=FORMATS))
        if bundle_reader.looks_like(head):
            if path == "-":
                raise TcpDoctorError(Msg("a collect bundle is read from its file, not stdin: "
                                         "tcpdoctor analyze BUNDLE.tar.gz"))
            return bundle_reader.load(path, strict, reduce_above, netns)
        if netns is not None:
            raise TcpDoctorError(Msg("{name}: --netns picks a namespace of a collect bundle; "
                                     "this input is not one", name=name))
        if _is_netlink(head) or snapshot_file.looks_like(head[:4096]):
            return _load_binary(head + _read_rest(stream, name), name, path)
        if b"\x00" in head:
            raise TcpDoctorError(Msg("{name}: binary data that is not a netlink dump (expected "
                                     "{FORMATS})", name=name, FORMATS=FORMATS))
        head_lines = head.decode("utf-8", "replace").splitlines()[:200]
        indent = detect.common_prefix(head_lines)
        kind = detect.detect([detect.dedent(line, indent) for line in head_lines]) or ""
        if not kind:
            raise ParseError(name, 1, FORMATS, head.split(b"\n", 1)[0])
        if kind in detect.REFUSED:
            raise TcpDoctorError(f"{name}: {detect.REFUSED[kind]}")
        if kind in detect.COUNTS:
            from tcpdoctor.sources.offline import counts

            snap = counts.snapshot(head + stream.read(counts.MAX_BYTES), name, _file_time(path))
            return snap, None, list(snap.notes)
        rescan = None if path == "-" else (lambda: _listen_ports(path, kind, indent))
        acc = Accumulator(reduce_above, rescan, port_range or DEFAULT_PORT_RANGE)
        notes, names, unparsed = _stream_text(_Prefixed(head, stream), kind, name, strict,
                                              acc, indent)
    cols = acc.result()
    notes.extend(acc.notes)
    label = LABELS[kind]
    if not cols["state"].shape[0] and not unparsed and kind != "proc":
        raise TcpDoctorError(Msg("{name}: no TCP socket in this {label} capture (only other "
                                 "protocols, or the TCP rows were left out): capture `ss -tanp` "
                                 "or `netstat -antp`", name=name, label=label))
    if kind == "windows":
        notes.append(Msg("a Windows capture: TIME_WAIT lasts TcpTimedWaitDelay there (30-300 s; "
                         "check the version's default), the dynamic port range is shown by "
                         "`netsh int ipv4 show dynamicport tcp` (49152-65535 by default since "
                         "Vista), and there is no tcp_tw_reuse: Linux sysctl advice does not "
                         "apply; the application-level fixes (pooling, keep-alive) do"))
    if kind == "bsd":
        notes.append(Msg("a macOS/FreeBSD capture: TIME_WAIT lasts 2×MSL there "
                         "(net.inet.tcp.msl), not Linux's fixed 60 s, and Linux sysctl advice "
                         "does not apply; the application-level fixes do"))
    snap = Snapshot(cols, f"{label} ({name})", taken_at=_file_time(path), notes=list(notes),
                    unparsed=unparsed, platform={"windows": "windows", "bsd": "bsd"}.get(
                        kind, "linux"), redacted=acc.redacted)
    if "pid" in cols:
        snap.process_names = names
    return snap, None, notes


def _file_time(path: str) -> str:
    """When a saved file was written (its mtime), the best guess of its snapshot's time."""
    if path == "-":
        return ""
    return iso(os.path.getmtime(path))


def _read_rest(stream: BinaryIO, name: str) -> bytes:
    data = stream.read(BINARY_LIMIT + 1)
    if len(data) > BINARY_LIMIT:
        raise TcpDoctorError(Msg("{name}: over {mib} MB of netlink dump or "
                                 "snapshot, which are read whole; save `ss -tan` text instead, "
                                 "which is streamed in bounded memory", name=name,
                                 mib=BINARY_LIMIT >> 20))
    return data


def _load_binary(data: bytes, name: str, path: str,
                 ) -> tuple[Snapshot, KernelState | None, list[str]]:
    if snapshot_file.looks_like(data[:4096]):
        snap, kernel = snapshot_file.from_bytes(data, name)
        snap.notes.append(Msg("loaded tcpdoctor snapshot {name}", name=name))
        return snap, kernel, []
    cols, _ = netlink.decode(data, source=name, stop_at_done=False)
    notes: list[str] = ([] if cols["state"].shape[0] else
                        [Msg("{name}: no TCP sockets found", name=name)])
    snap = Snapshot(cols, f"ss -D netlink dump ({name})", taken_at=_file_time(path),
                    notes=list(notes))
    return snap, None, notes


def _stream_text(raw: io.RawIOBase, kind: str, name: str, strict: bool, acc: Accumulator,
                 indent: str = "") -> tuple[list[str], dict[int, str], int]:
    """Parse block by block into the accumulator; returns notes and process names."""
    stream = io.BufferedReader(raw, 1 << 20)
    if kind == "proc":
        notes, bad = _stream_proc(stream, name, strict, acc)
        return notes, {}, bad
    b = textdump.Builder(name, strict, sink=acc.add, block=BLOCK_ROWS)

    def too_long(line: int) -> None:
        b.reject(line, f"a line under {textcols.MAX_LINE} bytes", "")

    if kind == "netstat" and not indent:
        for block, first in textcols.line_blocks(stream, BLOCK_ROWS * 40, on_long=too_long):
            cols, rest = netstat_fast.parse(block, first)
            b.add_block(cols)
            textdump.parse_netstat(unfenced_lines(rest), b)
    else:
        PARSERS[kind](unfenced_lines(_dedent(_lines(stream, too_long), indent)), b)
    b.flush()
    acc.finish(b.has_pid, b.has_info)
    notes = [_unparsed_note(name, b.bad_count, b.bad, b.bad_text)] if b.bad_count else []
    notes += b.notes(name) + ([lsof.note(b.shared, name)] if b.shared else [])
    acc.redacted = b.redacted
    return notes, b.owner_names(), b.bad_count


def _dedent(lines: Iterator[tuple[int, str]], indent: str) -> Iterator[tuple[int, str]]:
    """The lines without the indentation (or quote marks) the whole paste shares."""
    if not indent:
        return lines
    return ((no, detect.dedent(text, indent)) for no, text in lines)


def _stream_proc(stream: Any, name: str, strict: bool, acc: Accumulator,
                 ) -> tuple[list[str], int]:
    """stream: a buffered reader (it is peeked at for the address family)."""
    first: list[int] = []  # the first few line numbers (memory stays bounded)
    texts: list[str] = []
    count = 0

    def reject(exc: ParseError) -> None:
        nonlocal count
        if is_chatter(exc.got) or (exc.got and not looks_like_row(exc.got)):
            return  # a prompt, a fence or prose around the pasted table, not a lost row
        count += 1
        if len(first) < 5:
            first.append(exc.line or 0)
            texts.append(str(exc).rsplit(", got ", 1)[-1] if ", got " in str(exc) else "")

    family = _proc_family(stream.peek(4096))
    for part in procfs.iter_file(stream, family, name, None if strict else reject):
        acc.add(part)
    return ([_unparsed_note(name, count, first, texts)] if count else []), count


def _unparsed_note(name: str, count: int, first: list[int], texts: list[str]) -> str:
    shown = joined([Msg("line {no}: {text!r}", no=no, text=text) if text
                    else Msg("line {no}", no=no) for no, text in zip(first, texts, strict=False)],
                   "; ")
    return Msg("{count} line(s) of {name} not understood, they are left out of the report "
               "(first {shown}); --strict makes this an error", count=count, name=name,
               shown=shown)


def _lines_with(block: bytes, word: bytes) -> Iterator[bytes]:
    """The lines of block that contain word (bytes.find runs in C; the loop is per hit)."""
    pos = block.find(word)
    while pos >= 0:
        start = block.rfind(b"\n", 0, pos) + 1
        end = block.find(b"\n", pos)
        end = len(block) if end < 0 else end
        yield block[start:end]
        pos = block.find(word, end)


def _proc_family(head: bytes) -> int:
    lines = head.split(b"\n", 2)
    fields = lines[1].split() if len(lines) > 1 else []
    return AF_INET6 if len(fields) > 1 and len(fields[1]) > 13 else AF_INET


def _listen_ports(path: str, kind: str, indent: str = "") -> np.ndarray:
    """A first pass over a big file: the local ports of its LISTEN sockets, so that folding
    knows which side of every other socket is the service (LISTEN lines are few: only they
    are parsed)."""
    ports: list[np.ndarray] = []

    def keep(cols: dict[str, np.ndarray]) -> None:
        ports.append(cols["sport"][cols["state"] == TCP_LISTEN])

    with _open(path) as stream:
        if kind == "proc":
            family = _proc_family(stream.peek(4096))  # type: ignore[attr-defined]
            for part in procfs.iter_file(stream, family, path):
                keep(part)
        else:
            b = textdump.Builder(path, False, sink=keep)
            wanted = (line.decode("utf-8", "replace").rstrip("\r")
                      for block, _ in textcols.line_blocks(stream, 1 << 22)
                      for line in _lines_with(block, b"LISTEN"))
            PARSERS[kind](((0, detect.dedent(text, indent)) for text in wanted), b)
            b.flush()
    return np.unique(np.concatenate(ports)) if ports else np.zeros(0, np.uint16)


def merge(parts: list[Snapshot]) -> Snapshot:
    """Several inputs analysed together (e.g. /proc/net/tcp and tcp6): one snapshot."""
    if len(parts) == 1:
        return parts[0]
    common = set.intersection(*(set(p.columns) for p in parts))
    missing = {"pid": (-1, np.int32), WEIGHT: (1, np.uint32)}  # unknown owner; one socket
    common |= {name for name in missing if any(name in p.columns for p in parts)}
    cols = {}
    for name in common:
        fill, dtype = missing.get(name, (0, np.uint8))
        arrays = [p.columns[name] if name in p.columns else np.full(len(p), fill, dtype)
                  for p in parts]
        cols[name] = np.concatenate(arrays)
    names: dict[int, str] = {}
    for p in parts:
        names.update(p.process_names)
    return Snapshot(cols, " + ".join(p.source for p in parts), parts[0].host, parts[0].kernel,
                    parts[0].taken_at, None, [n for p in parts for n in p.notes], names,
                    sum(p.unparsed for p in parts))


def proc_dir_state(directory: str) -> KernelState:
    """Saved /proc files: a /proc-like tree (DIR/net/sockstat, DIR/sys/...) or flat
    (DIR/sockstat, DIR/netstat, DIR/snmp)."""
    if not os.path.isdir(directory):
        raise TcpDoctorError(Msg("--proc-dir: {directory} is not a directory", directory=directory))
    if os.path.isdir(os.path.join(directory, "net")):
        return kstate.read_state(directory)
    state = KernelState(0.0)
    for fname in ("sockstat", "sockstat6", "netstat", "snmp"):
        path = os.path.join(directory, fname)
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:  # a directory in the file's place, no permission...
            raise TcpDoctorError(Msg("--proc-dir: cannot read {path}: {error}", path=path,
                                     error=exc.strerror)) from None
        if fname.startswith("sockstat"):
            state.sockstat.update(kstate.parse_key_value_lines(text, path))
        else:
            state.counters.update(kstate.parse_counter_pairs(text, path))
    if not state.sockstat and not state.counters:
        raise TcpDoctorError(Msg("--proc-dir: no sockstat, netstat or snmp file in {directory}",
                                 directory=directory))
    return state

