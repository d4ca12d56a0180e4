"""Where fleets live: node-problem-detector's plugin protocol on real labs, and findings
posted to a real Alertmanager (Debian's prometheus-alertmanager, on loopback)."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import live_reason, tcpdoctor, tcpdoctor_as_nobody, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdfleet") as net:
        yield net


def npd(*args: str) -> tuple[str, int]:
    proc = tcpdoctor("check", "--format", "npd", *args)
    assert proc.stderr == "" or "Traceback" not in proc.stderr
    return proc.stdout, proc.returncode


def test_npd_names_the_leak_in_one_short_line(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    out, code = npd("--netns", lab.name)
    assert code == 1 and out.count("\n") == 1 and len(out.rstrip("\n").encode()) <= 80
    assert "CLOSE_WAIT_LEAK" in out, out


def test_npd_says_ok_for_a_healthy_lab(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["healthy"]
    scenarios.build(lab, sc, sc.default_n)
    out, code = npd("--netns", lab.name)
    assert code == 0 and out.startswith("OK") and out.count("\n") == 1


def test_npd_is_unknown_without_the_rights_to_read(lab: LabNet) -> None:
    proc = tcpdoctor_as_nobody("check", "--format", "npd", "--netns", lab.name)
    assert proc.returncode == 2 and proc.stdout.startswith("UNKNOWN")
    assert proc.stdout.count("\n") == 1 and len(proc.stdout.rstrip("\n").encode()) <= 80


AM_CONFIG = """route:
  receiver: nowhere
  group_by: [alertname, netns]
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: nowhere
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """Debian's Alertmanager on a free loopback port, its storage in tmp_path."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("Debian's prometheus-alertmanager is not installed (.ci/run installs it)")
    (tmp_path / "am.yml").write_text(AM_CONFIG)
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'am.yml'}",
                             f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _get(url + "/-/ready") is not None, 20)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            body = reply.read()
            return json.loads(body) if body.startswith((b"[", b"{")) else body
    except OSError:
        return None


def alerts(url: str, netns: str) -> list[dict[str, Any]]:
    found = _get(url + "/api/v2/alerts") or []
    return [a for a in found if a["labels"].get("netns") == netns]


def test_findings_reach_alertmanager_and_resolve(lab: LabNet, alertmanager: str,
                                                 tmp_path: Path) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    for _ in range(2):  # the second run (a restart) must not duplicate the alert
        proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0", "--alertmanager",
                         alertmanager)
        assert proc.returncode == 1 and "Alertmanager" not in proc.stderr, proc.stderr
    assert wait_for(lambda: len(alerts(alertmanager, lab.name)) == 1, 10)
    [alert] = alerts(alertmanager, lab.name)
    labels = alert["labels"]
    assert labels["alertname"] == "CLOSE_WAIT_LEAK" and labels["severity"] == "warning"
    assert labels["instance"] == socket.gethostname() and labels["source"] == "tcpdoctor"
    assert "CLOSE_WAIT" in alert["annotations"]["summary"]
    assert alert["annotations"]["action"] and "close_wait=200" in alert["annotations"]["evidence"]
    # The exporter posts every round; when the leak ends, its alert resolves.
    exporter = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--netns",
                                 lab.name, "--textfile", str(tmp_path), "--interval", "1",
                                 "--alertmanager", alertmanager],
                                stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (tmp_path / "tcpdoctor.prom").exists(), 20)
        lab.retire("td-leaky")  # the leaking server exits: its CLOSE_WAIT are gone
        assert wait_for(lambda: alerts(alertmanager, lab.name) == [], 20), \
            alerts(alertmanager, lab.name)
    finally:
        exporter.terminate()
        exporter.wait(timeout=20)


def test_an_unreachable_alertmanager_is_a_note_not_a_crash(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0", "--alertmanager",
                     f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # the report stands
    assert "Alertmanager" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP metrics receiver of our own (no collector binary here): it decodes each
    ExportMetricsServiceRequest with opentelemetry-proto and keeps the latest points."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.points: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self.lock = threading.Lock()


class _OtlpHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = pb.ExportMetricsServiceRequest.FromString(body)
        points: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    data = m.gauge.data_points if m.HasField("gauge") else m.sum.data_points
                    for p in data:
                        attrs = tuple(sorted((a.key, a.value.string_value) for a in p.attributes))
                        value = p.as_double if p.HasField("as_double") else p.as_int
                        points.setdefault(m.name, {})[attrs] = float(value)
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.points.update(points)  # type: ignore[attr-defined]
        reply = pb.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_otlp_receives_the_metrics_prometheus_scrapes(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "tcpdoctor", "exporter", "--netns", lab.name, "--listen",
         f"127.0.0.1:{port}", "--interval", "1",
         "--otlp", f"http://127.0.0.1:{receiver.server_address[1]}"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: "tcpdoctor_sockets" in receiver.points, 30)
        prom = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        exporter.terminate()
        exporter.wait(timeout=20)
        receiver.shutdown()
    with receiver.lock:
        got = dict(receiver.points)
    key = (("netns", lab.name), ("state", "CLOSE_WAIT"))
    assert got["tcpdoctor_sockets"][key] == prom["tcpdoctor_sockets"][key] == 200
    finding = (("id", "CLOSE_WAIT_LEAK"), ("netns", lab.name), ("severity", "warning"))
    assert got["tcpdoctor_finding"][finding] == prom["tcpdoctor_finding"][finding] == 1
    # The same states, with the same values, and every series name (a counter X_total in
    # Prometheus is the sum X in OpenTelemetry).
    assert got["tcpdoctor_sockets"] == prom["tcpdoctor_sockets"]
    names = {n if n in got else n.removesuffix("_total") for n in prom}
    assert names <= set(got), names - set(got)
