"""Issue 4: the sysctl audit, the drop-in, apply/rollback in a namespace, crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
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

from . import synth
from .conftest import DATA, in_netns, live, tcpdoctor

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


@pytest.mark.parametrize(("setting", "message"), [
    ("net.ipv4.tcp_bogus=1", "not a key tcpdoctor knows"),
    ("net.ipv4.tcp_tw_reuse=7", "outside the valid range"),
    ("net.ipv4.tcp_max_tw_buckets=5000", "never lower it"),
    ("net.ipv4.tcp_syncookies=0", "SYN flood"),
    ("net.ipv4.tcp_tw_recycle=0", "removed in Linux 4.12"),
])
def test_set_refuses_unsafe_values(tmp_path: Path, setting: str, message: str) -> None:
    out = tmp_path / "drop.conf"
    proc = tcpdoctor("tune", "--interval", "0", "--audit-file", SEED, "--write", str(out),
                     "--set", setting)
    assert proc.returncode == 3 and message in proc.stderr
    assert not out.exists()


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


@live
def test_apply_then_rollback_round_trips(bad_netns: str, tmp_path: Path) -> None:
    ns = bad_netns
    dropin, state = tmp_path / "99-tcpdoctor.conf", tmp_path / "state"
    before = {k: sysctl(ns, k) for k in BAD}
    assert before == BAD
    host_before = Path("/proc/sys/net/ipv4/tcp_syncookies").read_text()
    args = ["--netns", ns, "--write", str(dropin), "--state-dir", str(state), "--interval", "0"]
    applied = tcpdoctor("tune", "--apply", "--json", *args)
    assert applied.returncode == 0, applied.stderr
    after = {k: sysctl(ns, k) for k in BAD}
    ehash = abs(int(sysctl(ns, "net.ipv4.tcp_ehash_entries")))
    assert after == {"net.ipv4.tcp_max_tw_buckets": str(ehash // 2),
                     "net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_abort_on_overflow": "0",
                     "net.ipv4.tcp_timestamps": "1"}
    assert dropin.exists() and "tcp_syncookies = 1" in dropin.read_text()
    assert Path("/proc/sys/net/ipv4/tcp_syncookies").read_text() == host_before  # host untouched
    again = tcpdoctor("tune", "--apply", *args)  # re-apply keeps the original backup
    assert again.returncode == 0, again.stderr
    rolled = tcpdoctor("tune", "--rollback", *args)
    assert rolled.returncode == 0, rolled.stderr
    assert {k: sysctl(ns, k) for k in BAD} == before
    assert not dropin.exists() and list(state.iterdir()) == []
    nothing = tcpdoctor("tune", "--rollback", *args)
    assert nothing.returncode == 3 and "nothing to roll back" in nothing.stderr


@live
def test_kill_during_apply_leaves_old_or_new_file(bad_netns: str, tmp_path: Path) -> None:
    ns = bad_netns
    dropin, state = tmp_path / "99-tcpdoctor.conf", tmp_path / "state"
    old = "# the previous drop-in\nnet.ipv4.tcp_fin_timeout = 60\n"
    env = dict(os.environ, TCPDOCTOR_SLOW_WRITE="0.01")
    outcomes = {"old": 0, "new": 0}
    rng = random.Random(7)
    for _ in range(12):
        dropin.write_text(old)
        proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "tune", "--apply",
                                 "--netns", ns, "--write", str(dropin), "--state-dir",
                                 str(state), "--interval", "0"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = dropin.read_text()
        if text == old:
            outcomes["old"] += 1
        else:
            assert text.startswith("# Generated by tcpdoctor tune"), text[:200]
            assert text.endswith("\n"), "drop-in cut short"
            values = {ln.split(" = ")[0] for ln in text.splitlines() if " = " in ln
                      and not ln.startswith("#")}
            assert values == set(BAD), f"drop-in cut short: {values}"
            outcomes["new"] += 1
        backups = list(state.glob("*.json")) if state.exists() else []
        for b in backups:
            json.loads(b.read_text())  # never half a backup either
        if backups:
            rolled = tcpdoctor("tune", "--rollback", "--netns", ns, "--write", str(dropin),
                               "--state-dir", str(state))
            assert rolled.returncode == 0, rolled.stderr
            assert {k: sysctl(ns, k) for k in BAD} == BAD
            assert dropin.read_text() == old
    assert outcomes["old"] + outcomes["new"] == 12


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


@pytest.mark.parametrize(("setting", "says"), [
    ("net.ipv4.tcp_syncookies=0", "refusing net.ipv4.tcp_syncookies = 0"),
    ("net.ipv4.tcp_max_tw_buckets=10", "refusing net.ipv4.tcp_max_tw_buckets = 10"),
    ("foo.bar=$(reboot)", "refusing foo.bar: not a key"),
    ("net.ipv4.ip_local_reserved_ports=$(reboot)", "expected ports and ranges"),
])
def test_dry_run_refuses_what_apply_would(setting: str, says: str) -> None:
    """The printed drop-in never holds a value --write or --apply would refuse."""
    proc = tcpdoctor("tune", "--interval", "0", "--set", setting)
    assert proc.returncode == 3 and says in proc.stderr and not proc.stdout, proc.stdout


@live
def test_failed_apply_leaves_no_backup_and_stale_temps_go(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    dropin = tmp_path / "missing-dir" / "99-x.conf"  # its directory does not exist
    from tcpdoctor.system.sysctl_apply import backup_path

    bpath = Path(backup_path(str(state), str(dropin), None))
    stale = bpath.with_name(f".{bpath.name}.tcpdoctor-999999.tmp")  # a writer killed by -9
    stale.write_text("{half")
    proc = tcpdoctor("tune", "--interval", "0", "--apply", "--write", str(dropin),
                     "--state-dir", str(state), "--set", "net.ipv4.tcp_fin_timeout=30")
    assert proc.returncode == 3 and "cannot write" in proc.stderr, proc.stderr
    assert list(state.iterdir()) == []  # no backup of a change that did not happen
