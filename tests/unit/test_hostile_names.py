"""A process may name itself anything (prctl): escape sequences, BEL, bidirectional overrides,
bytes that are not UTF-8. Read from /proc, such a name reaches every output as visible
escapes, never as raw control bytes."""

from __future__ import annotations

import io
import json
import os
import re
from contextlib import redirect_stdout
from pathlib import Path

from tcpdoctor.sources import owners
from tcpdoctor.util.text import visible

HOSTILE = b"\x1b[2J\x1b]0;PWN\x07\xe2\x80\xaeevil\xff"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def proc_tree(tmp: Path) -> Path:
    pid = tmp / "4242"
    (pid / "fd").mkdir(parents=True)
    (pid / "comm").write_bytes(HOSTILE + b"\n")
    os.symlink("socket:[777]", pid / "fd" / "3")
    return tmp


def test_a_hostile_name_is_escaped_where_it_is_read(tmp_path: Path) -> None:
    table = owners.scan(str(proc_tree(tmp_path)))
    name = table.names[4242]
    assert not RAW.search(name) and "\\x1b[2J" in name and "\\u202e" in name
    assert "\\xff" in name  # not UTF-8: escaped too


def test_every_output_of_a_report_naming_it_is_clean(tmp_path: Path) -> None:
    from tcpdoctor.analysis.check import run_rules
    from tcpdoctor.analysis.context import Context
    from tcpdoctor.render.npd import npd_line
    from tcpdoctor.render.report import render
    from tests import synth

    name = owners.scan(str(proc_tree(tmp_path))).names[4242]
    snap = synth.snapshot({"n": 150, "state": "CLOSE_WAIT", "sport": 8080,
                           "dport": lambda i: 40000 + i, "pid": 4242, "inode": 777},
                          names={4242: name})
    report = run_rules(Context.saved(snap, None))
    text = io.StringIO()
    with redirect_stdout(text):
        render(report)
    outputs = [text.getvalue(), json.dumps(report.as_json(), ensure_ascii=False),
               npd_line([(None, f) for f in report.findings], 150)[0]]
    for out in outputs:
        assert not RAW.search(out), repr(out)[:300]
    assert visible("\x1b") == "\\x1b" and visible("plain") == "plain"
