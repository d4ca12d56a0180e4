"""Collect bundles (`tcpdoctor collect`'s tar.gz): unpacked safely into a temporary
directory, then read with the same readers as a live host (model/bundle_layout.py has the layout).

The two readings of the counters give rates, the sysctls and slab sizes come from the
first, sockets from `ss` when the script found it (else /proc/net/tcp joined with the
owners it listed), open files and their limits from processes.txt.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model import bundle_layout
from tcpdoctor.model.conntrack import SOCKET_KEYS
from tcpdoctor.model.kernel_state import GLOBAL_SYSCTLS, KernelState, fill_global_sysctls
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.sources import kstate, owners
from tcpdoctor.sources.offline import bundle_conntrack, tar_bounds
from tcpdoctor.util.text import visible

DIGITS = re.compile(r"[0-9]{1,10}")  # a pid, a count or a limit: ASCII digits, bounded


def looks_like(head: bytes) -> bool:
    """A tar archive (the gzip layer is already removed): 'ustar' at offset 257."""
    return len(head) > 262 and head[257:262] == b"ustar"


@contextlib.contextmanager
def unpacked(path: str) -> Iterator[str]:
    """The bundle's top directory, unpacked into a temporary directory removed afterwards.
    Only regular files and directories under one top directory are accepted: no links, no
    absolute paths, no '..', bounded in count and size."""
    name = os.path.basename(path)
    tmp = tempfile.mkdtemp(prefix="tcpdoctor-bundle-")
    try:
        try:
            tar_bounds.scan(path, name)  # headers, sizes and counts, before unpacking
            with tarfile.open(path, "r:*") as tar:
                top = _extract(tar, tmp, name)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError) \
                    and exc.strerror:
                raise TcpDoctorError(f"{name}: {exc.strerror}") from None
            raise ParseError(name, None, Msg("a complete tar.gz bundle ({exc})", exc=exc)) from None
        try:
            yield os.path.join(tmp, top)
        except TcpDoctorError as exc:  # say BUNDLE:member, never the temporary directory
            inside = tmp + os.sep + top + os.sep
            exc.args = tuple(a.replace(inside, f"{name}:") if isinstance(a, str) else a
                             for a in exc.args)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(tar: tarfile.TarFile, dest: str, name: str) -> str:
    tops: set[str] = set()
    total = 0
    for count, member in enumerate(tar, 1):
        parts = PurePosixPath(member.name).parts
        if count > tar_bounds.MAX_MEMBERS or not parts or member.name.startswith("/") \
                or ".." in parts:
            raise ParseError(name, None, Msg("a tcpdoctor bundle (relative member names)"),
                             member.name)
        if len(parts) > tar_bounds.MAX_DEPTH or len(member.name) > tar_bounds.MAX_NAME:
            raise ParseError(name, None, Msg("a tcpdoctor bundle (member names of at most "
                                             "{depth} levels and {length} characters)",
                                             depth=tar_bounds.MAX_DEPTH,
                                             length=tar_bounds.MAX_NAME),
                             member.name[:80] + "...")
        if not (member.isfile() or member.isdir()):
            raise ParseError(name, None, Msg("a tcpdoctor bundle (files and directories only)"),
                             member.name)
        # Again with the sizes tarfile uses (a pax header may restate a member's size).
        cap = tar_bounds.CAPS.get(parts[-1], tar_bounds.DEFAULT_CAP)
        total += member.size
        if member.size > cap or total > tar_bounds.MAX_TOTAL:
            raise ParseError(f"{name}:{member.name}", None,
                             Msg("a file of at most {n} here", n=tar_bounds.human(cap)),
                             f"{member.size:,} bytes")
        tops.add(parts[0])
        target = os.path.join(dest, *parts)
        if member.isdir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        src = tar.extractfile(member)
        assert src is not None
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    if len(tops) != 1:
        raise ParseError(name, None, Msg("a tcpdoctor bundle (one top directory)"),
                         ", ".join(sorted(tops)[:3]))
    return tops.pop()


def meta(root: str, name: str) -> dict[str, str]:
    head = (kstate.read_text(os.path.join(root, "FORMAT")) or "").split()
    if head[:1] != [bundle_layout.FORMAT_NAME]:
        raise ParseError(name, 1, Msg("a bundle with FORMAT '{format} "
                                      "{version}'", format=bundle_layout.FORMAT_NAME,
                                      version=bundle_layout.VERSION), " ".join(head))
    if head[1:2] != [str(bundle_layout.VERSION)]:
        raise TcpDoctorError(Msg("{name}: bundle format {got}; this tcpdoctor "
                                 "reads format {version} (upgrade tcpdoctor)", name=name,
                                 got=' '.join(head[1:2]) or '?',
                                 version=bundle_layout.VERSION))
    meta = {}
    for line in (kstate.read_text(os.path.join(root, "meta.txt")) or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:  # from a customer's machine: shown to people, so escaped
            meta[visible(key.strip())] = visible(value.strip())
    return meta


def notes(root: str) -> list[str]:
    """What the script could not gather (notes.txt), as report notes."""
    text = kstate.read_text(os.path.join(root, "notes.txt")) or ""
    return [f"bundle: {visible(line.strip())}" for line in text.splitlines() if line.strip()]


def namespaces(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(os.path.join(root, "netns")))
    except OSError:
        return []
    # A directory name is also a path to open: one that would need escaping is left out.
    return [n for n in names if visible(n) == n]


def kernel_figures(root: str, base: str, meta: dict[str, str]) -> KernelState:
    """The second reading, with the first as `previous` (rates); sysctls, slab sizes and RAM
    from the first; a namespace's global sysctls from the host's."""
    first = kstate.read_state(os.path.join(base, "proc", "1"))
    if base != root:  # a namespace: host-wide figures come from the host's reading
        host = kstate.read_state(os.path.join(root, "proc", "1"))
        fill_global_sysctls(first, {k: host.sysctls.get(k) for k in GLOBAL_SYSCTLS})
        first.slab, first.mem_total, first.file_nr = host.slab, host.mem_total, host.file_nr
        first.notes = ([n for n in first.notes if "slabinfo" not in n]
                       + [n for n in host.notes if "slabinfo" in n])
    page = meta.get("page_size", "")
    first.page_size = int(page) if page.isdigit() and int(page) > 0 else 4096
    first.taken = _uptime(os.path.join(base, "proc", "1"))
    second_dir = os.path.join(base, "proc", "2")
    if not os.path.isdir(second_dir):
        return first
    second = kstate.read_state(second_dir, with_sysctls=False)
    second.taken = _uptime(second_dir)
    if not second.counters or second.taken <= first.taken:
        return first
    for attr in ("sysctls", "slab", "mem_total", "page_size", "file_nr"):
        setattr(second, attr, getattr(first, attr))
    second.notes = first.notes
    second.previous = first
    return second


def _uptime(directory: str) -> float:
    words = (kstate.read_text(os.path.join(directory, "uptime")) or "").split()
    try:
        return float(words[0])
    except (IndexError, ValueError):
        return 0.0


def processes(root: str) -> tuple[dict[int, int], dict[int, int], dict[int, str]]:
    """(open files, RLIMIT_NOFILE, name) per pid, from processes.txt."""
    fds: dict[int, int] = {}
    limits: dict[int, int] = {}
    names: dict[int, str] = {}
    for line in (kstate.read_text(os.path.join(root, "processes.txt")) or "").splitlines():
        words = line.split()
        if len(words) < 4 or not DIGITS.fullmatch(words[0]) \
                or not DIGITS.fullmatch(words[1]):
            continue  # "²" is a digit to str.isdigit, not to int()
        pid = int(words[0])
        fds[pid] = int(words[1])
        if DIGITS.fullmatch(words[2]):
            limits[pid] = int(words[2])
        names[pid] = visible(" ".join(words[3:]))
    return fds, limits, names


def attach_owners(snap: Snapshot, root: str, names: dict[int, str]) -> None:
    """pid of each socket of a /proc/net/tcp listing, from owners.txt (PID INODE lines)."""
    text = kstate.read_text(os.path.join(root, "sockets", "owners.txt"))
    if not text or "inode" not in snap.columns:
        return
    pairs = np.array([w for w in text.split() if DIGITS.fullmatch(w)], dtype=np.int64)
    pairs = pairs[: pairs.shape[0] // 2 * 2].reshape(-1, 2)
    ino, pid = owners.by_inode(pairs[:, 1].astype(np.uint32), pairs[:, 0].astype(np.int32))
    table = owners.OwnerTable(ino, pid, names)
    snap.columns["pid"] = owners.lookup(table, snap.columns["inode"])
    found = np.unique(snap.columns["pid"])
    snap.process_names = {int(p): names.get(int(p), "?") for p in found if p >= 0}


def load(path: str, strict: bool, reduce_above: int, netns: str | None,
         ) -> tuple[Snapshot, KernelState, list[str]]:
    """The snapshot and kernel figures of a bundle (of one of its namespaces)."""
    name = os.path.basename(path)
    with unpacked(path) as root:
        info = meta(root, name)
        spaces = namespaces(root)
        base = root
        if netns is not None:
            if netns not in spaces:
                raise TcpDoctorError(Msg("{name}: no namespace {netns!r} in this bundle (it "
                                         "holds: {spaces})", name=name,
                                         netns=netns,
                                         spaces=", ".join(spaces)
                                         or Msg("the host only")))
            base = os.path.join(root, "netns", netns)
        fds, limits, names = processes(root)
        told = notes(root)
        snap, listing = _bundle_sockets(root, base, names, strict, reduce_above,
                                        (name, told))
        kernel = kernel_figures(root, base, info)
        kernel.fd_counts, kernel.nofile = fds, limits
        kernel.conntrack, table_notes = bundle_conntrack.load(base, name)
        if kernel.conntrack is not None:
            _other_spaces(kernel.conntrack, root, base, spaces, snap, names, reduce_above)
        told = told + table_notes
        inside = os.path.dirname(root) + os.sep
        snap.notes = [n.replace(inside, f"{name}:") for n in snap.notes]
        # A file the script already said it could not read is not reported twice.
        explained = {t.split()[1] for t in told if len(t.split()) > 1}
        kernel.notes = [n.replace(inside, f"{name}:") for n in kernel.notes
                        if n.split()[0] not in explained]
        snap.notes += told
    if spaces and netns is None:
        snap.notes.append(Msg("the bundle also holds namespaces {spaces}: tcpdoctor "
                              "analyze {name} --netns NAME", spaces=', '.join(spaces),
                              name=name))
    snap.source = f"bundle {name} ({listing})"
    snap.host, snap.kernel = info.get("host", ""), info.get("kernel", "")
    snap.taken_at, snap.netns = info.get("started", ""), netns
    return snap, kernel, []


def _other_spaces(saved: dict[str, Any], root: str, base: str, spaces: list[str],
                  snap: Snapshot, names: dict[int, str], reduce_above: int) -> None:
    """The bundle's other namespaces (the host and netns/*) for the conntrack join: an
    entry's end may live in any of them. The analysed one comes first."""
    where = [(base, None)] + [(d, n) for d, n in [(root, "host")] + [
        (os.path.join(root, "netns", n), n) for n in spaces] if d != base]
    labels: list[dict[str, Any]] = []
    addresses: list[list[int]] = []
    parts: list[dict[str, np.ndarray]] = []
    for i, (directory, label) in enumerate(where):
        own = snap if i == 0 else None
        if own is None:
            try:
                own, _ = _bundle_sockets(root, directory, names, False, reduce_above,
                                         ("", []))
            except TcpDoctorError:
                continue
        cols: dict[str, np.ndarray] = {k: own.columns[k] for k in SOCKET_KEYS
                                       if k in own.columns}
        cols["netns_id"] = np.full(len(own), len(labels), np.uint16)
        parts.append(cols)
        labels.append({"netns": label or snap.netns or "host"})
        addresses.append(saved["addresses"] if i == 0 else bundle_conntrack.addresses_in(
            directory))
    from tcpdoctor.model.columns import concat_columns

    saved.update(spaces=labels, all_addresses=addresses,
                 sockets=concat_columns(parts, {k: str(v.dtype) for k, v in parts[0].items()}))


def _header_only(path: str) -> bool:
    """ss's header and no row: a namespace without TCP sockets (a NAT gateway, say), read
    from /proc/net/tcp then, where an empty table is no error."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return len(head) < 4096 and len(head.strip().splitlines()) <= 1


def _bundle_sockets(root: str, base: str, names: dict[int, str], strict: bool,
                    reduce_above: int, told: tuple[str, list[str]]) -> tuple[Snapshot, str]:
    """ss's listing when the script had ss, else /proc/net/tcp{,6} with owners.txt.

    `told` is the bundle's name and its script's notes: when there is no listing, the
    note saying why (a full TMPDIR, say) belongs in the error."""
    from tcpdoctor.sources.offline.loader import load as load_text
    from tcpdoctor.sources.offline.loader import merge

    ss = os.path.join(base, "sockets", "ss.txt")
    if os.path.isfile(ss) and os.path.getsize(ss) > 0 and not _header_only(ss):
        return load_text(ss, strict, reduce_above)[0], "ss -tanpoiem"
    files = [os.path.join(base, "sockets", f) for f in bundle_layout.SOCKET_FILES]
    parts = [load_text(f, strict, reduce_above)[0] for f in files
             if os.path.isfile(f) and os.path.getsize(f) > 0]
    if not parts:
        bundle, script_notes = told
        stopped = [n for n in script_notes if n.startswith("bundle: collection stopped")]
        raise TcpDoctorError(Msg("{bundle}: the bundle holds no socket listing (neither ss.txt "
                                 "nor /proc/net/tcp)", bundle=bundle)
                             + (f" ({stopped[0]})" if stopped else ""))
    snap = merge(parts)
    if snap.count():  # an empty tcp6 listing is no news when tcp had sockets
        snap.notes = [n for n in snap.notes if not n.endswith("no TCP sockets found")]
    attach_owners(snap, root, names)
    return snap, "/proc/net/tcp"
