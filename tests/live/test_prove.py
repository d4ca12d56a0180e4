"""`tune --prove` on this kernel: each verdict against what the kernel does with the target's
settings, the host's and the target's sysctls byte-identical before and after, nothing left
behind after a SIGTERM in the middle, and a one-line refusal without root."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet, leftover_namespaces
from tests.conftest import in_netns, live_reason, tcpdoctor, tcpdoctor_as_nobody

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))
READ_ALL = ("import os,sys\nfor d in ('/proc/sys/net/ipv4', '/proc/sys/net/core'):\n"
            " for r, _, fs in sorted(os.walk(d)):\n  for f in sorted(fs):\n"
            "   p = os.path.join(r, f)\n   try: sys.stdout.write(p + '=' + open(p).read())\n"
            "   except OSError: pass\n")


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdtarget") as net:
        yield net


def sysctls(ns: str | None) -> str:
    cmd = [sys.executable, "-c", READ_ALL]
    if ns is None:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return in_netns(ns, *cmd).stdout


def proofs(lab: LabNet, *args: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return run(lab, *args)[0]


def run(lab: LabNet, *args: str) -> tuple[dict[str, dict], list[dict]]:  # type: ignore[type-arg]
    host, target = sysctls(None), sysctls(lab.name)
    proc = tcpdoctor("tune", "--prove", "--netns", lab.name, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    assert sysctls(None) == host and sysctls(lab.name) == target  # byte-identical
    out = json.loads(proc.stdout)
    assert out["sysctls_unchanged"] is True
    return {p["change"]: p for p in out["proofs"]}, out["recommendations"]


def test_port_exhaustion_tw_reuse_helps_and_fewer_buckets_harm(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["port-exhaustion"]
    scenarios.build(lab, sc, sc.default_n)
    found, recommended = run(lab, "--seconds", "3")
    # tune's own recommendation carries its measured line.
    [wider] = [r for r in recommended if r["key"] == "net.ipv4.ip_local_port_range"]
    assert wider["proof"]["verdict"] == "helps"
    reuse = found["net.ipv4.tcp_tw_reuse = 1"]
    assert reuse["finding"] == "EPHEMERAL_PORT_EXHAUSTION"
    assert reuse["baseline"]["failed_connects"] > 0 and reuse["outcome"]["failed_connects"] == 0
    assert reuse["verdict"] == "helps"
    low = next(p for c, p in found.items() if "tcp_max_tw_buckets" in c)
    assert low["verdict"] == "harmful" and low["outcome"]["time_wait_skipped"] > 0


def test_tw_reuse_does_not_help_without_timestamps(lab: LabNet) -> None:
    lab.sysctl(lab.name, "net.ipv4.tcp_timestamps", "0")
    reuse = proofs(lab, "--finding", "EPHEMERAL_PORT_EXHAUSTION")["net.ipv4.tcp_tw_reuse = 1"]
    assert reuse["verdict"] == "does not help" and "tcp_timestamps=0" in reuse["why"]
    assert reuse["outcome"]["failed_connects"] == reuse["baseline"]["failed_connects"] > 0


def test_somaxconn_alone_does_not_help_a_small_backlog(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["accept-overflow"]
    scenarios.build(lab, sc, sc.default_n)
    time.sleep(1.5)  # the overflows the finding needs
    found = proofs(lab, "--finding", "ACCEPT_QUEUE_OVERFLOW")
    alone = next(p for c, p in found.items() if c.startswith("net.core.somaxconn =")
                 and "backlog" not in c)
    both = next(p for c, p in found.items() if "backlog" in c)
    assert alone["verdict"] == "does not help" and alone["baseline"]["listen_overflows"] > 0
    assert both["verdict"] == "helps" and both["outcome"]["listen_overflows"] == 0


def test_syncookies_keep_real_clients_connecting_under_a_flood(lab: LabNet) -> None:
    lab.sysctl(lab.name, "net.ipv4.tcp_syncookies", "0")
    cookies = proofs(lab, "--finding", "SYN_FLOOD")["net.ipv4.tcp_syncookies = 1"]
    assert cookies["baseline"]["failed_connects"] > 0 and cookies["baseline"]["syns_dropped"]
    assert cookies["verdict"] == "helps" and cookies["outcome"]["failed_connects"] == 0


def test_nothing_is_left_after_a_sigterm_in_the_middle() -> None:
    before = set(leftover_namespaces("tdprove"))
    proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "tune", "--prove", "--finding",
                             "EPHEMERAL_PORT_EXHAUSTION"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # inside the first replay
    workers = descendants(proc.pid)
    assert workers  # the replay's processes were running
    # The sandbox's own directory, from its workers' command lines (their event log).
    dirs = {Path(m) for pid in workers for m in re.findall(
        r"(/tmp/tcpdoctor-lab-[^/\"]+)", _cmdline(pid))}
    assert dirs
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert set(leftover_namespaces("tdprove")) == before
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert not [d for d in dirs if d.exists()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """The processes started by pid, and theirs (from /proc's parent links)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def test_without_root_it_is_refused_in_one_line() -> None:
    proc = tcpdoctor_as_nobody("tune", "--prove", "--finding", "EPHEMERAL_PORT_EXHAUSTION")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("note:")]
    assert len(errors) == 1 and "root" in errors[0], proc.stderr
