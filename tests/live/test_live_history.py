"""Issue 8 on real sockets: record against `ss`, SIGKILL at random moments, watch under
tmux, and the HTML report rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tcpdoctor.analysis.groups import owner_label
from tcpdoctor.history.store import History
from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import MAIN_ADDR, LabNet
from tests.conftest import live, ss_state_counts, tcpdoctor, wait_for

pytestmark = live
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


@pytest.fixture
def leak() -> Iterator[LabNet]:
    """The close-wait lab: td-leaky holds 200 CLOSE_WAIT on port 8080."""
    with LabNet(prefix="tdhist") as net:
        sc = scenarios.SCENARIOS["close-wait"]
        scenarios.build(net, sc, sc.default_n)
        yield net


def grow(lab: LabNet, bursts: int, n: int, pause: float) -> None:
    """More clients close on td-leaky: CLOSE_WAIT climbs in steps of n."""
    for i in range(bursts):
        lab.spawn(lab.peer, f"td-peer{i}", [{"kind": "connect", "addr": MAIN_ADDR,
                                             "port": 8080, "n": n, "then": "close"}])
        time.sleep(pause)


def test_record_matches_ss_while_growing(leak: LabNet, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    readings: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll_ss() -> None:
        while not stop.is_set():
            before = time.time()
            n = ss_state_counts(leak.name)["CLOSE_WAIT"]
            readings.append((before, n))
            readings.append((time.time(), n))

    poller = threading.Thread(target=poll_ss, daemon=True)
    poller.start()
    rec = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "record", "--db", str(db),
                            "--netns", leak.name, "--interval", "0.2", "--count", "10",
                            "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        grow(leak, 3, 40, 0.3)
        out, err = rec.communicate(timeout=60)
    finally:
        if rec.poll() is None:
            rec.kill()
        stop.set()
        poller.join(timeout=10)
    assert rec.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) == 10
    hist = json.loads(tcpdoctor("history", "--db", str(db), "--json").stdout)
    samples = hist["samples"]
    assert len(samples) == 10
    assert [s["states"] for s in samples] == [p["states"] for p in printed]
    with History(str(db)) as h:
        stored = h.samples()
    for s in stored:
        # ss readings around the sample's moment bound its count ("within the churn").
        near = [n for t, n in readings if abs(t - s.ts) <= 0.3]
        assert near, f"no ss reading near {s.ts}"
        assert min(near) <= s.states["CLOSE_WAIT"] <= max(near), (s.states, near)
        assert "CLOSE_WAIT_LEAK" in [f["id"] for f in s.findings]
    assert stored[0].states["CLOSE_WAIT"] < stored[-1].states["CLOSE_WAIT"] <= 320
    # Sockets still in td-leaky's accept queue when sampled belong to no process yet: the
    # history names them as every table does (owner_label), never another process.
    owners = h_groups(db, "process")
    assert any(k.startswith("td-leaky (") for k in owners)
    unowned = owner_label(None, None)
    assert all(k.startswith("td-leaky (") or k == unowned for k in owners), owners


def h_groups(db: Path, dim: str) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT key FROM groups WHERE dim = ? AND "
                                          "state = 'CLOSE_WAIT'", (dim,))}
    finally:
        con.close()


def test_sigkill_never_corrupts(leak: LabNet, tmp_path: Path) -> None:
    """30 recorders killed with SIGKILL at random moments, one database: it stays intact,
    samples stay ordered, every sample reported as stored is there and whole, and at most one
    more (committed just before the kill, not yet printed) appears per kill."""
    db = tmp_path / "k.db"
    rng = random.Random(8)
    env = {**os.environ, "TCPDOCTOR_SLOW_WRITE": "0.02"}  # widen the in-transaction window
    reported_total = 0
    mid_write_kills = 0
    for _ in range(30):
        before = count_samples(db)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tcpdoctor", "record", "--db", str(db), "--netns",
             leak.name, "--interval", "0.05", "--no-processes", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        lines: list[str] = []
        reader = threading.Thread(target=lambda p=proc, out=lines: out.extend(p.stdout),
                                  daemon=True)
        reader.start()
        time.sleep(rng.uniform(0.4, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
        reported = [json.loads(x)["id"] for x in lines if x.strip()]
        reported_total += len(reported)
        with History(str(db)) as h:
            assert h.integrity() == "ok"
            samples = h.samples()
        ids = [s.id for s in samples]
        assert ids == sorted(set(ids)), "sample ids not strictly increasing"
        assert all(a.ts < b.ts for a, b in pairwise(samples))
        assert set(reported) <= set(ids), "a sample reported as stored is missing"
        extra = len(samples) - before - len(reported)
        assert extra in (0, 1), f"{extra} unreported samples appeared after one kill"
        mid_write_kills += extra
        assert_whole(db)
    assert reported_total >= 30, "the recorder hardly ever got to store a sample"
    print(f"30 kills: {reported_total} samples reported, {mid_write_kills} committed but "
          f"unreported, integrity ok every time")


def count_samples(db: Path) -> int:
    if not db.exists():
        return 0
    with History(str(db)) as h:
        return len(h.samples())


def assert_whole(db: Path) -> None:
    """Each sample has its group rows and its finding: no half-written sample."""
    con = sqlite3.connect(db)
    try:
        partial = con.execute(
            "SELECT count(*) FROM samples s WHERE close_wait > 0 AND (NOT EXISTS "
            "(SELECT 1 FROM groups g WHERE g.sample_id = s.id) OR NOT EXISTS "
            "(SELECT 1 FROM findings f WHERE f.sample_id = s.id))").fetchone()[0]
    finally:
        con.close()
    assert partial == 0


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", "tdtest-watch", *args], capture_output=True,
                          text=True, check=False)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_watch_under_tmux(leak: LabNet) -> None:
    cmd = f"{sys.executable} -m tcpdoctor watch --netns {leak.name} --interval 0.5"
    tmux("kill-server")
    assert tmux("new-session", "-d", "-s", "w", "-x", "160", "-y", "50", cmd).returncode == 0
    try:
        assert wait_for(lambda: "CLOSE_WAIT_LEAK" in tmux("capture-pane", "-p").stdout, 20)
        screen = tmux("capture-pane", "-p").stdout
        row = next(line.split() for line in screen.splitlines()
                   if line.strip().startswith("CLOSE_WAIT "))
        assert row[2] == str(ss_state_counts(leak.name)["CLOSE_WAIT"]) == "200"
        assert "Top remote-ip in CLOSE_WAIT" in screen and "198.18.0.2" in screen
        tmux("send-keys", "-t", "w", "g")
        assert wait_for(lambda: "Top service-port" in tmux("capture-pane", "-p").stdout, 5)
        tmux("send-keys", "-t", "w", "g")
        assert wait_for(lambda: "td-leaky" in tmux("capture-pane", "-p").stdout, 5)
        tmux("send-keys", "-t", "w", "p")
        assert wait_for(lambda: "PAUSED" in tmux("capture-pane", "-p").stdout, 5)
        tmux("send-keys", "-t", "w", "q")
        assert wait_for(lambda: tmux("has-session", "-t", "w").returncode != 0, 5), \
            "watch did not quit on q"
    finally:
        tmux("kill-server")


def test_watch_plain_lines_when_piped(leak: LabNet) -> None:
    proc = tcpdoctor("watch", "--netns", leak.name, "--interval", "0.2", "--count", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    samples = [x for x in lines if " total=" in x]
    assert len(samples) == 3
    assert all("CLOSE_WAIT=200" in x and "findings=CLOSE_WAIT_LEAK" in x for x in samples)
    assert any(x.startswith("+ CLOSE_WAIT_LEAK (warning)") for x in lines)
    assert "\x1b[" not in proc.stdout  # no terminal control sequences in a pipe


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None,
                    reason="Debian's chromium is not installed (.ci/run installs it as root)")
def test_html_report_in_headless_chromium(leak: LabNet, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    rec = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "record", "--db", str(db),
                            "--netns", leak.name, "--interval", "0.3", "--count", "12", "-q"])
    try:
        grow(leak, 2, 50, 1.0)
        assert rec.wait(timeout=60) == 0
    finally:
        if rec.poll() is None:
            rec.kill()
    page = tmp_path / "report.html"
    proc = tcpdoctor("history", "--db", str(db), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert "<script src" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")  # self-contained: nothing fetched
    shot = tmp_path / "report.png"
    base = [chromium() or "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'ud'}",
            "--enable-logging=stderr", "--v=0"]
    run = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1100,1400",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [x for x in run.stderr.splitlines() if ":CONSOLE" in x]
    assert console == [], console
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert 'data-rendered="ok"' in dom.stdout
    assert dom.stdout.count('data-series="CLOSE_WAIT"') == 1
    # What the sockets cost, charted next to the counts (issue 17).
    assert 'data-series="all sockets"' in dom.stdout
    assert 'data-series="CLOSE_WAIT sockets"' in dom.stdout
    assert 'data-finding="CLOSE_WAIT_LEAK"' in dom.stdout
    # The host-wide sockstat figure has its own chart, never the namespace's scale (issue 32).
    own = dom.stdout.split('id="memory"', 1)[1].split('id="host-memory"', 1)[0]
    host_wide = dom.stdout.split('id="host-memory"', 1)[1].split("<h2", 1)[0]
    assert 'data-series="kernel TCP (sockstat)"' in host_wide
    assert "kernel TCP" not in own
    assert "td-leaky" in dom.stdout and "198.18.0.2 CLOSE_WAIT" in dom.stdout
    keep = os.environ.get("TCPDOCTOR_ARTIFACTS")
    if keep:  # CI can keep the screenshot for a human to look at
        shutil.copy(shot, Path(keep) / "history-report.png")


def test_systemd_unit_command_and_sigterm(leak: LabNet, tmp_path: Path) -> None:
    """The unit's ExecStart runs as written (plus a test database and netns), and SIGTERM, as
    `systemctl stop` sends it, ends the recorder cleanly with every printed sample stored."""
    unit = Path(__file__).parents[2] / "contrib" / "systemd" / "tcpdoctor-record.service"
    exec_start = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart="))
    argv = exec_start.split("=", 1)[1].split()
    assert argv[0] == "/usr/local/bin/tcpdoctor" and argv[1] == "record"
    if shutil.which("systemd-analyze"):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/local/bin/tcpdoctor",
                                                 shutil.which("tcpdoctor") or sys.executable))
        check = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                               text=True, check=False)
        assert "tcpdoctor-record.service" not in check.stderr, check.stderr
    db = tmp_path / "svc.db"
    args = [a for a in argv[2:] if a != "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "record", *args, "--db",
                             str(db), "--netns", leak.name, "--interval", "0.2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    printed = [json.loads(x)["id"] for x in out.splitlines()]
    assert len(printed) >= 3
    with History(str(db)) as h:
        assert h.integrity() == "ok"
        assert [s.id for s in h.samples()][:len(printed)] == printed


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith("VmRSS:"))


def test_watch_memory_stays_flat(leak: LabNet) -> None:
    """Bounded memory over long runs: RSS after 300 samples is what it was after 60."""
    proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "watch", "--netns", leak.name,
                             "--interval", "0.05", "--count", "300", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    marks = {}
    try:
        for i, _ in enumerate(proc.stdout, 1):
            if i in (60, 290):
                marks[i] = rss_kb(proc.pid)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0 and set(marks) == {60, 290}
    growth = marks[290] - marks[60]
    print(f"watch RSS after 60 samples {marks[60]} kB, after 290 {marks[290]} kB")
    assert growth < 2048, f"RSS grew {growth} kB over 230 samples"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("sig", ["TERM", "HUP"])
def test_watch_restores_the_terminal_on_signals(leak: LabNet, sig: str) -> None:
    """`timeout 60 tcpdoctor watch`: SIGTERM (or a hang-up) leaves the alternate screen,
    shows the cursor again and gives the shell back its echo and line mode."""
    cmd = (f"{sys.executable} -m tcpdoctor watch --netns {leak.name} --interval 0.5; "
           "stty -a; echo WATCH-ENDED; sleep 30")
    tmux("kill-server")
    assert tmux("new-session", "-d", "-s", "w", "-x", "160", "-y", "50", "bash", "-c",
                cmd).returncode == 0
    try:
        assert wait_for(lambda: "CLOSE_WAIT" in tmux("capture-pane", "-p").stdout, 20)
        assert tmux("display", "-p", "-t", "w", "#{alternate_on}").stdout.strip() == "1"
        pid = int(subprocess.run(["pgrep", "-f", f"^{sys.executable} -m tcpdoctor watch"],
                                 capture_output=True, text=True).stdout.split()[0])
        os.kill(pid, getattr(signal, f"SIG{sig}"))
        assert wait_for(lambda: "WATCH-ENDED" in tmux("capture-pane", "-p").stdout, 10)
        screen = tmux("capture-pane", "-p").stdout
        assert " echo " in screen and " icanon " in screen  # stty -a: not -echo, -icanon
        assert tmux("display", "-p", "-t", "w", "#{alternate_on}").stdout.strip() == "0"
        assert tmux("display", "-p", "-t", "w", "#{cursor_flag}").stdout.strip() == "1"
    finally:
        tmux("kill-server")
