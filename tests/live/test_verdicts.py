"""Verdicts on real populations: a grouping that needs the LISTEN rows survives a state
filter, and a healthy backend behind one load balancer is not a warning."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import in_netns, live_reason, tcpdoctor

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdverdict") as net:
        yield net


def test_service_port_grouping_after_a_state_filter_names_the_listener(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["time-wait-server"]
    scenarios.build(lab, sc, 1000)
    proc = tcpdoctor("top", "--netns", lab.name, "--by", "service-port", "--state",
                     "TIME_WAIT", "--json")
    assert proc.returncode == 0, proc.stderr
    groups = json.loads(proc.stdout)["groups"]
    ss = in_netns(lab.name, "ss", "-Htan", "state", "time-wait", "sport", "8080").stdout
    time_wait = len(ss.splitlines())
    top = groups[0]
    assert str(top["key"]["service-port"]) == "8080", groups[:3]
    # The population grows only by expiry and refresh between the two reads: within 2%.
    assert abs(top["count"] - time_wait) <= 0.02 * time_wait


def test_a_backend_behind_one_load_balancer_is_healthy(lab: LabNet) -> None:
    """12,000 ESTABLISHED connections from one address to one listening port, nothing else
    wrong: context (info at most), exit 0."""
    sc = scenarios.SCENARIOS["healthy"]
    count = scenarios.build(lab, sc, 12_000)
    assert count >= 12_000
    proc = tcpdoctor("check", "--netns", lab.name, "--json", "--interval", "1")
    report = json.loads(proc.stdout)
    loud = [f["id"] for f in report["findings"] if f["severity"] != "info"]
    assert proc.returncode == 0 and loud == [], report["findings"]
    peers = [f for f in report["findings"] if f["id"] == "PEER_CONCENTRATION"]
    assert all(f["severity"] == "info" for f in peers)
