"""Issue 5: analyze saved ss/netstat/proc/netlink output the way a live check sees it.

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_analyze.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tcpdoctor.sources import offline
from tests.conftest import live, ss_state_counts, tcpdoctor
from tests.unit.test_analyze import NETSTAT_SAMPLE, SS_SAMPLE, WINDOWS_SAMPLE, capture, lab  # noqa: F401


@live
@pytest.mark.parametrize("name", ["close-wait", "time-wait-server", "scan", "dead-upstream"])
def test_analyze_captures_like_live_check(lab: LabNet, tmp_path: Path, name: str) -> None:
    sc = scenarios.SCENARIOS[name]
    scenarios.build(lab, sc, sc.default_n)
    files = capture(lab.name, tmp_path)
    oracle = ss_state_counts(lab.name)
    live_ids = {f["id"] for f in json.loads(
        tcpdoctor("check", "--json", "--interval", "0", "--netns", lab.name).stdout)["findings"]}
    for fname, path in files.items():
        proc = tcpdoctor("analyze", "--json", str(path))
        assert "Traceback" not in proc.stderr, proc.stderr
        report = json.loads(proc.stdout)
        states = {k: v for k, v in report["states"].items() if v}
        # TIME_WAIT may drift by expiries between the captures and the ss oracle.
        assert {k: v for k, v in states.items() if k != "TIME_WAIT"} == \
            {k: v for k, v in oracle.items() if k != "TIME_WAIT"}, fname
        assert abs(states.get("TIME_WAIT", 0) - oracle.get("TIME_WAIT", 0)) <= 5, fname
        ids = {f["id"] for f in report["findings"]}
        assert sc.finding in ids, (fname, ids)
        assert ids - live_ids == set(), (fname, ids - live_ids)
        # ss -p shows the kernel's comm (the name the lab set); netstat -p shows argv[0].
        if fname == "ss-tanp.txt" and sc.finding != "TIME_WAIT_SERVER_CLOSE":
            f = next(f for f in report["findings"] if f["id"] == sc.finding)
            assert sc.process in [p["name"] for p in f["processes"]], (fname, f["processes"])
        if fname.endswith(".txt"):  # text is streamed: folded, it must say the same
            folded = json.loads(tcpdoctor("analyze", "--json", "--reduce-above", "10",
                                          str(path)).stdout)
            assert folded["states"] == report["states"], fname
            assert [(f["id"], f["severity"], f["processes"]) for f in folded["findings"]] == \
                [(f["id"], f["severity"], f["processes"]) for f in report["findings"]], fname
            assert any("distinct kinds" in n for n in folded["notes"]), fname


@pytest.mark.parametrize(("text", "states", "pids"), [
    (SS_SAMPLE, {"LISTEN": 1, "CLOSE_WAIT": 1, "ESTABLISHED": 1, "TIME_WAIT": 1}, {42: "td leaky"}),
    (NETSTAT_SAMPLE, {"LISTEN": 2, "CLOSE_WAIT": 1, "TIME_WAIT": 1}, {812: "sshd: /usr/sbin", 1234: "java"}),
    (WINDOWS_SAMPLE, {"LISTEN": 2, "ESTABLISHED": 1, "TIME_WAIT": 1}, {}),
])
def test_text_formats(tmp_path: Path, text: str, states: dict[str, int],
                      pids: dict[int, str]) -> None:
    path = tmp_path / "dump.txt"
    path.write_text(text)
    snap, _, _notes = offline.load(str(path))
    assert {k: v for k, v in snap.state_counts().items() if v} == states
    for pid, name in pids.items():
        assert snap.process_names[pid] == name
    assert "pid" in snap.columns


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b"\x00\x01\x02garbage\xff" * 10, "binary data"),
    (b"hello world\nthis is not a socket dump\n", "expected ss -D netlink dump"),
])
def test_bad_input_is_one_line_exit_3(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    proc = tcpdoctor("analyze", str(path))
    assert proc.returncode == 3 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@live
def test_snapshot_and_diff(lab: LabNet, tmp_path: Path) -> None:
    before, after = tmp_path / "before.json.gz", tmp_path / "after.json"
    lab.spawn(lab.name, "td-web", [{"kind": "listen", "addr": "198.18.0.1", "port": 80}])
    assert tcpdoctor("snapshot", "--netns", lab.name, "-o", str(before)).returncode == 0
    scenarios.build(lab, scenarios.SCENARIOS["close-wait"], 150)
    assert tcpdoctor("snapshot", "--netns", lab.name, "-o", str(after)).returncode == 0
    snap, _, _ = offline.load(str(after))
    assert snap.state_counts()["CLOSE_WAIT"] == 150 and snap.process_names
    again = json.loads(tcpdoctor("analyze", "--json", str(after)).stdout)
    assert "CLOSE_WAIT_LEAK" in {f["id"] for f in again["findings"]}
    d = json.loads(tcpdoctor("diff", "--json", str(before), str(after)).stdout)
    assert d["states"]["CLOSE_WAIT"] == {"before": 0, "after": 150, "change": 150}
    assert d["findings"]["appeared"] == ["CLOSE_WAIT_LEAK"]
    assert d["movers"]["process"][0]["key"].startswith("td-leaky")
    text = tcpdoctor("diff", str(before), str(after)).stdout
    assert "CLOSE_WAIT" in text and "+150" in text
