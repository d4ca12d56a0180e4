"""Issue 4: the sysctl audit, the drop-in, apply/rollback in a namespace, crash safety."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.analysis import tune
from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.sysctl_kb import BY_KEY, KNOBS, harmful
from tcpdoctor.model.kernel_state import KernelState, Setting
from tests import synth
from tests.conftest import DATA, in_netns, tcpdoctor

SEED = str(DATA / "seed_sysctl.conf")


def seed_audit() -> dict:
    proc = tcpdoctor("tune", "--audit-file", SEED, "--json", "--interval", "0")
    assert proc.returncode == 2, proc.stderr  # critical settings configured
    return json.loads(proc.stdout)


def test_seed_config_is_explained_line_by_line() -> None:
    out = seed_audit()
    entries = {e["key"]: e for e in out["entries"]}
    recycle = entries["net.ipv4.tcp_tw_recycle"]
    assert recycle["severity"] == "critical" and recycle["current"] is None
    assert "4.12" in recycle["why"] and "NAT" in recycle["why"]
    assert recycle["configured_at"].endswith("seed_sysctl.conf:4")
    buckets = entries["net.ipv4.tcp_max_tw_buckets"]
    assert buckets["severity"] == "critical" and buckets["configured"] == "5000"
    ehash = int(Path("/proc/sys/net/ipv4/tcp_ehash_entries").read_text())
    assert buckets["recommended"] == str(abs(ehash) // 2)
    fin = entries["net.ipv4.tcp_fin_timeout"]
    assert "TIME_WAIT is fixed at 60 s" in fin["why"] and fin["recommended"] is None
    assert "outgoing" in entries["net.ipv4.tcp_tw_reuse"]["why"]
    assert "SO_KEEPALIVE" in entries["net.ipv4.tcp_keepalive_time"]["why"]
    assert "somaxconn" in entries["net.ipv4.tcp_max_syn_backlog"]["why"]
    assert entries["net.ipv4.ip_local_port_range"]["severity"] == "warning"
    unsafe = [f for f in out["findings"] if f["id"] == "UNSAFE_SYSCTL"]
    assert unsafe and unsafe[0]["severity"] == "critical"
    # Never recommends tcp_tw_recycle, in entries or in the drop-in.
    assert all(e["recommended"] is None for e in out["entries"] if "tw_recycle" in e["key"])
    assert not any(line.startswith("net.ipv4.tcp_tw_recycle")
                   for line in out["dropin"].splitlines())
    for e in out["entries"]:
        assert e.keys() >= {"key", "current", "configured", "recommended", "why", "severity"}


def test_explain() -> None:
    proc = tcpdoctor("tune", "--explain", "net/ipv4/tcp_fin_timeout")
    assert proc.returncode == 0 and "FIN_WAIT2" in proc.stdout and "Myth" in proc.stdout
    bad = tcpdoctor("tune", "--explain", "net.ipv4.nope")
    assert bad.returncode == 3 and "unknown key" in bad.stderr


def test_write_is_a_valid_dropin(tmp_path: Path) -> None:
    out = tmp_path / "drop.conf"
    proc = tcpdoctor("tune", "--interval", "0", "--audit-file", SEED, "--write", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in out.read_text().splitlines() if ln and not ln.startswith("#")]
    assert "net.ipv4.tcp_max_tw_buckets = " in "\n".join(lines)
    assert [p.name for p in tmp_path.iterdir()] == ["drop.conf"]  # no temp file left


BAD = {"net.ipv4.tcp_max_tw_buckets": "5000", "net.ipv4.tcp_syncookies": "0",
       "net.ipv4.tcp_abort_on_overflow": "1", "net.ipv4.tcp_timestamps": "0"}


def sysctl(ns: str, key: str) -> str:
    return " ".join(in_netns(ns, "sysctl", "-n", key).stdout.split())


@pytest.fixture
def bad_netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("apply/rollback tests need root (network namespaces)")
    name = f"tdtune-{os.getpid()}-{random.randrange(1 << 20):x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for key, value in BAD.items():
            in_netns(name, "sysctl", "-qw", f"{key}={value}")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _ints(knob_key: str) -> st.SearchStrategy[str]:
    knob = BY_KEY[knob_key]
    lo, hi = knob.valid or (0, 10)
    one = st.integers(min(lo, 0), min(hi, 2**40))
    if knob.count == 0:
        return st.just("")
    return st.lists(one, min_size=knob.count, max_size=knob.count).map(
        lambda v: " ".join(map(str, v)))


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({k.key: _ints(k.key) for k in KNOBS}),
       st.dictionaries(st.sampled_from([k.key for k in KNOBS]), st.text(max_size=12),
                       max_size=4),
       st.integers(1, 2**22), st.integers(0, 5000))
def test_recommendations_are_always_in_range(current: dict[str, str],
                                             configured: dict[str, str], ehash: int,
                                             syn_recv: int) -> None:
    cfg = {k: Setting(k, v, "f.conf", i) for i, (k, v) in enumerate(configured.items(), 1)}
    # Evidence from the rules, with the same random kernel values in force.
    kernel = KernelState(0.0, sysctls=dict(current))
    snap = synth.snapshot(
        {"state": "LISTEN", "sport": 80, "raddr": "0.0.0.0", "rqueue": 9, "wqueue": 8},
        {"n": syn_recv, "state": "SYN_RECV", "sport": 80})
    findings = run_rules(Context(snap, kernel)).findings
    result = tune.audit(current, cfg, findings, "6.18.0", ehash)
    for e in result.entries:
        if e.recommended is not None:
            knob = BY_KEY[e.key]
            assert knob.parse(e.recommended) is not None, (e.key, e.recommended)
            assert not harmful(knob, e.recommended, ehash), e


