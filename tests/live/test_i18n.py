"""Issue 16: tcpdoctor in Chinese. The catalog covers every text and only those; the language

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_i18n.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.conftest import live
from tests.unit.test_i18n import EN, ZH, english_left, run


@live
@pytest.mark.parametrize("name", [
    "time-wait-server", "time-wait-client", "close-wait", "syn-flood", "accept-overflow",
    "scan", "dead-upstream", "idle", "port-exhaustion", "memory-hog", "unread-close-wait",
    "stalled-reader", "peer-not-reading", "busy-reader", "healthy"])
def test_every_lab_scenario_in_chinese(name: str, tmp_path: Path) -> None:
    from tcpdoctor.lab import scenarios
    from tcpdoctor.lab.net import LabNet

    sc = scenarios.SCENARIOS[name]
    with LabNet(prefix="tdzh") as lab:
        scenarios.build(lab, sc, sc.default_n)
        report = run("check", "--netns", lab.name, *sc.check_args, env=ZH)
        snap = tmp_path / "lab.json.gz"
        assert run("snapshot", "--netns", lab.name, "-o", str(snap), env=ZH).returncode == 0
    text = report.stdout
    assert "Traceback" not in report.stderr and "结果：" in text
    if sc.finding:
        assert sc.finding in text and sc.process in text
    else:
        assert "没有发现问题。" in text
    assert not english_left(text), english_left(text)
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    # machine output: the same bytes in both languages (one saved sample, read twice)
    en = run("analyze", str(snap), "--json", env=EN)
    zh = run("analyze", str(snap), "--json", env=ZH)
    assert en.stdout == zh.stdout and en.returncode == zh.returncode
    assert json.loads(zh.stdout)["findings"] == json.loads(en.stdout)["findings"]
