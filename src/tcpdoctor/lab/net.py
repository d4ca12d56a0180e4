"""Throwaway network namespaces for the lab and the tests.

Layout: the main namespace (the one to inspect) and a peer namespace joined by a veth pair.

    main  198.18.0.1/24  td0 <--veth--> td1  198.18.0.2/24  peer

198.18.0.0/15 is the RFC 2544 benchmarking range. 198.19.0.0/16 is routed from main to the
peer, which does not forward, so SYNs sent there are silently dropped: that is how SYN_SENT
piles up. Nothing here has a route to any other network; traffic never leaves the pair.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, c_locale
from tcpdoctor.model.kernel_state import sysctl_path

MAIN_ADDR = "198.18.0.1"
PEER_ADDR = "198.18.0.2"
WORKDIR_PREFIX = "tcpdoctor-lab-"  # + the lab's namespace name: its own files
PHANTOM_NET = "198.19.0.0/16"  # routed to the peer and dropped there
READY_TIMEOUT = 120.0


def run_ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                          env=c_locale())
    if proc.returncode != 0:
        raise TcpDoctorError(Msg("ip {args}: {error}", args=' '.join(args),
                                 error=proc.stderr.strip()))


def veth(ns_a: str, dev_a: str, addr_a: str, ns_b: str, dev_b: str, addr_b: str) -> None:
    """A veth pair between two namespaces, each end addressed (CIDR) and up."""
    run_ip("-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns",
           ns_b)
    for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
        run_ip("-n", ns, "addr", "add", addr, "dev", dev)
        run_ip("-n", ns, "link", "set", dev, "up")


def require_root() -> None:
    if os.geteuid() != 0:
        raise TcpDoctorError(Msg("the lab needs root (it creates network namespaces)"))
    if shutil.which("ip") is None:
        raise TcpDoctorError(Msg("the lab needs the `ip` command (Debian package iproute2)"))


@dataclass
class Worker:
    name: str
    netns: str
    proc: subprocess.Popen[bytes]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class LabNet:
    """Two namespaces and their workers; always torn down by close() (or the with block)."""

    prefix: str = "tdlab"
    name: str = ""
    peer: str = ""
    workers: list[Worker] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    workdir: str = ""  # the lab's own files (its workers' event log), removed with it

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = self.name or f"{self.prefix}-{tag}"
        self.peer = self.peer or f"{self.name}-peer"

    def __enter__(self) -> LabNet:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def event_log(self) -> str:
        return os.path.join(self.workdir, "events.jsonl")

    def events(self) -> dict[str, dict[str, Any]]:
        """What the workers noted (the first failed connect, ...), by event kind."""
        try:
            with open(self.event_log) as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        except OSError:
            return {}
        return {row["event"]: row for row in rows}

    def open(self) -> None:
        require_root()
        # Named after the lab: --cleanup finds it when a SIGKILL left it behind.
        self.workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self.name}-")
        try:
            run_ip("netns", "add", self.name)
            run_ip("netns", "add", self.peer)
            for ns in (self.name, self.peer):
                run_ip("-n", ns, "link", "set", "lo", "up")
            veth(self.name, "td0", f"{MAIN_ADDR}/24", self.peer, "td1", f"{PEER_ADDR}/24")
            run_ip("-n", self.name, "route", "add", PHANTOM_NET, "via", PEER_ADDR)
            # On loopback a late duplicate ACK can draw an ACK from a fresh TIME_WAIT; the
            # closed peer answers with RST, which kills the TIME_WAIT unless RFC 1337 is on
            # (seen in ~5% of population builds). Labs need exact, stable counts.
            for ns in (self.name, self.peer):
                self.sysctl(ns, "net.ipv4.tcp_rfc1337", "1")
            # The peer sends SYNs from phantom addresses for the SYN-flood scenario.
            self.sysctl(self.peer, "net.ipv4.ip_nonlocal_bind", "1")
            self.sysctl(self.peer, "net.ipv4.ip_forward", "0")
        except BaseException:
            self.close()
            raise

    def sysctl(self, ns: str, key: str, value: str) -> None:
        path = sysctl_path(key)
        proc = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", 'echo "$1" > "$2"',
                               "sh", value, path], capture_output=True, text=True, check=False,
                              env=c_locale())
        if proc.returncode != 0:
            raise TcpDoctorError(Msg("cannot set {key}={value} in {ns}: {error}",
                                     key=key, value=value, ns=ns,
                                     error=proc.stderr.strip()))

    def spawn(self, ns: str, name: str, actions: list[dict[str, Any]],
              timeout: float = READY_TIMEOUT, **options: Any) -> Worker:
        """A worker process in namespace ns; options: nofile (its open-files limit), log
        (a file where it notes events such as its first failed connect)."""
        spec = json.dumps({"name": name, "actions": actions, **options})
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tcpdoctor.lab.worker", spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=c_locale())
        worker = Worker(name, ns, proc)
        self.workers.append(worker)
        worker.info = self._wait_ready(worker, timeout)
        return worker

    def _wait_ready(self, worker: Worker, timeout: float) -> dict[str, Any]:
        assert worker.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = worker.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                line = worker.proc.stdout.readline().decode()
                if line.startswith("READY "):
                    info: dict[str, Any] = json.loads(line[6:])
                    return info
                break
            if worker.proc.poll() is not None:
                break
        err = worker.proc.stderr.read().decode()[-500:] if worker.proc.poll() is not None \
            and worker.proc.stderr else ""
        raise TcpDoctorError(Msg("lab worker {name} did not start: {why}",
                                 name=worker.name,
                                 why=err.strip() or Msg("timeout")))

    def retire(self, name: str) -> None:
        """Stop the workers of that name (a finished load generator before its rerun)."""
        for w in [w for w in self.workers if w.name == name]:
            self._kill(w)
            self.workers.remove(w)

    def _kill(self, w: Worker) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(w.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            w.proc.wait(timeout=10)
        for stream in (w.proc.stdin, w.proc.stdout, w.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        for w in self.workers:
            self._kill(w)
        self.workers.clear()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        for ns in (self.name, self.peer):
            if os.path.exists(f"/run/netns/{ns}"):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False,
                               env=c_locale())


def leftover_namespaces(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def cleanup(prefix: str = "tdlab-") -> list[str]:
    """What a lab killed with SIGKILL left: its namespaces (prefix) and the lab workers
    still running inside them. Only processes running tcpdoctor's lab worker are killed."""
    require_root()
    removed = []
    for ns in leftover_namespaces(prefix):
        try:
            inode = os.stat(f"/run/netns/{ns}").st_ino
        except OSError:
            continue
        for pid in _workers_in(inode):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False,
                       env=c_locale())
        removed.append(ns)
        for workdir in glob.glob(os.path.join(tempfile.gettempdir(),
                                              f"{WORKDIR_PREFIX}{glob.escape(ns)}-*")):
            shutil.rmtree(workdir, ignore_errors=True)
    return removed


def _workers_in(netns_inode: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino != netns_inode:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue  # gone, or not ours to see
        if b"tcpdoctor.lab.worker" in cmd:
            pids.append(int(entry))
    return pids
