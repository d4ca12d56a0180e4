"""Issue 5: analyze saved ss/netstat/proc/netlink output the way a live check sees it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.lab.net import LabNet
from tcpdoctor.sources import offline
from tcpdoctor.sources.offline import detect, loader, textdump
from tests.conftest import DATA, in_netns, tcpdoctor

CAPTURES = {
    "ss-tanp.txt": "ss -tanp",
    "ss-tanoi.txt": "ss -tanoi",
    "ss-Htan.txt": "ss -Htan",
    "netstat-antp.txt": "netstat -antp",
    "netstat-an.txt": "netstat -an",
    "proc-tcp.txt": "cat /proc/net/tcp",
    "ss-D.dump": "ss -tan -D {out}",
}
# Finding ids a capture can support: text dumps carry no kernel counters or sysctls.
NEEDS_OWNER_OR_INFO = {"IDLE_ESTABLISHED"}


def capture(ns: str, tmp: Path) -> dict[str, Path]:
    out = {}
    for name, cmd in CAPTURES.items():
        path = tmp / name
        if "{out}" in cmd:
            in_netns(ns, "sh", "-c", cmd.format(out=path) + " > /dev/null")
        else:
            in_netns(ns, "sh", "-c", f"{cmd} > {path}")
        out[name] = path
    return out


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdana") as net:  # torn down even when the test fails
        yield net


def test_ss1_dump_analyzed() -> None:
    v4 = tcpdoctor("analyze", "--json", str(DATA / "ss1.dump"))
    report = json.loads(v4.stdout)
    # The file holds an IPv4 dump (what ss prints: LISTEN 1, ESTAB 3) and an IPv6 dump.
    assert report["states"]["LISTEN"] == 2 and report["states"]["ESTABLISHED"] == 5
    snap, _, _ = offline.load(str(DATA / "ss1.dump"))
    v4_only = snap.select(snap.columns["family"] == 2)
    assert v4_only.state_counts()["LISTEN"] == 1 and v4_only.state_counts()["ESTABLISHED"] == 3


SS_SAMPLE = """State      Recv-Q Send-Q   Local Address:Port    Peer Address:Port Process
LISTEN     0      4096      198.18.0.1:8080         0.0.0.0:*     users:(("td leaky",pid=42,fd=3))
CLOSE-WAIT 1      0         198.18.0.1:8080      198.18.0.2:5000  users:(("td leaky",pid=42,fd=8),("td leaky",pid=43,fd=8))
ESTAB      0      0     [fe80::1%eth0]:22   [fe80::2%eth0]:40000 timer:(keepalive,119min,0)
\t cubic wscale:7,7 rto:204 rtt:0.05/0.025 lastsnd:700000 lastrcv:650000 lastack:650000
TIME-WAIT  0      0               [::1]:443             [::1]:5555 timer:(timewait,59sec,0)
"""
NETSTAT_SAMPLE = """Active Internet connections (servers and established)
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name
tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      812/sshd: /usr/sbin
tcp        1      0 10.0.0.5:8080           10.0.0.9:51234          CLOSE_WAIT  1234/java
tcp6       0      0 :::80                   :::*                    LISTEN      -
tcp6       0      0 2001:db8:1234:5678:9:443 2001:db8:aaaa:bbbb:54321 TIME_WAIT  -
udp        0      0 0.0.0.0:68              0.0.0.0:*                           600/dhclient
Active UNIX domain sockets (servers and established)
unix  2      [ ACC ]     STREAM     LISTENING     12345    /run/systemd/private
"""
WINDOWS_SAMPLE = """
Active Connections

  Proto  Local Address          Foreign Address        State           PID
  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1028
  TCP    192.168.1.5:49754      52.1.1.1:443           ESTABLISHED     4567
  TCP    [::]:445               [::]:0                 LISTENING       4
  TCP    192.168.1.5:49755      52.1.1.1:443           TIME_WAIT       0
  UDP    0.0.0.0:5353           *:*                                    2100
"""


def test_ss_extras_are_read(tmp_path: Path) -> None:
    path = tmp_path / "ss.txt"
    path.write_text(SS_SAMPLE)
    snap, _, _ = offline.load(str(path))
    c = snap.columns
    est = int((c["state"] == 1).nonzero()[0][0])
    assert c["lastrcv"][est] == 650000 and c["timer"][est] == 2 and c["has_info"][est]
    assert c["expires"][est] == 119 * 60 * 1000


def test_netstat_truncated_ipv6_is_opaque_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "netstat.txt"
    path.write_text(NETSTAT_SAMPLE)
    proc = tcpdoctor("analyze", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "truncated address" in proc.stdout


def test_truncated_lines_counted_or_strict(tmp_path: Path) -> None:
    path = tmp_path / "ss.txt"
    path.write_text(SS_SAMPLE + "ESTAB 0 0 10.0.0.1:22\n")
    lenient = tcpdoctor("analyze", "--json", str(path))
    assert lenient.returncode == 1  # never 0 for a report that lost rows
    report = json.loads(lenient.stdout)
    assert report["lines_unparsed"] == 1 and report["total"] == 4
    assert any("(first line 7" in n for n in report["notes"])
    text = tcpdoctor("analyze", str(path))
    assert text.returncode == 1 and "No problems found" not in text.stdout
    assert "Incomplete: 1 line(s) of the input could not be read" in text.stdout
    strict = tcpdoctor("analyze", "--strict", str(path))
    assert strict.returncode == 3 and f"{path}:7: expected an ss line" in strict.stderr


def test_nothing_readable_is_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "ss.txt"
    path.write_text("State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
                    "ESTAB 0 0 10.0.0.1:99999 10.0.0.7:4003\n")
    proc = tcpdoctor("analyze", str(path))
    assert proc.returncode == 3 and "no TCP socket could be read" in proc.stderr


def test_stdin_and_proc_dir(tmp_path: Path) -> None:
    pdir = tmp_path / "proc"
    pdir.mkdir()
    for name in ("sockstat", "netstat", "snmp"):
        (pdir / name).write_bytes((DATA / f"ne_{name}").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "analyze", "-", "--json",
                           "--proc-dir", str(pdir)], input=SS_SAMPLE, capture_output=True,
                          text=True, check=False)
    assert proc.returncode in (0, 1, 2), proc.stderr  # a report, whatever its findings
    report = json.loads(proc.stdout)
    assert report["total"] == 4
    skipped = {s["id"] for s in report["rules_skipped"]}
    assert "ORPHAN_PRESSURE" not in skipped  # sockstat came from --proc-dir


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([SS_SAMPLE, NETSTAT_SAMPLE, WINDOWS_SAMPLE]),
       st.integers(0, 400), st.text(max_size=8))
def test_text_parsers_fuzz(sample: str, pos: int, junk: str) -> None:
    mutated = sample[:pos] + junk + sample[pos + len(junk):]
    kind = detect.detect(mutated.splitlines()[:50])
    if kind in loader.PARSERS:
        for strict in (False, True):
            b = textdump.Builder("f", strict)
            try:
                loader.PARSERS[kind](enumerate(mutated.splitlines(), 1), b)
                b.columns()
            except ParseError:
                pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_loader_fuzz(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fz") / "in"
    path.write_bytes(data)
    with contextlib.suppress(ParseError, TcpDoctorError):
        offline.load(str(path))


def test_proc_dir_entry_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "sockstat").mkdir()
    proc = tcpdoctor("analyze", str(DATA / "proc_net_tcp"), "--proc-dir", str(tmp_path))
    assert proc.returncode == 3 and "internal error" not in proc.stderr
    assert proc.stderr.strip() == f"tcpdoctor: --proc-dir: cannot read {tmp_path}/sockstat: " \
        "Is a directory"


def test_diff_of_an_input_that_lost_rows_says_so(tmp_path: Path) -> None:
    good, damaged = tmp_path / "before.txt", tmp_path / "after.txt"
    good.write_text(SS_SAMPLE)
    damaged.write_text(SS_SAMPLE + "ESTAB 0 0 10.0.0.1:22\n")
    clean = tcpdoctor("diff", str(good), str(good))
    assert clean.returncode == 0 and "incomplete" not in clean.stdout
    proc = tcpdoctor("diff", str(good), str(damaged))
    assert proc.returncode == 1  # never 0 for a comparison that lost rows
    assert "incomplete: 1 line(s) could not be read" in proc.stdout.splitlines()[1]
    assert "(first line 7" in proc.stderr
    report = json.loads(tcpdoctor("diff", "--json", str(good), str(damaged)).stdout)
    assert (report["before"]["lines_unparsed"], report["after"]["lines_unparsed"]) == (0, 1)
