"""Issue 26 (part 3): an excerpt whose rows show a pathology gets the rule's finding at
info level, marked as a pattern in a small sample, never "No problems found"; an excerpt
without a pattern still gets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tcpdoctor

ROW = "tcp        {q}      0 {local:<23} {remote:<23} {state:<11} {owner}"


def paste(rows: list[tuple[str, str, str, str]], prompt: str = "$ netstat -antp") -> str:
    lines = [prompt] + [ROW.format(q=1 if s == "CLOSE_WAIT" else 0, local=a, remote=b,
                                   state=s, owner=o) for a, b, s, o in rows]
    return "\n".join(lines) + "\n"


def analyze(tmp_path: Path, text: str) -> tuple[dict, str, int]:
    path = tmp_path / "paste.txt"
    path.write_text(text)
    js = tcpdoctor("analyze", str(path), "--json")
    plain = tcpdoctor("analyze", str(path))
    assert "Traceback" not in js.stderr + plain.stderr
    return json.loads(js.stdout), plain.stdout, js.returncode


CASES = {
    # 7 rows, all CLOSE_WAIT, all one process, towards one service (the paste)
    "close-wait": ([(f"10.1.2.3:{51234 + 6 * i}", "10.9.8.7:9443", "CLOSE_WAIT",
                     "9337/dotnet") for i in range(7)], "CLOSE_WAIT_LEAK"),
    # a client's TIME_WAIT towards redis
    "tw-client": ([(f"172.17.0.5:{40100 + i}", "172.17.0.9:6379", "TIME_WAIT", "-")
                   for i in range(6)], "TIME_WAIT_CLIENT_SHORT"),
    # a web server's TIME_WAIT on port 80, many clients
    "tw-server": ([("192.0.2.10:80", f"198.51.100.{i}:{50000 + i}", "TIME_WAIT", "-")
                   for i in range(1, 9)]
                  + [("0.0.0.0:80", "0.0.0.0:*", "LISTEN", "812/nginx")],
                  "TIME_WAIT_SERVER_CLOSE"),
    "fin-wait2": ([(f"10.0.0.4:{33000 + i}", "10.0.0.8:5432", "FIN_WAIT2", "-")
                   for i in range(5)] + [("10.0.0.4:40000", "10.0.0.8:5432", "ESTABLISHED",
                                          "77/app")], "FIN_WAIT2_BUILDUP"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_excerpt_pattern_is_reported_at_info(tmp_path: Path, case: str) -> None:
    rows, rule_id = CASES[case]
    report, text, code = analyze(tmp_path, paste(rows))
    [found] = [f for f in report["findings"] if f["id"] == rule_id]
    assert found["severity"] == "info" and found["evidence"]["pattern"] is True
    assert found["evidence"]["sample_rows"] == sum(1 for r in rows if r[2] != "LISTEN")
    assert "small sample" in found["summary"] and "ss -tanp" in found["actions"][0]
    assert len(found["actions"]) > 1  # the rule's own advice follows
    assert code == 0 and "No problems found" not in text and rule_id in text


def test_the_owner_is_named_in_the_pattern(tmp_path: Path) -> None:
    report, _, _ = analyze(tmp_path, paste(CASES["close-wait"][0]))
    [found] = report["findings"]
    assert "7 of 7 rows" in found["summary"] and "dotnet (pid 9337)" in found["summary"]
    assert "10.9.8.7:9443" in found["summary"]
    assert found["processes"] == [{"pid": 9337, "name": "dotnet", "count": 7}]


@pytest.mark.parametrize("rows", [
    # healthy: established to different peers
    [("10.0.0.1:443", f"203.0.113.{i}:{40000 + i}", "ESTABLISHED", f"{100 + i}/srv")
     for i in range(6)],
    # a few closing sockets with nothing in common, among established ones
    [("10.0.0.1:443", "203.0.113.1:40001", "CLOSE_WAIT", "11/a"),
     ("10.0.0.1:8443", "203.0.113.2:40002", "CLOSE_WAIT", "12/b"),
     ("10.0.0.1:9000", "203.0.113.3:40003", "CLOSE_WAIT", "13/c"),
     ("10.0.0.1:443", "203.0.113.4:40004", "ESTABLISHED", "11/a"),
     ("10.0.0.1:443", "203.0.113.5:40005", "ESTABLISHED", "11/a"),
     ("10.0.0.1:443", "203.0.113.6:40006", "ESTABLISHED", "11/a")],
    # two rows are an anecdote
    [("10.0.0.1:51000", "10.9.9.9:9443", "CLOSE_WAIT", "9/x"),
     ("10.0.0.1:51002", "10.9.9.9:9443", "CLOSE_WAIT", "9/x")],
])
def test_no_pattern_no_finding(tmp_path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    report, text, code = analyze(tmp_path, paste(rows))
    assert report["findings"] == [] and code == 0 and "No problems found" in text
