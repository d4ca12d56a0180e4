"""The fuzzer's inputs that are not one file of one format (issue 33): collect bundles
(the tar structure, and each member the collect script writes), trace event batches, and
the names the system hands over (cgroup paths, namespace and process names).

Each kind has a seed, a mutation and a runner: the runner's outcome is 'ok', 'refused' (a
one-line tcpdoctor error) or an exception, as for the text formats in tests/fuzz.py.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tcpdoctor.sources.tracefs.follow import Comms

DATA = Path(__file__).parent / "data"
TOP = "tcpdoctor-fuzz-20261203T000000Z"


def bundle_members() -> dict[str, bytes]:
    """A small bundle as the collect script writes it: host and one namespace."""
    from tests.unit.test_analyze import SS_SAMPLE

    sockstat = b"sockets: used 90\nTCP: inuse 7 orphan 0 tw 3 alloc 9 mem 2\n"
    netstat = (b"TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeWaitOverflow\n"
               b"TcpExt: 0 3 3 0\n")
    return {
        "FORMAT": b"tcpdoctor-bundle 1\n",
        "meta.txt": b"format=1\nhost=web1\nkernel=6.18.0\nstarted=2026-12-03T00:00:00Z\n"
                    b"interval=5\nuid=0\npage_size=4096\nsockets=ss\nscript=0.9\n",
        "notes.txt": b"ss output cut at 1000 bytes\n",
        "processes.txt": b"4242 812 1024 java\n77 12 unknown nginx\n",
        "sockets/ss.txt": SS_SAMPLE.encode(),
        "sockets/owners.txt": b"4242 123456\n77 2222\n",
        "sockets/tcp": (DATA / "proc_net_tcp").read_bytes(),
        "proc/1/net/sockstat": sockstat,
        "proc/2/net/sockstat": sockstat,
        "proc/1/net/netstat": netstat,
        "proc/2/net/netstat": netstat,
        "proc/1/sys/net/ipv4/tcp_max_tw_buckets": b"262144\n",
        "proc/1/sys/fs/file-nr": b"2048\t0\t9223372036854775807\n",
        "netns/blue/sockets/tcp": (DATA / "proc_net_tcp").read_bytes(),
        "netns/blue/proc/1/net/sockstat": sockstat,
        "sockets/conntrack.txt": (DATA / "conntrack" / "nat-gateway.conntrack-L").read_bytes(),
        "sockets/addresses.txt": b"1: lo    inet 127.0.0.1/8 scope host lo\n"
                                 b"2: eth0    inet 10.77.1.2/24 brd 10.77.1.255 scope global\n",
        "sockets/nft.json": b'{"nftables": [{"rule": {"expr": [{"masquerade": {"port": '
                            b'{"range": [40000, 40031]}}}]}}]}',
        "netns/blue/sockets/addresses.txt": b"2: eth0    inet6 fd00::2/64 scope global\n",
    }


def pack(members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def mutate_bundle(rng: random.Random, strategies: list[Callable[..., bytes]]) -> bytes:
    """A member's content mutated (as any reader of it must survive), or the archive's
    structure bent: hostile names and types, long pax names, a member storm."""
    members = bundle_members()
    roll = rng.random()
    if roll < 0.6:
        name = rng.choice(sorted(members))
        for _ in range(rng.randint(1, 3)):
            members[name] = rng.choice(strategies)(rng, members[name])
        return pack(members)
    extra: list[tarfile.TarInfo] = []
    kind = rng.choice(["dotdot", "link", "longname", "storm", "dir-file", "device"])
    if kind == "dotdot":
        extra.append(tarfile.TarInfo(f"{TOP}/../{rng.choice(['x', 'etc/passwd'])}"))
    elif kind == "link":
        info = tarfile.TarInfo(f"{TOP}/{rng.choice(sorted(members))}")
        info.type, info.linkname = rng.choice([tarfile.SYMTYPE, tarfile.LNKTYPE]), "/etc/shadow"
        extra.append(info)
    elif kind == "longname":
        extra.append(tarfile.TarInfo(f"{TOP}/" + "a/" * rng.randint(60, 3000) + "x"))
    elif kind == "storm":
        extra += [tarfile.TarInfo(f"{TOP}/proc/{i}/x") for i in range(rng.randint(100, 3000))]
    elif kind == "dir-file":
        info = tarfile.TarInfo(f"{TOP}/sockets/ss.txt/inner")
        extra.append(info)
        members.pop("sockets/ss.txt")
    else:
        info = tarfile.TarInfo(f"{TOP}/sockets/tcp6")
        info.type = rng.choice([tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.BLKTYPE])
        extra.append(info)
    return pack(members, extra)


# --- trace event batches ------------------------------------------------------------------

def trace_seed() -> bytes:
    return (DATA / "trace" / "batch.npy").read_bytes()


def mutate_trace(rng: random.Random, data: bytes) -> bytes:
    """Values the reader could hand over from a hostile or confused kernel: states out of
    range, pids negative or reused, time going backwards, events cut or repeated."""
    events = np.load(io.BytesIO(data), allow_pickle=False).copy()
    for _ in range(rng.randint(1, 6)):
        field = rng.choice(events.dtype.names or ())
        info = np.iinfo(events.dtype[field])
        rows = rng.sample(range(events.shape[0]), k=min(events.shape[0], rng.randint(1, 50)))
        events[field][rows] = rng.choice([info.min, info.max, 0, 1, 13, 255,
                                          rng.randint(int(info.min), int(info.max))])
    roll = rng.random()
    if roll < 0.2:
        events = events[:rng.randrange(events.shape[0] + 1)]
    elif roll < 0.4:
        events = np.concatenate([events, events[::-1]])
    out = io.BytesIO()
    np.save(out, events, allow_pickle=False)
    return out.getvalue()


class _Names(Comms):
    """Comms without /proc: names come from the batch's own pids (hostile ones too)."""

    def name(self, pid: int) -> str:
        return f"p\x1b[2J{pid}\x07" if pid % 3 == 0 else f"td-{pid}"

    def netns_of(self, pid: int) -> int:
        return 1 + pid % 2


def run_trace(data: bytes) -> str:
    from tcpdoctor.model.trace import columns
    from tcpdoctor.sources.tracefs.follow import Tracker, summary

    try:
        events = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return "refused"  # not a batch the reader could have made
    tracker = Tracker(_Names())
    for part in np.array_split(events, 3):
        tracker.feed(columns(part), {})
    json.dumps(summary(tracker, 8.0, 0))
    return "ok"


# --- names the system hands over ----------------------------------------------------------

NAMES_SEED = ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1c2d3e4f_"
              "aaaa_bbbb_cccc_1234567890ab.slice/cri-containerd-"
              + "ab" * 32 + ".scope\n"
              "12:memory:/kubepods/besteffort/pod0a1b2c3d-0000-1111-2222-333344445555/"
              + "cd" * 32 + "\n"
              "3:cpu:/docker/" + "ef" * 32 + "\nblue\ntd-a b\n\x1b]0;PWN\x07\n").encode()


def run_names(data: bytes) -> str:
    """cgroup text through the container reader; every line as a namespace and process
    name: what comes back for people must hold no control character."""
    from tcpdoctor.sources.containers import parse_cgroup
    from tcpdoctor.sources.netns import printable
    from tcpdoctor.util.text import visible

    text = data.decode("utf-8", "surrogateescape")
    ident = parse_cgroup(text)
    shown = [printable(line) for line in text.splitlines()]
    shown += [visible(s) for s in (ident.pod_uid, ident.container_id, ident.runtime) if s]
    for s in shown:
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in s):
            raise AssertionError(f"raw control character in {s!r}")
        s.encode("utf-8")  # a lone surrogate would fail where it is written
    return "ok"


def run_ctnetlink(data: bytes) -> str:
    """A ctnetlink dump through the conntrack decoder: columns or a ParseError."""
    from tcpdoctor.errors import ParseError
    from tcpdoctor.sources.conntrack.decode import decode

    try:
        decode(data)
    except ParseError:
        return "refused"
    return "ok"


def run_conntrack_text(data: bytes) -> str:
    """`conntrack -L` / /proc/net/nf_conntrack text, joined with nothing: a table or a
    ParseError."""
    from tcpdoctor.analysis import conntrack as ct
    from tcpdoctor.errors import ParseError
    from tcpdoctor.sources.conntrack.text import parse

    try:
        table = parse(data, "fuzz")
    except ParseError:
        return "refused"
    ct.summary(ct.join(table, [{"netns": "host"}], [[]], 0, {}))
    return "ok"
