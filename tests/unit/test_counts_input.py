"""Issue 26 (part 2): counts per state are read as counts: the seed's own awk one-liner,
`sort | uniq -c` and `ss -s`'s TCP line; the rules a count can decide run, the others are
listed as not checked with the capture that would let them run; never a sum of counts
with rows, never "No problems found" on counts alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tcpdoctor

AWK = "ESTABLISHED 120\nTIME_WAIT 4000\nCLOSE_WAIT 300\nLISTEN 12\n"  # the seed's one-liner
UNIQ = ("$ netstat -ant | awk '{print $6}' | sort | uniq -c\n    300 CLOSE_WAIT\n"
        "    120 ESTABLISHED\n     12 LISTEN\n   4000 TIME_WAIT\n      1 State\n"
        "      1 established)\n")
SS_S = "Total: 4532\nTCP:   4432 (estab 120, closed 0, orphaned 0, timewait 4000)\n"


def run(tmp_path: Path, text: str) -> tuple[dict, str, int]:
    path = tmp_path / "counts.txt"
    path.write_text(text)
    js, plain = tcpdoctor("analyze", "--json", str(path)), tcpdoctor("analyze", str(path))
    assert "Traceback" not in js.stderr + plain.stderr
    return json.loads(js.stdout), plain.stdout, js.returncode


@pytest.mark.parametrize("text", [AWK, UNIQ], ids=["awk", "uniq"])
def test_counts_are_read_as_counts(tmp_path: Path, text: str) -> None:
    got, _, code = run(tmp_path, text)
    want = {"ESTABLISHED": 120, "TIME_WAIT": 4000, "CLOSE_WAIT": 300, "LISTEN": 12}
    assert {k: v for k, v in got["states"].items() if v} == want
    assert got["total"] == sum(want.values()) and got["source"].startswith("state counts")
    [leak] = got["findings"]
    assert leak["id"] == "CLOSE_WAIT_LEAK" and leak["severity"] == "warning"
    assert leak["evidence"]["counts_only"] is True and "ss -tanp" in leak["actions"][0]
    assert code == 1
    skipped = {s["id"]: s["reason"] for s in got["rules_skipped"]}
    assert "socket rows" in skipped["TIME_WAIT_SERVER_CLOSE"]
    assert "socket rows" in skipped["PEER_CONCENTRATION"]
    assert any("TIME_WAIT" in n and "ss -tan state time-wait" in n for n in got["notes"])


def test_ss_summary_counts_and_no_false_all_clear(tmp_path: Path) -> None:
    got, plain, code = run(tmp_path, SS_S)
    assert {k: v for k, v in got["states"].items() if v} == {"ESTABLISHED": 120,
                                                              "TIME_WAIT": 4000}
    assert got["findings"] == [] and code == 0
    assert "No problems found" not in plain and "counts alone" in plain


def test_counts_mixed_with_rows_are_not_summed(tmp_path: Path) -> None:
    """A paste with socket rows is read as rows; a count line among them is not a socket."""
    rows = "".join(f"tcp 0 0 10.0.0.1:{40000 + i} 10.0.0.2:80 ESTABLISHED\n" for i in range(3))
    got, _, _ = run(tmp_path, "Proto Recv-Q Send-Q Local Address Foreign Address State\n"
                    + rows + "ESTABLISHED 5000\n")
    assert got["total"] == 3


def test_absurd_counts_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("ESTABLISHED 9999999999\nTIME_WAIT 4\n")
    proc = tcpdoctor("analyze", str(path))
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
