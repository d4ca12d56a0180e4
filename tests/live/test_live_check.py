"""Issue 3 on real sockets: every lab scenario gives its intended finding, owner, port, exit."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet, leftover_namespaces
from tests.conftest import live, tcpdoctor

pytestmark = live
EXIT = {None: 0, "info": 0, "warning": 1, "critical": 2}


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdcheck") as net:  # torn down even when the test fails
        yield net


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario_reports_intended_finding(lab: LabNet, name: str) -> None:
    sc = scenarios.SCENARIOS[name]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--json", "--netns", lab.name, *sc.check_args)
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    by_id = {f["id"]: f for f in report["findings"]}
    worst = max((f["severity"] for f in report["findings"] if f["severity"] != "info"),
                key=["warning", "critical"].index, default=None)
    assert proc.returncode == EXIT[worst]
    if sc.finding is None:
        assert worst is None, report["findings"]
        return
    assert sc.finding in by_id, f"{sc.finding} missing from {list(by_id)}"
    f = by_id[sc.finding]
    assert f["severity"] == sc.severity
    assert worst == sc.severity, f"another finding is more severe: {report['findings']}"
    assert sc.process in [p["name"] for p in f["processes"]], f["processes"]
    assert str(sc.port) in json.dumps(f["evidence"]) + f["summary"]
    assert f["actions"] and all(isinstance(a, str) for a in f["actions"])
    for key in ("schema", "source", "host", "kernel", "taken_at", "total", "established",
                "non_established", "states", "findings"):
        assert key in report


def test_check_human_report_names_process(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0")
    assert proc.returncode == 1
    assert "CLOSE_WAIT_LEAK" in proc.stdout and "td-leaky" in proc.stdout
    assert "200 sockets in CLOSE_WAIT" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_lab_cli_holds_and_tears_down() -> None:
    import subprocess
    import sys
    import time

    before = set(leftover_namespaces("tdlab-healthy"))
    lab_proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "lab", "healthy", "--n",
                                 "20", "--hold", "60", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert lab_proc.stdout is not None
        info = json.loads(lab_proc.stdout.readline())
        assert info["netns"] in leftover_namespaces("tdlab-healthy")
        check = tcpdoctor("check", "--netns", info["netns"], "--json", "--interval", "0")
        assert check.returncode == 0
        assert json.loads(check.stdout)["established"] == 20
        lab_proc.terminate()  # SIGTERM must tear everything down
        lab_proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and info["netns"] in leftover_namespaces("tdlab"):
            time.sleep(0.1)
        assert set(leftover_namespaces("tdlab-healthy")) == before
    finally:
        if lab_proc.poll() is None:
            lab_proc.kill()


def _exporter_findings(port: int) -> set[tuple[str, str]]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return set(re.findall(r'tcpdoctor_finding\{id="(\w+)",netns="[^"]*",severity="(\w+)"\}'
                          r" 1\.0", text))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_and_exporter_agree_with_harmful_sysctls_under_load(lab: LabNet) -> None:
    """The same diagnosis in both, rate-based escalation included: a tiny
    tcp_max_tw_buckets under steady short connections makes TCPTimeWaitOverflow rise."""
    pytest.importorskip("prometheus_client")
    # The kernel takes a port range below 1024 only once privileged ports are opened up.
    for key, value in (("net.ipv4.ip_unprivileged_port_start", "0"),
                       ("net.ipv4.tcp_max_tw_buckets", "4"), ("net.ipv4.tcp_syncookies", "0"),
                       ("net.ipv4.tcp_abort_on_overflow", "1"),
                       ("net.ipv4.ip_local_port_range", "600 60999")):
        lab.sysctl(lab.name, key, value)
    lab.spawn(lab.peer, "td-api", [{"kind": "listen", "addr": "198.18.0.2", "port": 8080,
                                    "accept": "close-on-eof"}])
    lab.spawn(lab.name, "td-client", [{"kind": "connect", "addr": "198.18.0.2", "port": 8080,
                                       "n": 6000, "pause": 0.004, "then": "close",
                                       "background": True}])
    port = _free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--netns",
                                 lab.name, "--listen", f"127.0.0.1:{port}"],
                                stderr=subprocess.PIPE, text=True)
    try:
        assert exporter.stderr is not None and "serving" in exporter.stderr.readline()
        _exporter_findings(port)  # the first scrape has no previous one: no rates yet
        check = json.loads(tcpdoctor("check", "--json", "--netns", lab.name,
                                     "--interval", "1").stdout)
        from_check = {(f["id"], f["severity"]) for f in check["findings"]}
        from_exporter = _exporter_findings(port)  # rates since the first scrape
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
    assert ("TW_BUCKET_OVERFLOW", "critical") in from_check  # rate-based: overflow rose
    assert from_exporter == from_check
    unsafe = next(f for f in check["findings"] if f["id"] == "UNSAFE_SYSCTL")
    assert set(unsafe["evidence"]["settings"]) >= {
        "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_abort_on_overflow", "net.ipv4.ip_local_port_range"}
    recs = {r["key"]: r["recommended"] for r in unsafe["sysctl"]}
    assert recs["net.ipv4.tcp_syncookies"] == 1 and recs["net.ipv4.tcp_abort_on_overflow"] == 0


def test_lab_cleanup_after_sigkill() -> None:
    """A lab killed with SIGKILL leaves its namespaces and workers; --cleanup removes them."""
    import os
    import signal
    import time

    lab = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "lab", "close-wait", "--n", "20",
                            "--hold", "120"], stdout=subprocess.PIPE, text=True)
    try:
        assert lab.stdout is not None
        name = next(ln.split()[1] for ln in lab.stdout if ln.startswith("namespace:"))
        os.kill(lab.pid, signal.SIGKILL)
        lab.wait(timeout=10)
        assert name in leftover_namespaces("tdlab-")
        inode = os.stat(f"/run/netns/{name}").st_ino
        proc = tcpdoctor("lab", "--cleanup")
        assert proc.returncode == 0 and name in proc.stdout, proc.stderr
        assert name not in leftover_namespaces("tdlab-")
        from pathlib import Path

        assert not list(Path("/tmp").glob(f"tcpdoctor-lab-{name}-*"))  # its own files too
        time.sleep(0.5)
        from tcpdoctor.lab.net import _workers_in

        assert _workers_in(inode) == []
    finally:
        if lab.poll() is None:
            lab.kill()
        tcpdoctor("lab", "--cleanup")


def test_unreadable_netns_is_not_not_found() -> None:
    script = ("import os, sys, tcpdoctor.cli, tcpdoctor.cli.sockets, tcpdoctor.sources.live, "
              "tcpdoctor.render.output; os.setgroups([]); os.setgid(65534); os.setuid(65534); "
              "tcpdoctor.cli.main(['states', '--netns', '/proc/1/ns/net'])")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3 and "unreadable" in proc.stderr, proc.stderr
