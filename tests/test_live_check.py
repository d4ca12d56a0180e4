"""Issue 3 on real sockets: every lab scenario gives its intended finding, owner, port, exit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet, leftover_namespaces

from .conftest import live, tcpdoctor

pytestmark = live
EXIT = {None: 0, "info": 0, "warning": 1, "critical": 2}


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdcheck") as net:  # torn down even when the test fails
        yield net


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario_reports_intended_finding(lab: LabNet, name: str) -> None:
    sc = scenarios.SCENARIOS[name]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--json", "--netns", lab.name, *sc.check_args)
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    by_id = {f["id"]: f for f in report["findings"]}
    worst = max((f["severity"] for f in report["findings"] if f["severity"] != "info"),
                key=["warning", "critical"].index, default=None)
    assert proc.returncode == EXIT[worst]
    if sc.finding is None:
        assert worst is None, report["findings"]
        return
    assert sc.finding in by_id, f"{sc.finding} missing from {list(by_id)}"
    f = by_id[sc.finding]
    assert f["severity"] == sc.severity
    assert worst == sc.severity, f"another finding is more severe: {report['findings']}"
    assert sc.process in [p["name"] for p in f["processes"]], f["processes"]
    assert str(sc.port) in json.dumps(f["evidence"]) + f["summary"]
    assert f["actions"] and all(isinstance(a, str) for a in f["actions"])
    for key in ("schema", "source", "host", "kernel", "taken_at", "total", "established",
                "non_established", "states", "findings"):
        assert key in report


def test_check_human_report_names_process(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0")
    assert proc.returncode == 1
    assert "CLOSE_WAIT_LEAK" in proc.stdout and "td-leaky" in proc.stdout
    assert "200 sockets in CLOSE_WAIT" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_lab_cli_holds_and_tears_down() -> None:
    import subprocess
    import sys
    import time

    before = set(leftover_namespaces("tdlab-healthy"))
    lab_proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "lab", "healthy", "--n",
                                 "20", "--hold", "60", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert lab_proc.stdout is not None
        info = json.loads(lab_proc.stdout.readline())
        assert info["netns"] in leftover_namespaces("tdlab-healthy")
        check = tcpdoctor("check", "--netns", info["netns"], "--json", "--interval", "0")
        assert check.returncode == 0
        assert json.loads(check.stdout)["established"] == 20
        lab_proc.terminate()  # SIGTERM must tear everything down
        lab_proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and info["netns"] in leftover_namespaces("tdlab"):
            time.sleep(0.1)
        assert set(leftover_namespaces("tdlab-healthy")) == before
    finally:
        if lab_proc.poll() is None:
            lab_proc.kill()
