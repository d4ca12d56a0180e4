"""Forecasts against the labs' own truth: the ramp's first EADDRNOTAVAIL and the leaking
server's first EMFILE happen when a forecast taken a quarter of the way said (±20% of the
time left), the plateau levels where Little's law puts it (±10%), and failed connects are
recorded one for one with their process and destination."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import PEER_ADDR, LabNet
from tests.conftest import live_reason, tcpdoctor, wait_for
from tests.programs import CONNECT_FAIL_PROG

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdforecast") as net:
        yield net


def forecast_at(lab: LabNet, name: str, quarter: float) -> tuple[dict[str, Any], float, int]:
    """Build the scenario, wait until `quarter` seconds after its load started, check."""
    sc = scenarios.SCENARIOS[name]
    scenarios.build(lab, sc, sc.default_n)
    assert wait_for(lambda: "started" in lab.events(), 10)
    started = lab.events()["started"]["at"]
    time.sleep(max(started + quarter - time.time(), 0))
    proc = tcpdoctor("check", "--netns", lab.name, "--interval", "2", "--json")
    return json.loads(proc.stdout), time.time(), proc.returncode


def test_the_ramp_runs_out_when_the_forecast_said(lab: LabNet) -> None:
    report, now, code = forecast_at(lab, "port-ramp", 10.0)  # out after 40 s
    ports = next(f for f in report["forecasts"] if f["resource"] == "ports")
    assert ports["scope"] == f"{PEER_ADDR}:80" and ports["limit"] == 1000
    finding = next(f for f in report["findings"] if f["id"] == "EPHEMERAL_PORT_EXHAUSTION")
    assert finding["severity"] == "critical" and code == 2  # 30 s left: under the horizon
    assert finding["evidence"]["forecast"]["scope"] == ports["scope"]
    assert wait_for(lambda: "connect_failed" in lab.events(), 60, 0.2)
    failed = lab.events()["connect_failed"]
    assert failed["errno"] == "EADDRNOTAVAIL"
    actual_left = failed["at"] - now
    print(f"port ramp: forecast {ports['seconds_left']:.1f} s left, first EADDRNOTAVAIL "
          f"{actual_left:.1f} s later")  # the figure for the record (pytest -s)
    assert abs(ports["seconds_left"] - actual_left) <= 0.2 * actual_left, (ports, actual_left)


def test_the_plateau_levels_off_where_littles_law_says(lab: LabNet) -> None:
    report, _, code = forecast_at(lab, "port-plateau", 10.0)
    ports = next(f for f in report["forecasts"] if f["resource"] == "ports")
    level = scenarios.PLATEAU_RATE * 60
    print(f"plateau: forecast levels at {ports['levels_at']}, Little's law {level:.0f}")
    assert ports["seconds_left"] is None and ports["limit"] == 2000
    assert abs(ports["levels_at"] - level) <= 0.1 * level, ports
    assert code == 0, report["findings"]


def test_the_fd_ramp_reaches_its_limit_when_the_forecast_said(lab: LabNet) -> None:
    report, now, _ = forecast_at(lab, "fd-ramp", 15.0)  # 600 files at 10/s: about 60 s
    files = next(f for f in report["forecasts"] if f["resource"] == "open_files")
    assert files["limit"] == scenarios.FD_RAMP_LIMIT and "td-leaky" in files["scope"]
    leak = next(f for f in report["findings"] if f["id"] == "CLOSE_WAIT_LEAK")
    assert leak["evidence"]["forecast"]["resource"] == "open_files"
    assert wait_for(lambda: "accept_failed" in lab.events(), 90, 0.2)
    failed = lab.events()["accept_failed"]
    assert failed["errno"] == "EMFILE"
    actual_left = failed["at"] - now
    print(f"fd ramp: forecast {files['seconds_left']:.1f} s left, first EMFILE "
          f"{actual_left:.1f} s later")
    assert abs(files["seconds_left"] - actual_left) <= 0.2 * actual_left, (files, actual_left)


def test_failed_connects_are_recorded_one_for_one(lab: LabNet) -> None:
    lab.sysctl(lab.name, "net.ipv4.ip_local_port_range", "40000 40009")
    lab.sysctl(lab.name, "net.ipv4.tcp_tw_reuse", "0")
    lab.spawn(lab.peer, "td-backend", [{"kind": "listen", "addr": PEER_ADDR, "port": 80}])
    tracer = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "trace", "--summary", "--json",
                               "--duration", "5", "--netns", lab.name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        time.sleep(1.0)  # the tracing instance is up
        client = subprocess.Popen(["ip", "netns", "exec", lab.name, sys.executable, "-c",
                                   CONNECT_FAIL_PROG, "td-hungry", PEER_ADDR, "80", "10", "7"],
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert client.stdout is not None
        truth = json.loads(client.stdout.readline())
        out, err = tracer.communicate(timeout=30)
    finally:
        for p in (tracer, client):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL) if p is client else p.kill()
    assert truth["failed"] == 7
    summary = json.loads(out)
    assert summary["connect_failures"] == [
        {"reason": "EADDRNOTAVAIL", "destination": f"{PEER_ADDR}:80", "process": "td-hungry",
         "pid": truth["pid"], "count": 7}], (summary["connect_failures"], err)


def test_watch_and_the_exporter_show_the_nearest_exhaustion(lab: LabNet, tmp_path: Any) -> None:
    sc = scenarios.SCENARIOS["port-ramp"]
    scenarios.build(lab, sc, sc.default_n)
    watch = subprocess.run([sys.executable, "-m", "tcpdoctor", "watch", "--netns", lab.name,
                            "--json", "--interval", "1", "--count", "3"],
                           capture_output=True, text=True, timeout=60)
    last = json.loads(watch.stdout.splitlines()[-1])
    ports = last["forecasts"][0]
    assert ports["resource"] == "ports" and 0 < ports["seconds_left"] <= 40, last["forecasts"]
    exporter = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--netns",
                                 lab.name, "--textfile", str(tmp_path), "--interval", "1"])
    try:
        prom = tmp_path / "tcpdoctor.prom"
        assert wait_for(lambda: prom.exists() and "tcpdoctor_exhaustion_seconds{" in
                        prom.read_text(), 20)
    finally:
        exporter.terminate()
        exporter.wait(timeout=20)
    line = next(ln for ln in prom.read_text().splitlines()
                if ln.startswith("tcpdoctor_exhaustion_seconds{"))
    assert f'resource="ports",scope="{PEER_ADDR}:80"' in line and 0 < float(line.split()[-1]) < 40


def test_the_exporter_counts_failed_connects_when_tracing(lab: LabNet, tmp_path: Any) -> None:
    lab.sysctl(lab.name, "net.ipv4.ip_local_port_range", "40000 40009")
    lab.sysctl(lab.name, "net.ipv4.tcp_tw_reuse", "0")
    lab.spawn(lab.peer, "td-backend", [{"kind": "listen", "addr": PEER_ADDR, "port": 80}])
    prom = tmp_path / "tcpdoctor.prom"
    exporter = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--netns",
                                 lab.name, "--trace", "--textfile", str(tmp_path),
                                 "--interval", "1"], stderr=subprocess.PIPE, text=True)
    client = None
    try:
        assert wait_for(prom.exists, 20)
        client = subprocess.Popen(["ip", "netns", "exec", lab.name, sys.executable, "-c",
                                   CONNECT_FAIL_PROG, "td-hungry", PEER_ADDR, "80", "10", "7"],
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        want = (f'tcpdoctor_connect_failures_total{{destination="{PEER_ADDR}:80",'
                f'netns="{lab.name}",reason="EADDRNOTAVAIL"}} 7.0')
        assert wait_for(lambda: want in prom.read_text(), 20), prom.read_text()[-2000:]
    finally:
        exporter.terminate()
        exporter.wait(timeout=20)
        if client is not None and client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
