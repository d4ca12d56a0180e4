"""Every network namespace of the host, named or not, with a name a person recognises.

Found as the union of /proc/*/ns/net (by namespace inode) and the nsfs bind mounts in
/proc/self/mountinfo (ip netns' /run/netns, docker's /run/docker/netns, CNI's netns
files); the host's is PID 1's. Named, first that applies: its /run/netns name, the pod and
container of a process inside it (containers.py), `PID/comm` of its oldest process, else
`netns:[inode]`. A namespace or process that vanishes during the found is skipped, and
counted in the notes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.sources.containers import Identity, RuntimeFiles, identify
from tcpdoctor.sources.netns import NETNS_RUN_DIR, printable
from tcpdoctor.sources.owners import read_comm


@dataclass
class Netns:
    """One network namespace: how to enter it and what to call it."""

    inode: int
    paths: list[str] = field(default_factory=list)  # bind mounts, then /proc/PID/ns/net
    name: str | None = None  # its name under /run/netns
    pid: int | None = None  # its oldest process
    comm: str | None = None
    pod: str | None = None
    container: str | None = None
    host: bool = False

    @property
    def label(self) -> str:
        if self.host:
            return "host"
        if self.name:
            return self.name
        if self.pod:
            return f"pod:{self.pod}" + (f" ({self.container})" if self.container else "")
        if self.container:
            return f"container:{self.container}"
        if self.pid is not None:
            return f"{self.pid}/{self.comm or '?'}"
        return f"netns:[{self.inode}]"

    def as_json(self) -> dict[str, object]:
        return {"netns": self.label, "netns_inode": self.inode, "pod": self.pod,
                "container": self.container}


@dataclass
class Discovered:
    namespaces: list[Netns]
    notes: list[str] = field(default_factory=list)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _start_time(proc_root: str, pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (after the comm, which may hold spaces)."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as fh:
            rest = fh.read().rsplit(b")", 1)[1].split()
        return int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def nsfs_mounts(proc_root: str = "/proc") -> list[str]:
    """Mount points of nsfs files for network namespaces (from our mount namespace)."""
    out: list[str] = []
    try:
        with open(f"{proc_root}/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        words = left.split()
        if sep and right.split()[:1] == ["nsfs"] and len(words) > 4 \
                and words[3].startswith("net:["):
            out.append(words[4].replace("\\040", " "))
    return out


def discover(proc_root: str = "/proc", files: RuntimeFiles | None = None) -> Discovered:
    found = Discovered([])
    by_inode: dict[int, Netns] = {}
    # The host's namespace is init's; where PID 1 hides its namespace (a sandbox agent as
    # init), kthreadd's: kernel threads live in the initial namespace.
    host_path = next((p for p in (f"{proc_root}/1/ns/net", f"{proc_root}/2/ns/net")
                      if _inode(p) is not None), None)
    if host_path is None:  # not root: our own namespace stands for the host's
        host_path = f"{proc_root}/self/ns/net"
        found.notes.append(Msg("the host's namespace (PID 1's) is unreadable without root: this "
                               "process's namespace is reported as the host's"))
    host = _inode(host_path)
    if host is None:
        raise TcpDoctorError(Msg("cannot read {path}: is /proc mounted?", path=host_path))
    by_inode[host] = Netns(host, [host_path], host=True)
    for path in nsfs_mounts(proc_root):
        ino = _inode(path)
        if ino is None:
            continue
        ns = by_inode.setdefault(ino, Netns(ino))
        ns.paths.insert(0, path)
        if os.path.dirname(path) == NETNS_RUN_DIR and ns.name is None and not ns.host:
            ns.name = printable(os.path.basename(path))  # paths keep the real one
    oldest: dict[int, tuple[int, int]] = {}
    gone = denied = 0
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            ino = os.stat(f"{proc_root}/{pid}/ns/net").st_ino
        except PermissionError:
            denied += 1
            continue
        except OSError:
            gone += 1
            continue
        ns = by_inode.setdefault(ino, Netns(ino))
        start = _start_time(proc_root, pid)
        if start is not None and (ino not in oldest or (start, pid) < oldest[ino]):
            oldest[ino] = (start, pid)
    runtime = files if files is not None else RuntimeFiles.load()
    for ino, (_, pid) in oldest.items():
        _name_from_process(by_inode[ino], proc_root, pid, runtime)
    if gone:
        found.notes.append(Msg("{gone} processes exited during the namespace sweep", gone=gone))
    if denied:
        found.notes.append(Msg("{denied} processes' namespaces could not be read (permission "
                               "denied)", denied=denied))
    host_ns = by_inode.pop(host)
    rest = sorted(by_inode.values(), key=lambda n: (n.label.startswith("netns:"), n.label))
    found.namespaces = [host_ns, *rest]
    return found


def _name_from_process(ns: Netns, proc_root: str, pid: int, runtime: RuntimeFiles) -> None:
    ns.pid, ns.comm = pid, read_comm(proc_root, pid)
    ns.paths.append(f"{proc_root}/{pid}/ns/net")
    if ns.host:
        return
    ident: Identity = identify(proc_root, pid, runtime)
    ns.pod = ident.pod or (f"uid {ident.pod_uid}" if ident.pod_uid else None)
    ns.container = ident.container or (ident.container_id[:12] if ident.container_id
                                       else None)


def open_netns(ns: Netns) -> int:
    """An fd of the namespace, checked to still be it: a /proc/PID path may now belong to a
    reused pid in another namespace. Raises LookupError when it is gone."""
    for path in ns.paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        if os.fstat(fd).st_ino == ns.inode:
            return fd
        os.close(fd)
    raise LookupError(Msg("network namespace {name} vanished during the sweep",
                          name=ns.label))


def entry_path(ns: Netns) -> str:
    """A path that opens this namespace now (checked against its inode)."""
    fd = open_netns(ns)
    try:
        return next(p for p in ns.paths if _inode(p) == ns.inode)
    finally:
        os.close(fd)


def select(found: Discovered, spec: str) -> list[Netns]:
    """--netns all, pod:NAMESPACE/NAME, container:ID-OR-NAME, or a name/label."""
    if spec == "all":
        return found.namespaces
    kind, _, want = spec.partition(":")
    if kind == "pod":
        hit = [n for n in found.namespaces if n.pod == want]
    elif kind == "container":
        hit = [n for n in found.namespaces if n.container and (
            n.container == want or (len(want) >= 4 and n.container.startswith(want)))]
    else:
        hit = [n for n in found.namespaces if spec in (n.label, n.name)]
    if not hit:
        known = ", ".join(n.label for n in found.namespaces[:8])
        raise TcpDoctorError(Msg("--netns {spec}: no such namespace on this host (found: "
                                 "{known}{more})", spec=spec, known=known,
                                 more=", ..." if len(found.namespaces) > 8
                                 else ""))
    return hit
