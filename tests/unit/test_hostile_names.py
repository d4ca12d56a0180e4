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


def test_a_hostile_name_in_a_pasted_capture_is_escaped(tmp_path: Path) -> None:
    """The same name pasted in a capture (netstat -p, ss -p, lsof): every text reader hands
    its names over through one place, which escapes them; text and JSON stay clean."""
    import subprocess
    import sys

    name = HOSTILE.decode("utf-8", "replace")
    pastes = {
        "netstat": "".join(f"tcp        1      0 10.1.2.3:{51234 + i}          10.9.8.7:9443"
                           f"           CLOSE_WAIT  9337/{name}\n" for i in range(3)),
        "ss": "".join(f'CLOSE-WAIT 1 0 10.1.2.3:{51234 + i} 10.9.8.7:9443 users:(("{name}",'
                      f"pid=9337,fd={5 + i}))\n" for i in range(3)),
        "lsof": "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\n" + "".join(
            f"{name} 9337 app {45 + i}u IPv4 {41001 + i} 0t0 TCP 10.1.2.3:{51234 + i}"
            "->10.9.8.7:9443 (CLOSE_WAIT)\n" for i in range(3)),
    }
    for kind, text in pastes.items():
        path = tmp_path / f"{kind}.txt"
        path.write_text(text)
        for extra in ([], ["--json"]):
            proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "analyze", str(path),
                                   *extra], capture_output=True, text=True)
            assert "9337" in proc.stdout, (kind, proc.stderr)
            assert not RAW.search(proc.stdout + proc.stderr), (kind, extra)


def test_runtime_names_are_escaped_where_they_are_read(tmp_path: Path) -> None:
    """Pod and container names come from files whoever starts a container writes (labels,
    annotations, log names): every report, label and conntrack finding shows them escaped."""
    from tcpdoctor.sources.containers import RuntimeFiles

    cid = "ab" * 32
    docker = tmp_path / "var" / "lib" / "docker" / "containers" / cid
    docker.mkdir(parents=True)
    (docker / "config.v2.json").write_text(json.dumps({"Config": {"Labels": {
        "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "cart\x1b[2J",
        "io.kubernetes.container.name": "web\x1b]0;PWN\x07"}}}))
    pods = tmp_path / "var" / "log" / "pods"
    pods.mkdir(parents=True)
    (pods / "shop_evil\x1b[31m_1c2d3e4f-aaaa-bbbb-cccc-1234567890ab").mkdir()
    files = RuntimeFiles.load(str(tmp_path))
    assert files.containers[cid] == ("shop/cart\\x1b[2J", "web\\x1b]0;PWN\\x07")
    assert files.pods["1c2d3e4f-aaaa-bbbb-cccc-1234567890ab"] == "shop/evil\\x1b[31m"
