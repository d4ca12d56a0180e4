"""What a plain `check` looks at: as root in the host's namespace, every namespace there is
(a leak elsewhere is found, not a wrong all-clear); inside a namespace (`ip netns exec`),
that one, named in the report; `states` keeps its namespace and says what others hold."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import live_reason, tcpdoctor

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))


@pytest.fixture(scope="module")
def leak() -> Iterator[LabNet]:
    sc = scenarios.SCENARIOS["close-wait"]
    with LabNet(prefix="tdscope") as lab:
        scenarios.build(lab, sc, sc.default_n)
        yield lab


def test_plain_check_finds_a_leak_in_another_namespace(leak: LabNet) -> None:
    proc = tcpdoctor("check", "--json", "--interval", "0")
    report = json.loads(proc.stdout)
    assert report["netns"] == "all"
    mine = [f for f in report["findings"] if f["netns"] == leak.name]
    assert "CLOSE_WAIT_LEAK" in [f["id"] for f in mine], report["findings"]
    assert proc.returncode >= 1
    text = tcpdoctor("check", "--interval", "0").stdout
    assert "No problems found" not in text and leak.name in text


def test_netns_self_narrows_to_the_current_namespace(leak: LabNet) -> None:
    report = json.loads(tcpdoctor("check", "--json", "--interval", "0", "--netns",
                                  "self").stdout)
    assert report.get("netns") != "all" and "namespaces" not in report


def test_under_ip_netns_exec_the_report_names_its_namespace(leak: LabNet) -> None:
    proc = subprocess.run(["ip", "netns", "exec", leak.name, sys.executable, "-m",
                           "tcpdoctor", "check", "--interval", "0"], capture_output=True,
                          text=True, check=False)
    head = proc.stdout.splitlines()[0]
    assert f"(netns {leak.name})" in head, head
    assert "CLOSE_WAIT_LEAK" in proc.stdout and proc.returncode >= 1


def test_states_keeps_its_namespace_and_says_what_others_hold(leak: LabNet) -> None:
    proc = tcpdoctor("states")
    assert proc.returncode == 0
    assert "other network namespace(s) hold" in proc.stderr and "--netns all" in proc.stderr


def test_check_trace_reads_the_table_after_the_window_and_says_what_it_saw() -> None:
    """Connections opened during the trace window are in the report, and a trace line is
    there whatever the trace saw."""
    import time

    with LabNet(prefix="tdtrwin") as lab:
        check = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "check", "--trace", "3",
                                  "--netns", lab.name, "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the trace is running: these sockets appear during its window
        sc = scenarios.SCENARIOS["healthy"]
        scenarios.build(lab, sc, 40)
        out, err = check.communicate(timeout=60)
    report = json.loads(out)
    assert report["states"]["ESTABLISHED"] == 40, err  # the server ends, made in the window
    assert any(n.startswith("traced 3") for n in report["notes"]), report["notes"]


def test_a_saved_sweep_diagnoses_like_a_live_one(tmp_path: Path) -> None:
    """Port exhaustion (a namespace's own ip_local_port_range), a memory hog and a leak in
    three namespaces: `analyze` of `snapshot --netns all` finds what `check --netns all`
    finds at the same moment."""
    names = ("port-exhaustion", "memory-hog", "close-wait")
    with contextlib.ExitStack() as stack:
        labs = {n: stack.enter_context(LabNet(prefix="tdsave")) for n in names}
        for n, lab in labs.items():
            sc = scenarios.SCENARIOS[n]
            scenarios.build(lab, sc, sc.default_n)
        live = json.loads(tcpdoctor("check", "--netns", "all", "--json", "--interval",
                                    "0").stdout)
        saved = tmp_path / "all.json.gz"
        assert tcpdoctor("snapshot", "--netns", "all", "-o", str(saved)).returncode == 0
        offline = json.loads(tcpdoctor("analyze", str(saved), "--json").stdout)

        def mine(report: dict) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
            ours = {lab.name for lab in labs.values()}
            return {(f["netns"], f["id"], f["severity"]) for f in report["findings"]
                    if f["netns"] in ours}

        want = {(labs[n].name, scenarios.SCENARIOS[n].finding) for n in names}
        assert want <= {(ns, fid) for ns, fid, _ in mine(live)}
        assert mine(offline) == mine(live)
