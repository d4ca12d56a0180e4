"""Where fleets live: node-problem-detector's plugin protocol on real labs, and findings
posted to a real Alertmanager (Debian's prometheus-alertmanager, on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import live_reason, tcpdoctor, tcpdoctor_as_nobody

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
