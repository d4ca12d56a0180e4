"""Issue 13 on real namespaces and cgroups: a host of 30+ network namespaces (named, held
only by a process, held only by a bind mount elsewhere), three of them made to look like a
Kubernetes pod, a docker container and a containerd container (real cgroup v1 paths in
the runtimes' layouts, plus fixture runtime files under an injected root)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SS_STATES, live, tcpdoctor, tcpdoctor_as_nobody

pytestmark = live
CGROUP = Path("/sys/fs/cgroup/pids")
POD_UID = "3f2a9c1e-7b4d-4e8a-9c3f-1a2b3c4d5e6f"
CID = {kind: secrets.token_hex(32) for kind in ("pod", "docker", "containerd")}
# Inside a fresh namespace: loopback up, and a dead upstream (198.19/16 routed to lo,
# where nothing answers: SYN_SENT stays).
PREP = "ip link set lo up && ip route add 198.19.0.0/16 dev lo && exec \"$0\" \"$@\""


@dataclass
class Host:
    """Everything the test made, removed in reverse order even when it fails."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    named: list[str] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)
    cgroups: list[Path] = field(default_factory=list)
    paths: dict[int, str] = field(default_factory=dict)  # our namespaces: inode -> path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tdsweep-")))
    app_pid: int = 0
    web_path: str = ""
    inodes: dict[str, int] = field(default_factory=dict)  # pod, web, batch, app -> inode

    def remember(self, path: str) -> int:
        ino = os.stat(path).st_ino
        self.paths[ino] = path
        return ino

    def add_named(self) -> int:
        name = f"tdsweep-{self.tag}-{len(self.named)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.named.append(name)
        return self.remember(f"/run/netns/{name}")

    def add_held(self, name: str | None = None, actions: list[dict[str, Any]] | None = None,
                 kind: str = "") -> subprocess.Popen[str]:
        """A namespace only a process holds: `sleep`, or a lab worker with sockets."""
        if actions is None:
            cmd = ["unshare", "-n", "sleep", "600"]
        else:
            spec = json.dumps({"name": name, "actions": actions})
            cmd = ["unshare", "-n", "sh", "-c", PREP, sys.executable, "-m",
                   "tcpdoctor.lab.worker", spec]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        self.procs.append(proc)
        if actions is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("READY"), line
        else:
            deadline = time.monotonic() + 10
            while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat(
                    "/proc/self/ns/net").st_ino and time.monotonic() < deadline:
                time.sleep(0.02)  # until unshare has moved it
        ino = self.remember(f"/proc/{proc.pid}/ns/net")
        if kind:
            self.inodes[kind] = ino
        return proc

    def add_mounted(self) -> int:
        path = self.root / f"ns-{len(self.mounts)}"
        path.touch()
        subprocess.run(["unshare", f"--net={path}", "true"], check=True)
        self.mounts.append(path)
        return self.remember(str(path))

    def into_cgroup(self, proc: subprocess.Popen[str], rel: str) -> None:
        path = CGROUP / rel
        path.mkdir(parents=True, exist_ok=True)
        for parent in [path, *path.relative_to(CGROUP).parents]:
            full = CGROUP / parent
            if full != CGROUP and full not in self.cgroups:
                self.cgroups.append(full)
        (path / "cgroup.procs").write_text(str(proc.pid))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # only processes this test started, by pid
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in sorted(self.cgroups, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):  # busy or gone: nothing more to do
                path.rmdir()
        for path in self.mounts:
            subprocess.run(["umount", str(path)], check=False)
        for name in self.named:
            subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def runtime_files(root: Path) -> None:
    """What kubelet, docker and containerd would have left on disk."""
    pod_dir = root / "var/log/pods" / f"shop_cart-7d9f_{POD_UID}" / "app"
    pod_dir.mkdir(parents=True)
    logs = root / "var/log/containers"
    logs.mkdir(parents=True)
    (logs / f"cart-7d9f_shop_app-{CID['pod']}.log").symlink_to(pod_dir / "0.log")
    docker = root / "var/lib/docker/containers" / CID["docker"]
    docker.mkdir(parents=True)
    (docker / "config.v2.json").write_text(json.dumps(
        {"ID": CID["docker"], "Name": "/web-1", "Config": {"Labels": {}}}))
    task = root / "run/containerd/io.containerd.runtime.v2.task/default" / CID["containerd"]
    task.mkdir(parents=True)
    (task / "config.json").write_text(json.dumps({"annotations": {"nerdctl/name": "batch-7"}}))


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    if not CGROUP.is_dir():
        pytest.skip("no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids")
    h = Host()
    try:
        for _ in range(13):
            h.add_named()
        for _ in range(10):
            h.add_held()
        for _ in range(3):
            h.add_mounted()
        pod = h.add_held("td-cart", [
            {"kind": "listen", "addr": "127.0.0.1", "port": 8080},
            {"kind": "connect", "addr": "127.0.0.1", "port": 8080, "n": 150, "then": "close"}],
            "pod")
        h.into_cgroup(pod, f"kubepods/burstable/pod{POD_UID}/{CID['pod']}")
        web = h.add_held("td-web", [
            {"kind": "listen", "addr": "127.0.0.1", "port": 80, "accept": "close"},
            {"kind": "connect", "addr": "127.0.0.1", "port": 80, "n": 300,
             "then": "wait-eof-close"}], "web")
        h.into_cgroup(web, f"docker/{CID['docker']}")
        h.web_path = f"/proc/{web.pid}/ns/net"
        batch = h.add_held("td-batch", [
            {"kind": "listen", "addr": "127.0.0.1", "port": 9000},
            {"kind": "connect", "addr": "127.0.0.1", "port": 9000, "n": 5}], "batch")
        h.into_cgroup(batch, f"default/{CID['containerd']}")
        app = h.add_held("td-app", [{"kind": "connect", "addr": "198.19.0.10", "port": 5432,
                                     "n": 50, "then": "nonblock"}], "app")
        h.app_pid = app.pid
        runtime_files(h.root)
        assert len(h.paths) >= 30
        yield h
    finally:
        h.cleanup()


def ss_states(path: str) -> Counter[str]:
    out = subprocess.run(["nsenter", f"--net={path}", "ss", "-Htan"], capture_output=True,
                         text=True, check=True).stdout
    return Counter(SS_STATES[line.split()[0]] for line in out.splitlines() if line.strip())


def run(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TCPDOCTOR_ROOT": str(host.root)}
    return subprocess.run([sys.executable, "-m", "tcpdoctor", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def ours(host: Host, report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The findings in the namespaces this test made, by (id, kind): the host may hold
    other namespaces, with findings of their own."""
    kinds = {ino: kind for kind, ino in host.inodes.items()}
    return {(f["id"], kinds[f["netns_inode"]]): f for f in report["findings"]
            if f["netns_inode"] in kinds}


def as_json(host: Host, *args: str) -> Any:
    proc = run(host, *args)
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1, 2), proc.stderr
    return json.loads(proc.stdout)


def test_states_all_equals_ss_in_each_namespace(host: Host) -> None:
    data = as_json(host, "states", "--netns", "all", "--json")
    per = {row["netns_inode"]: row for row in data["namespaces"]}
    assert set(host.paths) <= set(per), "a namespace the test made was not found"
    for ino, path in host.paths.items():
        want = ss_states(path)
        got = {k: v for k, v in per[ino]["states"].items() if v}
        assert got == dict(want), (path, per[ino]["netns"])
    assert data["total"] == sum(row["total"] for row in data["namespaces"])
    names = {row["netns"] for row in data["namespaces"]}
    assert {f"tdsweep-{host.tag}-{i}" for i in range(13)} <= names
    assert f"{host.app_pid}/td-app" in names


def test_check_all_names_pod_container_and_unnamed(host: Host) -> None:
    proc = run(host, "check", "--netns", "all", "--json", "--interval", "0",
               "--threshold", "TIME_WAIT_SERVER_CLOSE.warning=100")
    assert proc.returncode in (1, 2), proc.stderr  # 2 only if another namespace is critical
    report = json.loads(proc.stdout)
    found = ours(host, report)
    leak = found["CLOSE_WAIT_LEAK", "pod"]
    assert leak["pod"] == "shop/cart-7d9f" and leak["container"] == "app"
    assert [p["name"] for p in leak["processes"]] == ["td-cart"]
    tw = found["TIME_WAIT_SERVER_CLOSE", "web"]
    assert tw["container"] == "web-1" and tw["pod"] is None
    up = found["UPSTREAM_UNREACHABLE", "app"]
    assert up["netns"] == f"{host.app_pid}/td-app"
    assert up["pod"] is None and up["container"] is None
    for f in report["findings"]:
        assert isinstance(f["netns_inode"], int)
    batch = next(r for r in report["namespaces"] if r.get("container") == "batch-7")
    assert batch["total"] == 11 and batch["findings"] == []
    text = run(host, "check", "--all-netns", "--interval", "0",
               "--threshold", "TIME_WAIT_SERVER_CLOSE.warning=100").stdout
    assert "pod:shop/cart-7d9f (app)" in text and "container:web-1" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_top_by_netns_state_and_selectors(host: Host) -> None:
    groups = as_json(host, "top", "--netns", "all", "--by", "netns,state", "-n", "500",
                     "--json")["groups"]
    got = {(g["key"]["netns"], g["key"]["state"]): g["count"] for g in groups}
    assert got[("pod:shop/cart-7d9f (app)", "CLOSE_WAIT")] == 150
    assert got[("container:web-1", "TIME_WAIT")] == ss_states(host.web_path)["TIME_WAIT"]
    pods = as_json(host, "top", "--netns", "all", "--by", "pod", "--json")["groups"]
    assert any(g["key"]["pod"] == "shop/cart-7d9f" for g in pods)
    one = as_json(host, "states", "--netns", "pod:shop/cart-7d9f", "--json")
    assert one["states"]["CLOSE_WAIT"] == 150
    web = as_json(host, "states", "--netns", "container:web-1", "--json")
    assert web["states"]["TIME_WAIT"] >= 250
    bad = run(host, "states", "--netns", "pod:shop/nope")
    assert bad.returncode == 3 and len(bad.stderr.strip().splitlines()) == 1


def test_vanished_and_reused_namespaces_are_noted() -> None:
    from tcpdoctor.sources import every_netns, namespaces
    from tcpdoctor.sources.target import Target

    gone = namespaces.Netns(inode=1, paths=["/proc/999999999/ns/net"])
    reused = namespaces.Netns(inode=2, paths=["/proc/self/ns/net"])  # wrong inode: reused
    for ns in (gone, reused):
        with pytest.raises(LookupError):
            namespaces.open_netns(ns)
    got = every_netns.sample_all(Target(owners=False), [gone, reused], 0.0, info=False)
    assert got.samples == [None, None]
    assert any("could not be read" in n for n in got.notes)


def test_unprivileged_sweep_is_partial_and_says_so(host: Host) -> None:
    proc = tcpdoctor_as_nobody("states", "--netns", "all", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    assert any(row["netns"] == "host" for row in data["namespaces"])
    assert "could not be read" in proc.stderr or "unreadable" in proc.stderr
    refused = tcpdoctor("tune", "--netns", "all", "--interval", "0")  # one namespace's sysctls
    assert refused.returncode == 3 and "--netns all" in refused.stderr


def test_exporter_all_netns_bounds_labels(host: Host, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")

    def scrape(top: int) -> dict[str, float]:
        proc = run(host, "exporter", "--all-netns", "--textfile", str(tmp_path), "--once",
                   "--top", str(top), "--threshold", "TIME_WAIT_SERVER_CLOSE.warning=100")
        assert proc.returncode == 0, proc.stderr
        text = (tmp_path / "tcpdoctor.prom").read_text()
        assert "tcpdoctor_netns_info{" in text
        return {line.split('netns="')[1].split('"')[0]: float(line.split()[-1])
                for line in text.splitlines() if line.startswith("tcpdoctor_sockets_all{")}

    every = scrape(1000)  # every namespace with sockets by name, no "other"
    assert "other" not in every
    assert every["pod:shop/cart-7d9f (app)"] == 301 and every["container:web-1"] >= 250
    one = scrape(1)  # the largest by name, the rest summed
    assert len(one) == 2 and "other" in one
    assert sum(one.values()) == sum(every.values())
    text = (tmp_path / "tcpdoctor.prom").read_text()
    assert 'tcpdoctor_finding{id="UPSTREAM_UNREACHABLE",netns="other"' in text


def test_snapshot_all_netns_analyzed_per_namespace(host: Host, tmp_path: Path) -> None:
    path = tmp_path / "host.json.gz"
    proc = run(host, "snapshot", "--netns", "all", "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    report = as_json(host, "analyze", str(path), "--json",
                     "--threshold", "TIME_WAIT_SERVER_CLOSE.warning=100")
    found = ours(host, report)
    assert found["CLOSE_WAIT_LEAK", "pod"]["pod"] == "shop/cart-7d9f"
    assert found["TIME_WAIT_SERVER_CLOSE", "web"]["container"] == "web-1"
    assert found["UPSTREAM_UNREACHABLE", "app"]["netns"] == f"{host.app_pid}/td-app"
    live = as_json(host, "states", "--netns", "all", "--json")
    assert report["states"] == live["states"]


def test_record_and_watch_all_netns(host: Host, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    proc = run(host, "record", "--netns", "all", "--db", str(db), "--interval", "0.3",
               "--count", "2", "--namespaces", "100", "-q")
    assert proc.returncode == 0, proc.stderr
    default = run(host, "history", "--db", str(db), "--json")
    assert default.returncode == 0 and "pick one with --netns" in default.stderr
    # The host's samples (not a mix of namespaces).
    assert len(json.loads(default.stdout)["samples"]) == 2
    pod = as_json(host, "history", "--db", str(db), "--json", "--netns",
                  "pod:shop/cart-7d9f (app)")
    assert len(pod["samples"]) == 2
    assert all(s["states"]["CLOSE_WAIT"] == 150 for s in pod["samples"])
    assert all("CLOSE_WAIT_LEAK" in s["findings"] for s in pod["samples"])
    missing = run(host, "history", "--db", str(db), "--netns", "nope")
    assert missing.returncode == 3 and "recorded:" in missing.stderr
    lines = run(host, "watch", "--netns", "all", "--count", "2", "--interval", "0.3",
                "--json", "--threshold", "TIME_WAIT_SERVER_CLOSE.warning=100")
    assert lines.returncode == 0, lines.stderr
    first = json.loads(lines.stdout.splitlines()[0])
    # Summed over the host: ours, and whatever other namespaces the host holds.
    assert first["states"]["CLOSE_WAIT"] >= 150 and first["states"]["SYN_SENT"] >= 50
    assert {"CLOSE_WAIT_LEAK", "TIME_WAIT_SERVER_CLOSE", "UPSTREAM_UNREACHABLE"} <= set(
        first["findings"])
    assert any("in pod:shop/cart-7d9f (app)" in e for e in first["events"])


@pytest.mark.parametrize(("text", "pod_uid", "cid", "runtime"), [
    # cgroup v2, systemd driver (kubelet + containerd)
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f2a9c1e_7b4d_4e8a_"
     "9c3f_1a2b3c4d5e6f.slice/cri-containerd-" + "a" * 64 + ".scope\n",
     "3f2a9c1e-7b4d-4e8a-9c3f-1a2b3c4d5e6f", "a" * 64, "containerd"),
    # cgroup v1, cgroupfs driver (kubelet + docker)
    ("12:pids:/kubepods/besteffort/pod3f2a9c1e-7b4d-4e8a-9c3f-1a2b3c4d5e6f/" + "b" * 64 + "\n"
     "0::/\n", "3f2a9c1e-7b4d-4e8a-9c3f-1a2b3c4d5e6f", "b" * 64, None),
    ("0::/system.slice/docker-" + "c" * 64 + ".scope\n", None, "c" * 64, "docker"),
    ("0::/machine.slice/libpod-" + "d" * 64 + ".scope\n", None, "d" * 64, "podman"),
    ("0::/system.slice/crio-" + "e" * 64 + ".scope\n", None, "e" * 64, "cri-o"),
    ("0::/user.slice/user-0.slice/session-3.scope\n", None, None, None),
])
def test_cgroup_paths_of_the_runtimes(text: str, pod_uid: str | None, cid: str | None,
                                      runtime: str | None) -> None:
    from tcpdoctor.sources.containers import parse_cgroup

    got = parse_cgroup(text)
    assert (got.pod_uid, got.container_id, got.runtime) == (pod_uid, cid, runtime)
