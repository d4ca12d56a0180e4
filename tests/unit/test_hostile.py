"""Hostile or damaged input: one bad field makes its line unparsed (never an exception,
never the whole analysis lost); --strict makes it an error naming the line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA, tcpdoctor

SS = ("State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
      "ESTAB  0      0      10.0.0.1:22        10.0.0.9:51000\n"
      "LISTEN 0      128    0.0.0.0:22         0.0.0.0:*     users:((\"sshd\",pid=99,fd=3))\n")
NETSTAT = ("Active Internet connections (servers and established)\n"
           "Proto Recv-Q Send-Q Local Address Foreign Address State PID/Program name Timer\n"
           "tcp        0      0 10.0.0.1:22  10.0.0.9:51000  ESTABLISHED 99/sshd off (0.00/0/0)\n")
BAD_SS = [
    "LISTEN 0 128 0.0.0.0:80 0.0.0.0:* users:((\"nginx\",pid=99999999999,fd=3))",
    "ESTAB 0 0 10.0.0.1:80 10.0.0.7:4000 timer:(keepalive,1.2.3sec,0)",
    "ESTAB 0 0 10.0.0.1:80 10.0.0.7:4001 ino:" + "9" * 5000,
    "ESTAB 0 " + "9" * 5000 + " 10.0.0.1:80 10.0.0.7:4002",
    "ESTAB 0 0 10.0.0.1:99999 10.0.0.7:4003",
]
BAD_SS_CONTINUED = "ESTAB 0 0 10.0.0.1:80 10.0.0.7:4004\n\t cubic rtt:1.2.3/0.5 lastsnd:99999999999"
BAD_NETSTAT = [
    "tcp 0 0 10.0.0.1:80 10.0.0.7:4000 ESTABLISHED 99999999999/nginx",
    "tcp 0 0 10.0.0.1:80 10.0.0.7:4001 ESTABLISHED 77/nginx on (./0/0)",
    "tcp " + "9" * 5000 + " 0 10.0.0.1:80 10.0.0.7:4002 ESTABLISHED -",
]


def _analyze(tmp_path: Path, text: str, *args: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    path = tmp_path / "capture.txt"
    path.write_text(text)
    proc = tcpdoctor("analyze", "--json", str(path), *args)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}, proc.stderr


@pytest.mark.parametrize("bad", [*BAD_SS, BAD_SS_CONTINUED], ids=range(6))
def test_bad_ss_field_loses_only_its_line(tmp_path: Path, bad: str) -> None:
    code, report, _ = _analyze(tmp_path, SS + bad + "\n")
    assert code in (0, 1, 2) and report["total"] == 2  # the two good sockets
    assert any("1 line(s)" in n and "not understood" in n for n in report["notes"])
    code, _, err = _analyze(tmp_path, SS + bad + "\n", "--strict")
    at = 4 + bad.count("\n")  # the line at fault: the continuation, where there is one
    assert code == 3 and f":{at}: expected" in err


@pytest.mark.parametrize("bad", BAD_NETSTAT, ids=range(3))
def test_bad_netstat_field_loses_only_its_line(tmp_path: Path, bad: str) -> None:
    code, report, _ = _analyze(tmp_path, NETSTAT + bad + "\n")
    assert code in (0, 1, 2) and report["total"] == 1
    assert any("not understood" in n for n in report["notes"])


def test_proc_copy_cut_in_its_last_line_keeps_the_rest(tmp_path: Path) -> None:
    whole = (DATA / "proc_net_tcp").read_bytes()
    path = tmp_path / "tcp"
    path.write_bytes(whole[:-90])  # the last line cut in the middle
    proc = tcpdoctor("analyze", "--json", str(path))
    report = json.loads(proc.stdout)
    assert proc.returncode in (0, 1, 2) and report["total"] == whole.count(b"\n") - 2
    assert any("1 line(s)" in n for n in report["notes"])
    strict = tcpdoctor("analyze", "--strict", str(path))
    assert strict.returncode == 3 and f"{path}:19: expected" in strict.stderr


def _snapshot_doc() -> dict:  # type: ignore[type-arg]
    from tcpdoctor.model import snapshot_file
    from tcpdoctor.model.kernel_state import KernelState
    from tests import synth

    snap = synth.snapshot({"n": 3, "state": "CLOSE_WAIT", "pid": 7}, names={7: "app"})
    kernel = KernelState(0.0, sockstat={"TCP": {"inuse": 3}}, counters={"Tcp.OutRsts": 1},
                         sysctls={"net.ipv4.tcp_syncookies": "1"}, file_nr=(1, 0, 100))
    return snapshot_file.to_dict(snap, kernel)


def _edit(doc: dict, how: str) -> str:  # type: ignore[type-arg]
    if how == "no sport":
        del doc["columns"]["sport"]
    elif how == "notes=5":
        doc["notes"] = 5
    elif how == "columns=x":
        doc["columns"] = "x"
    elif how == "sysctls=x":
        doc["sysctls"] = "x"
    elif how == "state 255":
        import base64

        doc["columns"]["state"]["data"] = base64.b64encode(bytes([255, 8, 8])).decode()
    elif how == "count=-1":
        doc["count"] = -1
    elif how == "file_nr=x":
        doc["file_nr"] = "x"
    return json.dumps(doc)


@pytest.mark.parametrize("how", ["no sport", "notes=5", "columns=x", "sysctls=x", "state 255",
                                 "count=-1"])
def test_hand_edited_snapshot_is_refused_in_one_line(tmp_path: Path, how: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(_edit(_snapshot_doc(), how))
    for args in (["analyze", str(path)], ["diff", str(path), str(path)]):
        proc = tcpdoctor(*args)
        assert proc.returncode == 3, (how, proc.stdout)
        assert len(proc.stderr.strip().splitlines()) == 1 and "internal error" not in \
            proc.stderr, proc.stderr


def test_deeply_nested_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"format": "tcpdoctor-snapshot", "x": ' + "[" * 100000 + "]" * 100000
                    + "}")
    proc = tcpdoctor("analyze", str(path))
    assert proc.returncode == 3 and "internal error" not in proc.stderr


def test_snapshot_with_sorted_keys_is_read(tmp_path: Path) -> None:
    """`jq -S` puts "columns" (the bulk) before "format": still a snapshot."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_snapshot_doc(), sort_keys=True, indent=1))
    proc = tcpdoctor("analyze", "--json", str(path))
    assert proc.returncode in (0, 1, 2), proc.stderr
    report = json.loads(proc.stdout)
    assert report["states"]["CLOSE_WAIT"] == 3


# Runs tcpdoctor as its only child, so that RUSAGE_CHILDREN is tcpdoctor's own peak.
PEAK = ("import resource, subprocess, sys; p = subprocess.run([sys.executable, '-m', "
        "'tcpdoctor', *sys.argv[1:]]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(p.returncode)")


def _peak_rss_mb(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    import sys

    proc = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True,
                          text=True, check=False, timeout=300)
    return proc, int(proc.stderr.strip().splitlines()[-1]) / 1024


@pytest.mark.parametrize("kind", ["proc", "ss", "netstat"])
def test_long_lines_stay_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    """A 100 kB line in a /proc copy once took 4.6 GB; a 200 MB line 3-5 GB. Now such a
    line is one unparsed line, read past without being held."""
    import gzip

    good = {"proc": (DATA / "proc_net_tcp").read_text(), "ss": SS, "netstat": NETSTAT}[kind]
    lines = good.splitlines(keepends=True)
    path = tmp_path / "capture.txt.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write("".join(lines[:2]).encode())
        fh.write(b"  9: " + b"A" * 100_000 + b"\n")  # a long line among the first
        for _ in range(20):  # then a 200 MB line, in 10 MB pieces
            fh.write(b"x" * 10_000_000)
        fh.write(b"\n" + "".join(lines[2:]).encode())
    proc, rss = _peak_rss_mb(["analyze", "--json", str(path)])
    assert proc.returncode in (0, 1, 2), proc.stderr
    report = json.loads(proc.stdout)
    assert report["total"] == len(lines) - 1 - (kind == "netstat")
    assert any("2 line(s)" in n and "not understood" in n for n in report["notes"]), \
        report["notes"]
    assert rss < 400, f"peak RSS {rss:.0f} MB"


WINDOWS = ("Active Connections\r\n\r\n  Proto  Local Address          Foreign Address        "
           "State           PID\r\n  TCP    0.0.0.0:135            0.0.0.0:0              "
           "LISTENING       900\r\n  TCP    10.0.0.5:49702         20.42.65.92:443        "
           "ESTABLISHED     4412\r\n")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_windows_capture(tmp_path: Path, encoding: str) -> None:
    """PowerShell's `netstat -ano > f.txt` writes UTF-16 with a byte-order mark."""
    path = tmp_path / "netstat.txt"
    bom = b"\xfe\xff" if encoding.endswith("be") else b""
    path.write_bytes(bom + WINDOWS.encode(encoding))
    proc = tcpdoctor("analyze", "--json", str(path))
    assert proc.returncode in (0, 1, 2), proc.stderr
    report = json.loads(proc.stdout)
    assert report["total"] == 2 and report["states"]["LISTEN"] == 1


def test_named_pipe_with_a_writer_is_read(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as fh:
            fh.write(SS)

    writer = threading.Thread(target=write)
    writer.start()
    proc = tcpdoctor("analyze", "--json", str(fifo))
    writer.join(timeout=30)
    assert json.loads(proc.stdout)["total"] == 2


def test_lines_of_another_tool_in_a_netstat_paste_are_counted(tmp_path: Path) -> None:
    text = NETSTAT + "ESTAB 0 0 10.0.0.1:80 10.0.0.7:4000\n  3: 0100007F:1F90 00000000:0000 " \
        "0A 00000000:00000000 00:00000000 00000000 0 0 1 1 0\n"
    _, report, _ = _analyze(tmp_path, text)
    assert report["total"] == 1
    assert any("2 line(s)" in n for n in report["notes"]), report["notes"]


@pytest.mark.parametrize("args", [["top", "--bogus"], ["states", "--source", "x"],
                                  ["no-such-command"], ["top", "-n", "zero"]])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    proc = tcpdoctor(*args)
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("tcpdoctor: ") and "--help" in proc.stderr
