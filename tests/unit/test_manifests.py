"""The fleet files: every Kubernetes manifest validates against the API schema of a current
Kubernetes release (kubernetes-validate, offline), and node-problem-detector's monitor
config asks for what `check --format npd` promises."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "contrib" / "kubernetes").glob("*.yaml"))
VERSION = "1.30.0"  # a release every kubernetes-validate of the declared range knows


def documents() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [(f"{path.name}#{i}", doc) for path in MANIFESTS
            for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc]


@pytest.mark.parametrize("name,doc", documents(), ids=[n for n, _ in documents()])
def test_every_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict) -> None:  # type: ignore[type-arg]
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_daemonset_reads_every_namespace_with_only_the_privileges_it_names() -> None:
    [ds] = [d for _, d in documents() if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["hostPID"] and pod["hostNetwork"]
    assert container["args"][:3] == ["exporter", "--netns", "all"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    header = MANIFESTS[[p.name for p in MANIFESTS].index("tcpdoctor-exporter.yaml")].read_text()
    for cap in security["capabilities"]["add"]:
        assert f"CAP_{cap}" in header  # each privilege is justified in the file


def test_npd_config_matches_the_plugin_protocol() -> None:
    config = json.loads((ROOT / "contrib" / "npd" / "tcpdoctor-monitor.json").read_text())
    assert config["plugin"] == "custom"
    assert config["pluginConfig"]["max_output_length"] == 80
    [rule] = config["rules"]
    assert rule["args"][:3] == ["check", "--format", "npd"]
    maps = [d for _, d in documents() if d["kind"] == "ConfigMap"]
    embedded = json.loads(maps[0]["data"]["tcpdoctor-monitor.json"])
    assert embedded == config  # the ConfigMap carries exactly contrib/npd's file
