"""Issue 7: the exporter's exposition, bounds, robustness, and a real Prometheus scraping it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.exporter.collector import Sample, build_registry
from tcpdoctor.lab.net import LabNet
from tcpdoctor.model.kernel_state import KernelState
from tests import synth
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "contrib" / "prometheus"


def fixed_sample(ns: str | None) -> Sample:
    snap = synth.snapshot(
        {"state": "LISTEN", "sport": 8080, "dport": 0, "raddr": "0.0.0.0", "rqueue": 3,
         "wqueue": 128},
        {"n": 150, "state": "CLOSE_WAIT", "sport": 8080, "raddr": lambda i: f"10.1.0.{i % 12}"},
        {"n": 40, "state": "TIME_WAIT", "sport": lambda i: 33000 + i, "dport": 443,
         "raddr": "192.0.2.7"})
    kernel = KernelState(0.0, sockstat={"TCP": {"inuse": 151, "orphan": 0, "tw": 40,
                                                "alloc": 160, "mem": 12}},
                         counters={"TcpExt.ListenOverflows": 7, "Tcp.ActiveOpens": 1234},
                         sysctls={"net.ipv4.tcp_max_tw_buckets": "131072",
                                  "net.ipv4.tcp_max_orphans": "131072",
                                  "net.ipv4.tcp_mem": "1000 2000 3000"},
                         slab={"TCP": (2368, 300), "tw_sock_TCP": (256, 64)})
    report = run_rules(Context(snap, kernel))
    # A ramp towards one backend, and a plateau (which has no time left: not exported).
    forecasts = [{"resource": "ports", "scope": "10.0.0.5:443", "used": 300, "limit": 1000,
                  "per_second": 25.0, "seconds_left": 28.0, "levels_at": None},
                 {"resource": "tw_buckets", "scope": "host", "used": 300, "limit": 131072,
                  "per_second": 25.0, "seconds_left": None, "levels_at": 1500}]
    return Sample(snap, kernel, report.findings, 0.125, cost=report.cost, forecasts=forecasts,
                  connect_failures={("EADDRNOTAVAIL", "10.0.0.5:443"): 7},
                  conntrack={"entries": 1200, "states": {"ESTABLISHED": 1000, "TIME_WAIT": 200},
                             "ghosts": 40,
                             "by_namespace": [{"namespace": "pod-a", "entries": 900},
                                              {"namespace": "elsewhere", "entries": 300}],
                             "by_destination": [{"destination": "10.9.0.9:80",
                                                 "entries": 1100}],
                             "snat": [{"translated_source": "203.0.113.1",
                                       "destination": "10.9.0.9:80", "ports_used": 1100,
                                       "ports_available": 64512}]})


def test_exposition_golden() -> None:
    registry = build_registry({"host": lambda: fixed_sample(None)}, 5, 5.0)
    text = generate_latest(registry).decode()
    golden = DATA / "exporter_golden.prom"
    if os.environ.get("TCPDOCTOR_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Exporter:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tcpdoctor", "exporter", "--listen",
             f"127.0.0.1:{self.port}", *args], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "serving" in line, line + self.proc.stderr.read()

    def get(self, path: str = "/metrics", **kw: object) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=30, **kw) as r:  # type: ignore[arg-type]
            return str(r.read().decode())

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdexp") as net:  # torn down even when the test fails
        yield net


def series(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def malformed(port: int, rng: random.Random) -> None:
    payloads = [
        b"GARBAGE\r\n\r\n", b"GET\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /metrics HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
        b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n",
        bytes(rng.randrange(256) for _ in range(300)),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n",  # never finishes its headers
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello to a plain server
        b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n",
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(rng.choice(payloads))
        s.settimeout(0.5)
        with contextlib.suppress(OSError):
            s.recv(1024)


def test_basic_auth_and_tls(tmp_path: Path) -> None:
    import bcrypt

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                   f"basic_auth_users:\n  prom: '{hashed}'\n")
    exp = Exporter("--web-config-file", str(cfg))
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{exp.port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10, context=ctx)
        assert err.value.code == 401
        auth = "Basic " + base64.b64encode(b"prom:s3cret").decode()
        req = urllib.request.Request(url, headers={"Authorization": auth})
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            assert b"tcpdoctor_sockets" in r.read()
        bad = urllib.request.Request(url, headers={
            "Authorization": "Basic " + base64.b64encode(b"prom:nope").decode()})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(bad, timeout=10, context=ctx)
    finally:
        exp.stop()


def test_textfile_once(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "exporter", "--textfile",
                           str(tmp_path), "--once"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["tcpdoctor.prom"]
    text = (tmp_path / "tcpdoctor.prom").read_text()
    assert 'tcpdoctor_sockets{netns="host",state="LISTEN"}' in text


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (.ci/run installs Debian's prometheus)")
    return path


def test_alert_rules_check_and_unit_tests() -> None:
    tool = promtool()
    for args in (["check", "rules", "tcpdoctor-rules.yml"],
                 ["test", "rules", "tcpdoctor-rules.test.yml"]):
        proc = subprocess.run([tool, *args], cwd=PROM, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_are_generated_and_cover_every_finding() -> None:
    from tcpdoctor.analysis.registry import REGISTRY
    from tcpdoctor.render.ruledocs import alert_rules_yaml

    text = (PROM / "tcpdoctor-rules.yml").read_text()
    assert text == alert_rules_yaml(), "regenerate: python -m tcpdoctor.render.ruledocs alerts"
    for rid in REGISTRY:
        assert f'id="{rid}"' in text


def test_dashboard_queries_exported_metrics() -> None:
    dash = json.loads((ROOT / "contrib" / "grafana" / "tcpdoctor.json").read_text())
    exported = set(re.findall(r"^# TYPE (\w+)", (DATA / "exporter_golden.prom").read_text(),
                              re.M))
    exported |= {f"{m}_total" for m in exported}
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"\b(tcpdoctor_\w+)", target["expr"]):
                assert metric in exported, (panel["title"], metric)


def test_listens_on_ipv6_loopback() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--listen",
                             f"[::1]:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"serving http://[::1]:{port}/metrics" in line, line
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=30) as r:
            assert b'tcpdoctor_up{netns="host"} 1.0' in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_namespace_that_cannot_be_sampled_says_why(tmp_path: Path) -> None:
    """tcpdoctor_up 0 comes with the reason, in the exposition and on stderr."""
    from tcpdoctor.exporter.collector import build_registry

    def failing() -> Sample:
        raise OSError("network namespace vanished")

    logged: list[str] = []
    registry = build_registry({"gone": failing}, 5, 5.0,
                              lambda ns, exc: logged.append(f"{ns}: {exc}"))
    text = generate_latest(registry).decode()
    assert 'tcpdoctor_up{netns="gone"} 0.0' in text
    assert ('tcpdoctor_scrape_error{error="network namespace vanished",netns="gone"} 1.0'
            in text)
    assert logged == ["gone: network namespace vanished"]


def test_unknown_user_costs_a_bcrypt_check_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """No user enumeration by timing: an unknown user is checked against a dummy hash of
    the configured cost, and at most one check runs at a time."""
    import bcrypt

    from tcpdoctor.exporter.http import WebConfig

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=5))
    web = WebConfig(None, {"prom": hashed})
    seen: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: (seen.append(h), real(pw, h))[1])

    def auth(user: str, pw: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    assert not web.check(auth("nobody", "s3cret"))
    assert not web.check(auth("prom", "wrong"))
    assert web.check(auth("prom", "s3cret"))
    assert web.check(auth("prom", "s3cret"))  # remembered: no second bcrypt run
    assert len(seen) == 3 and seen[0] != hashed and seen[0][:7] == hashed[:7]  # same cost


def test_bad_content_length_is_a_400() -> None:
    exp = Exporter()
    try:
        with socket.create_connection(("127.0.0.1", exp.port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.0 400")
    finally:
        exp.stop()
