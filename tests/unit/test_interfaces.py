"""Interfaces on fixed data, value by value: CSV and tables, the watch view's rates, diff's
owner labels, the option matrix of every command, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tcpdoctor.analysis.compare import compare
from tcpdoctor.analysis.groups import group
from tcpdoctor.cli.options import SOCKET_OPTIONS
from tcpdoctor.model.history import Point, Taken
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.render.diff import render_text
from tcpdoctor.render.tables import groups_csv, states_csv
from tcpdoctor.render.watch import View, json_line, line
from tests import synth

POP = synth.snapshot(
    {"n": 3, "state": "LISTEN", "sport": 8080, "pid": 7, "raddr": "0.0.0.0", "dport": 0},
    {"n": 5, "state": "ESTABLISHED", "sport": 8080, "dport": lambda i: 50000 + i, "pid": 7},
    {"n": 4, "state": "CLOSE_WAIT", "sport": 8080, "dport": lambda i: 51000 + i, "pid": 7},
    {"n": 2, "state": "TIME_WAIT", "sport": 8080, "dport": lambda i: 52000 + i,
     "raddr": "198.51.100.4"},
    names={7: "web"})


def test_states_csv_exact(capsys: pytest.CaptureFixture[str]) -> None:
    states_csv(POP.summary())
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    expected = {"ESTABLISHED": 5, "CLOSE_WAIT": 4, "TIME_WAIT": 2, "LISTEN": 3}
    assert rows[0] == ["state", "count"]
    assert rows[1:12] == [[s, str(expected.get(s, 0))] for s in STATE_NAMES]
    assert rows[12:] == [["total", "14"], ["established", "5"], ["non_established", "9"]]


def test_top_csv_exact(capsys: pytest.CaptureFixture[str]) -> None:
    groups_csv(group(POP, ["process", "state"], 10))
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["process", "pid", "state", "count", *STATE_NAMES]
    by_key = {(r[0], r[2]): r for r in rows[1:]}
    for (proc, state), count in {("web", "ESTABLISHED"): 5, ("web", "CLOSE_WAIT"): 4,
                                 ("web", "LISTEN"): 3, ("", "TIME_WAIT"): 2}.items():
        row = by_key[(proc, state)]
        assert row[3] == str(count)
        per_state = dict(zip(STATE_NAMES, row[4:], strict=True))
        assert per_state == {s: str(count if s == state else 0) for s in STATE_NAMES}


def _taken(ts: float, close_wait: int) -> Taken:
    states = dict.fromkeys(STATE_NAMES, 0) | {"CLOSE_WAIT": close_wait, "LISTEN": 1}
    point = Point(ts, "h", None, states, {}, [], [])
    return Taken(point, POP)


def test_watch_rates_have_the_sign_of_the_change() -> None:
    view = View(("remote-ip",))
    view.update(_taken(100.0, 10))
    assert view.rate("CLOSE_WAIT") is None  # one sample: no rate yet
    view.update(_taken(102.0, 30))
    assert view.rate("CLOSE_WAIT") == pytest.approx(10.0)  # +20 in 2 s
    assert "CLOSE_WAIT=30(+10.0/s)" in line(view)
    view.update(_taken(106.0, 18))
    assert view.rate("CLOSE_WAIT") == pytest.approx(-3.0)  # -12 in 4 s
    assert json.loads(json_line(view, []))["rates_per_second"]["CLOSE_WAIT"] == -3.0
    assert view.growing() == ["CLOSE_WAIT"]  # 10 -> 18 over the window


def test_diff_names_ownerless_sockets_like_top() -> None:
    after = synth.snapshot({"n": 6, "state": "TIME_WAIT", "pid": -1}, names={})
    result = compare((POP, None), (after, None), 5)
    keys = {m["key"] for m in result["movers"]["process"]}
    assert keys == {"web[7]", "(no owner)"}
    text = render_text(result)
    assert "None" not in text and "(no owner)" in text


# The option matrix: every command that reads live sockets takes the common set.
LIVE_COMMANDS = ("check", "states", "top", "snapshot", "watch", "record", "tune", "exporter")
COMMON = SOCKET_OPTIONS


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcpdoctor", *args], capture_output=True,
                          text=True, check=False, timeout=120)


@pytest.mark.parametrize("command", LIVE_COMMANDS)
def test_every_live_command_lists_the_common_options(command: str) -> None:
    helptext = run(command, "--help").stdout
    for opt in COMMON:
        assert re.search(rf"(^|\s|,){re.escape(opt)}[\s,]", helptext), f"{command} {opt}"
    for opt in ("--config", "--threshold"):
        if command in ("check", "watch", "record", "exporter"):
            assert opt in helptext, f"{command} {opt}"


def _matrix_args(command: str, opt: str, tmp: Path) -> list[str]:
    extra = {"snapshot": ["-o", str(tmp / "s.json")], "watch": ["--count", "1"],
             "record": ["--count", "1", "--db", str(tmp / "h.db"), "-q"],
             "tune": ["--interval", "0"], "check": ["--interval", "0"],
             "exporter": ["--textfile", str(tmp), "--once"]}.get(command, [])
    value = {"--netns": ["/proc/self/ns/net"], "--source": ["procfs"]}.get(opt, [])
    return [command, opt, *value, *extra]


@pytest.mark.parametrize("command", LIVE_COMMANDS)
@pytest.mark.parametrize("opt", COMMON)
def test_option_matrix(command: str, opt: str, tmp_path: Path) -> None:
    """Each pair works (a report, exit 0-2) or, where --help says it makes no sense, is
    refused with that reason (exit 3, one line)."""
    if command == "exporter":
        pytest.importorskip("prometheus_client")
    proc = run(*_matrix_args(command, opt, tmp_path))
    helptext = run(command, "--help").stdout
    if f"Not used by {command}" in _option_help(helptext, opt):
        assert proc.returncode == 3 and "not used by this command" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        return
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    if opt == "--json" and command not in ("watch", "record"):
        json.loads(proc.stdout)
    elif opt == "--json":
        json.loads(proc.stdout.splitlines()[0])


def _option_help(helptext: str, opt: str) -> str:
    """The help paragraph of one option (click wraps it over indented lines)."""
    lines = helptext.splitlines()
    for i, ln in enumerate(lines):
        if re.match(rf"\s+(-\S+, )?{re.escape(opt)}\b", ln):
            body = [ln]
            for nxt in lines[i + 1:]:
                if re.match(r"\s+-", nxt) or not nxt.strip():
                    break
                body.append(nxt)
            return " ".join(body)
    return ""


def test_usage_errors_are_exit_3() -> None:
    proc = run("top", "--by", "nonsense")
    assert proc.returncode == 3 and "unknown grouping" in proc.stderr
    proc = run("states", "--source", "carrier-pigeon")
    assert proc.returncode == 3


def test_help_everywhere_has_examples() -> None:
    from tcpdoctor.cli import cli

    for name in cli.commands:
        assert "Examples:" in run(name, "--help").stdout, name



def test_states_table_exact(capsys: pytest.CaptureFixture[str]) -> None:
    from tcpdoctor.render.tables import states_table

    states_table(POP.summary(), "TCP sockets")
    rows = {}
    for ln in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", ln)]
        if len(cells) == 3 and cells[1].replace(",", "").isdigit():
            rows[cells[0]] = (int(cells[1].replace(",", "")), cells[2])
    assert rows["ESTABLISHED"] == (5, "35.7%") and rows["CLOSE_WAIT"] == (4, "28.6%")
    assert rows["TIME_WAIT"] == (2, "14.3%") and rows["LISTEN"] == (3, "21.4%")
    assert rows["SYN_SENT"] == (0, "0.0%")
    assert rows["total"][0] == 14 and rows["non_established"][0] == 9


def test_analyze_never_mentions_options_it_does_not_have(tmp_path: Path) -> None:
    pdir = tmp_path / "proc"
    pdir.mkdir()
    data = Path(__file__).parents[1] / "data"
    (pdir / "sockstat").write_bytes((data / "ne_sockstat").read_bytes())
    proc = run("analyze", "--json", str(data / "proc_net_tcp"), "--proc-dir", str(pdir))
    notes = json.loads(proc.stdout)["notes"]
    assert not any("--interval" in n for n in notes), notes
    assert any("one reading of the kernel counters" in n for n in notes), notes


def _complete(words: str) -> list[str]:
    env = {**os.environ, "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
           "_TCPDOCTOR_COMPLETE": "bash_complete"}
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor"], capture_output=True,
                          text=True, env=env, check=False, timeout=60)
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


def test_shell_completion_of_commands_options_and_values() -> None:
    from tcpdoctor.cli import COMMANDS

    assert _complete("tcpdoctor ") == list(COMMANDS)
    assert "--no-processes" in _complete("tcpdoctor top --no")
    assert _complete("tcpdoctor check --threshold CLOSE_WAIT_LEAK.w") == [
        "CLOSE_WAIT_LEAK.warning=100"]


def test_version_names_kernel_and_source() -> None:
    lines = run("--version").stdout.splitlines()
    assert lines[0].startswith("tcpdoctor ") and lines[1] == f"kernel: Linux {os.uname().release}"
    assert lines[2].startswith("source: ")
