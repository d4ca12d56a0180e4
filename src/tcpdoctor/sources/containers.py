"""Which pod or container a process belongs to: its cgroup path, read the way the runtimes
write it, plus what the runtimes leave on disk (kubelet's log directories, docker's and
containerd's container configs, CRI-O's). No runtime socket, no Kubernetes API.

Every path is under an injectable root (`TCPDOCTOR_ROOT`, default "/"), so that tests can
hold a runtime's files in a fixture tree; /proc is read through its own proc root.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.util.text import visible

# A container id in a cgroup path: docker-<id>.scope, cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope (podman), or a bare 64-hex directory (cgroupfs
# driver: /docker/<id>, /kubepods/burstable/pod<uid>/<id>).
CONTAINER_ID = re.compile(r"(?:docker-|cri-containerd-|crio-|containerd-|libpod-)?([0-9a-f]{64})"
                          r"(?:\.scope)?$")
POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_]"
                     r"[0-9a-f]{12})")
RUNTIMES = (("docker", "docker"), ("cri-containerd", "containerd"), ("crio", "cri-o"),
            ("containerd", "containerd"), ("libpod", "podman"))


@dataclass
class Identity:
    """Who a process is, container-wise (all None for a plain host process)."""

    pod_uid: str | None = None
    pod: str | None = None  # "namespace/name"
    container_id: str | None = None
    container: str | None = None  # the runtime's or Kubernetes' container name
    runtime: str | None = None


@dataclass
class RuntimeFiles:
    """Names the runtimes wrote on disk, read once per sweep."""

    root: str = "/"
    pods: dict[str, str] = field(default_factory=dict)  # pod uid -> "namespace/name"
    containers: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # container id -> (pod "namespace/name" or None, container name or None)

    @classmethod
    def load(cls, root: str | None = None) -> RuntimeFiles:
        files = cls(root if root is not None else os.environ.get("TCPDOCTOR_ROOT", "/"))
        files._kubelet_logs()
        files._docker()
        files._oci_configs()
        return files

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _kubelet_logs(self) -> None:
        # /var/log/pods/<namespace>_<pod>_<uid>/ and the symlinks kubelet keeps in
        # /var/log/containers/<pod>_<namespace>_<container>-<id>.log
        for entry in _listdir(self.path("var", "log", "pods")):
            parts = entry.split("_")  # Kubernetes names never hold "_"
            if len(parts) == 3:
                self.pods[parts[2]] = visible(f"{parts[0]}/{parts[1]}")
        for entry in _listdir(self.path("var", "log", "containers")):
            m = re.match(r"(.+?)_(.+?)_(.+)-([0-9a-f]{64})\.log$", entry)
            if m:
                self.containers[m.group(4)] = _named(f"{m.group(2)}/{m.group(1)}",
                                                     m.group(3))

    def _docker(self) -> None:
        base = self.path("var", "lib", "docker", "containers")
        for cid in _listdir(base):
            doc = _json(os.path.join(base, cid, "config.v2.json"))
            if doc is None:
                continue
            labels = (doc.get("Config") or {}).get("Labels") or {}
            pod = _pod(labels.get("io.kubernetes.pod.namespace"),
                       labels.get("io.kubernetes.pod.name"))
            name = labels.get("io.kubernetes.container.name") or str(
                doc.get("Name", "")).lstrip("/") or None
            self.containers.setdefault(cid, _named(pod, name))

    def _oci_configs(self) -> None:
        # containerd: /run/containerd/io.containerd.runtime.v2.task/<ns>/<id>/config.json;
        # CRI-O: /run/containers/storage/overlay-containers/<id>/userdata/config.json
        task = self.path("run", "containerd", "io.containerd.runtime.v2.task")
        paths = [os.path.join(task, ns, cid, "config.json")
                 for ns in _listdir(task) for cid in _listdir(os.path.join(task, ns))]
        crio = self.path("run", "containers", "storage", "overlay-containers")
        paths += [os.path.join(crio, cid, "userdata", "config.json") for cid in _listdir(crio)]
        for path in paths:
            doc = _json(path)
            if doc is None:
                continue
            notes = doc.get("annotations") or {}
            cid = os.path.basename(os.path.dirname(path))
            if cid == "userdata":
                cid = os.path.basename(os.path.dirname(os.path.dirname(path)))
            pod = _pod(notes.get("io.kubernetes.cri.sandbox-namespace")
                       or notes.get("io.kubernetes.pod.namespace"),
                       notes.get("io.kubernetes.cri.sandbox-name")
                       or notes.get("io.kubernetes.pod.name"))
            name = (notes.get("io.kubernetes.cri.container-name")
                    or notes.get("io.kubernetes.container.name")
                    or notes.get("nerdctl/name"))
            self.containers.setdefault(cid, _named(pod, name))


def _named(pod: str | None, name: object) -> tuple[str | None, str | None]:
    """A pod and container name as the runtime wrote them, which anyone able to start a
    container chooses: escapes instead of control characters, once, where they are read."""
    return (visible(pod) if pod is not None else None,
            visible(name) if isinstance(name, str) and name else None)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _pod(namespace: object, name: object) -> str | None:
    return f"{namespace}/{name}" if isinstance(namespace, str) and isinstance(name, str) \
        else None


def parse_cgroup(text: str) -> Identity:
    """The pod uid, container id and runtime a /proc/PID/cgroup names (v1 or v2)."""
    ident = Identity()
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in path.split("/"):
            pod = POD_UID.search(part)
            if pod and part.startswith(("pod", "kubepods")):
                ident.pod_uid = pod.group(1).replace("_", "-")
            m = CONTAINER_ID.match(part)
            if m:
                ident.container_id = m.group(1)
                ident.runtime = next((rt for prefix, rt in RUNTIMES
                                      if part.startswith(prefix + "-")), None)
                if ident.runtime is None and "/docker/" in f"{path}/":
                    ident.runtime = "docker"
        if ident.container_id:
            break
    return ident


def identify(proc_root: str, pid: int, files: RuntimeFiles) -> Identity:
    """A process's pod and container, from its cgroup path and the runtimes' files."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
            ident = parse_cgroup(fh.read())
    except OSError:
        return Identity()
    if ident.pod_uid:
        ident.pod = files.pods.get(ident.pod_uid)
    if ident.container_id and ident.container_id in files.containers:
        pod, name = files.containers[ident.container_id]
        ident.pod = ident.pod or pod
        ident.container = name
    return ident
