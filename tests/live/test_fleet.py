"""Where fleets live: node-problem-detector's plugin protocol on real labs, and findings
posted to a real Alertmanager (Debian's prometheus-alertmanager, on loopback)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import live_reason, tcpdoctor, tcpdoctor_as_nobody, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdfleet") as net:
        yield net


def npd(*args: str) -> tuple[str, int]:
    proc = tcpdoctor("check", "--format", "npd", *args)
    assert proc.stderr == "" or "Traceback" not in proc.stderr
    return proc.stdout, proc.returncode


def test_npd_names_the_leak_in_one_short_line(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    out, code = npd("--netns", lab.name)
    assert code == 1 and out.count("\n") == 1 and len(out.rstrip("\n").encode()) <= 80
    assert "CLOSE_WAIT_LEAK" in out, out


def test_npd_says_ok_for_a_healthy_lab(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["healthy"]
    scenarios.build(lab, sc, sc.default_n)
    out, code = npd("--netns", lab.name)
    assert code == 0 and out.startswith("OK") and out.count("\n") == 1


def test_npd_is_unknown_without_the_rights_to_read(lab: LabNet) -> None:
    proc = tcpdoctor_as_nobody("check", "--format", "npd", "--netns", lab.name)
    assert proc.returncode == 2 and proc.stdout.startswith("UNKNOWN")
    assert proc.stdout.count("\n") == 1 and len(proc.stdout.rstrip("\n").encode()) <= 80


AM_CONFIG = """route:
  receiver: nowhere
  group_by: [alertname, netns]
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: nowhere
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """Debian's Alertmanager on a free loopback port, its storage in tmp_path."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("Debian's prometheus-alertmanager is not installed (.ci/run installs it)")
    (tmp_path / "am.yml").write_text(AM_CONFIG)
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'am.yml'}",
                             f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _get(url + "/-/ready") is not None, 20)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            body = reply.read()
            return json.loads(body) if body.startswith((b"[", b"{")) else body
    except OSError:
        return None


def alerts(url: str, netns: str) -> list[dict[str, Any]]:
    found = _get(url + "/api/v2/alerts") or []
    return [a for a in found if a["labels"].get("netns") == netns]


def test_findings_reach_alertmanager_and_resolve(lab: LabNet, alertmanager: str,
                                                 tmp_path: Path) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    for _ in range(2):  # the second run (a restart) must not duplicate the alert
        proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0", "--alertmanager",
                         alertmanager)
        assert proc.returncode == 1 and "Alertmanager" not in proc.stderr, proc.stderr
    assert wait_for(lambda: len(alerts(alertmanager, lab.name)) == 1, 10)
    [alert] = alerts(alertmanager, lab.name)
    labels = alert["labels"]
    assert labels["alertname"] == "CLOSE_WAIT_LEAK" and labels["severity"] == "warning"
    assert labels["instance"] == socket.gethostname() and labels["source"] == "tcpdoctor"
    assert "CLOSE_WAIT" in alert["annotations"]["summary"]
    assert alert["annotations"]["action"] and "close_wait=200" in alert["annotations"]["evidence"]
    # The exporter posts every round; when the leak ends, its alert resolves.
    exporter = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--netns",
                                 lab.name, "--textfile", str(tmp_path), "--interval", "1",
                                 "--alertmanager", alertmanager],
                                stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (tmp_path / "tcpdoctor.prom").exists(), 20)
        lab.retire("td-leaky")  # the leaking server exits: its CLOSE_WAIT are gone
        assert wait_for(lambda: alerts(alertmanager, lab.name) == [], 20), \
            alerts(alertmanager, lab.name)
    finally:
        exporter.terminate()
        exporter.wait(timeout=20)


def test_an_unreachable_alertmanager_is_a_note_not_a_crash(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0", "--alertmanager",
                     f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # the report stands
    assert "Alertmanager" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
