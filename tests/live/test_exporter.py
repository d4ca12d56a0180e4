"""Issue 7: the exporter's exposition, bounds, robustness, and a real Prometheus scraping it.

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_exporter.py."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import live, wait_for
from tests.unit.test_exporter import Exporter, free_port, lab, malformed, series  # noqa: F401


@live
def test_series_stay_bounded_with_5000_remotes(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["scan"]
    scenarios.build(lab, sc, 5000)  # SYN_SENT to 5,000 distinct addresses
    exp = Exporter("--netns", lab.name, "--top", "10")
    try:
        text = exp.get()
    finally:
        exp.stop()
    lines = series(text)
    remotes = {m.group(1) for ln in lines
               if (m := re.search(r'tcpdoctor_sockets_by_remote\{.*remote="([^"]+)"', ln))}
    assert len(remotes) == 11 and "other" in remotes  # top 10 + other
    assert len(lines) < 250, len(lines)
    assert f'tcpdoctor_sockets{{netns="{lab.name}",state="SYN_SENT"}} 5000.0' in text
    assert 'tcpdoctor_finding{id="OUTBOUND_SCAN"' in text.replace(f'netns="{lab.name}",', "")


@live
def test_concurrent_and_malformed_requests(lab: LabNet) -> None:
    scenarios.build(lab, scenarios.SCENARIOS["close-wait"], 200)
    exp = Exporter("--netns", lab.name)
    rng = random.Random(1)

    def storm() -> None:
        """200 concurrent scrapes while 300 malformed requests arrive."""
        errors: list[BaseException] = []

        def scrape() -> None:
            try:
                assert 'state="CLOSE_WAIT"} 200.0' in exp.get()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=scrape) for _ in range(200)]
        for t in threads:
            t.start()
        seeds = [rng.random() for _ in range(300)]
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda seed: malformed(exp.port, random.Random(seed)), seeds))
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors[:3]

    try:
        storm()  # the first storm sizes thread stacks and malloc arenas
        first = exp.rss_kb()
        for _ in range(2):
            storm()
        last = exp.rss_kb()
        assert last - first < 10_000, (first, last)  # flat across storms: nothing accumulates
        for method in ("POST", "PUT", "DELETE"):
            req = urllib.request.Request(f"http://127.0.0.1:{exp.port}/metrics", method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 405
        assert 'state="CLOSE_WAIT"} 200.0' in exp.get()  # still serving, still right
        assert exp.proc.poll() is None
    finally:
        exp.stop()


@live
def test_prometheus_scrapes_the_lab(lab: LabNet, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (.ci/run installs Debian's prometheus)")
    scenarios.build(lab, scenarios.SCENARIOS["close-wait"], 200)
    exp = Exporter("--netns", lab.name)
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: tcpdoctor\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exp.port}']\n")
    prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(expr: str) -> list[dict]:
        url = (f"http://127.0.0.1:{prom_port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return list(json.loads(r.read())["data"]["result"])
        except OSError:
            return []

    try:
        cw = 'tcpdoctor_sockets{state="CLOSE_WAIT"}'
        assert wait_for(lambda: [r["value"][1] for r in query(cw)] == ["200"], timeout=90,
                        interval=1), query(cw)
        found = 'tcpdoctor_finding{id="CLOSE_WAIT_LEAK"}'
        assert wait_for(lambda: [r["value"][1] for r in query(found)] == ["1"], timeout=30,
                        interval=1)
        assert query(found)[0]["metric"]["severity"] == "warning"
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        exp.stop()


@pytest.mark.parametrize(("config", "says"), [
    ("basic_auth_users:\n  prom: plaintext\n", "is not a bcrypt hash"),
    ("basic_auth_users:\n  - prom\n", "must map user names"),
    ("tls_server_config: x\n", "must hold cert_file and key_file"),
    ("basic_auth_users: [\n", "not valid YAML"),
])
def test_web_config_checked_at_start(tmp_path: Path, config: str, says: str) -> None:
    cfg = tmp_path / "web.yml"
    cfg.write_text(config)
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "exporter", "--listen",
                           f"127.0.0.1:{free_port()}", "--web-config-file", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and says in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
