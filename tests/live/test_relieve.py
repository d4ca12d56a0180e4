"""`relieve` on real sockets, `ss` as the oracle: a dry run changes nothing; --apply ends a
leaking server's CLOSE_WAIT gracefully (its clients read end of stream, the server keeps
running with its descriptors) or with --reset (the clients read ECONNRESET); TIME_WAIT
towards one destination removed exactly; listeners and replaced sockets never touched; the
report exists before the first socket is; --max and --rate hold; without root, refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import MAIN_ADDR, PEER_ADDR, LabNet
from tests.conftest import in_netns, live_reason, tcpdoctor, tcpdoctor_as_nobody, wait_for
from tests.programs import HALF_CLOSE_PROG

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))
N = 200


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdrelief") as net:
        yield net


def count(ns: str, *filt: str) -> int:
    return len(in_netns(ns, "ss", "-Htan", *filt).stdout.splitlines())


class Clients:
    """HALF_CLOSE_PROG in the peer namespace: N half-closed connections to the server."""

    def __init__(self, lab: LabNet, n: int) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.peer, sys.executable, "-c", HALF_CLOSE_PROG, MAIN_ADDR,
             "8080", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "READY"

    def outcome(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        seen: dict[str, int] = json.loads(self.proc.stdout.readline())
        self.proc.wait(timeout=30)
        return seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def leak(lab: LabNet) -> Iterator[tuple[LabNet, Clients]]:
    server = lab.spawn(lab.name, "td-leaky", [{"kind": "listen", "addr": MAIN_ADDR,
                                                "port": 8080}])
    clients = Clients(lab, N)
    assert wait_for(lambda: count(lab.name, "state", "close-wait") == N, 10)
    try:
        yield lab, clients
    finally:
        clients.stop()
    assert server.proc.poll() is None


def relieve(lab: LabNet, *args: str) -> subprocess.CompletedProcess[str]:
    return tcpdoctor("relieve", "CLOSE_WAIT_LEAK", "--netns", lab.name, *args)


def test_dry_run_changes_nothing(leak: tuple[LabNet, Clients]) -> None:
    lab, _ = leak
    proc = relieve(lab, "--json")
    plan = json.loads(proc.stdout)
    assert proc.returncode == 0 and plan["dry_run"] and plan["sockets"] == N
    assert plan["by_method"] == {"graceful": N, "reset": 0}
    assert [g["process"] for g in plan["groups"]] == ["td-leaky"]
    assert count(lab.name, "state", "close-wait") == N
    assert "--apply" in relieve(lab).stdout


def test_apply_ends_the_leak_gracefully(leak: tuple[LabNet, Clients], tmp_path: Path) -> None:
    lab, clients = leak
    server = next(w for w in lab.workers if w.name == "td-leaky")
    report = tmp_path / "r.json"
    proc = relieve(lab, "--apply", "--json", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["relieved"] == N and result["failed"] == 0 and result["still_there"] == 0
    assert count(lab.name, "state", "close-wait") == 0
    assert clients.outcome() == {"eof": N, "reset": 0, "timeout": 0, "data": 0}
    # The server still runs and still holds its descriptors: nothing was closed under it.
    assert server.proc.poll() is None
    fds = os.listdir(f"/proc/{_pid_of(lab, 'td-leaky')}/fd")
    assert result["owner_fds_open"] == N and len(fds) >= N
    saved = json.loads(report.read_text())
    assert len(saved["sockets"]) == N and {s["method"] for s in saved["sockets"]} == {"graceful"}


def test_reset_gives_the_clients_a_reset(leak: tuple[LabNet, Clients], tmp_path: Path) -> None:
    lab, clients = leak
    proc = relieve(lab, "--apply", "--reset", "--json", "--report", "/dev/null/x")
    assert proc.returncode == 3  # the report cannot be written: nothing is done
    assert count(lab.name, "state", "close-wait") == N
    proc = relieve(lab, "--apply", "--reset", "--json", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"]["relieved"] == N
    assert count(lab.name, "state", "close-wait") == 0
    assert clients.outcome()["reset"] == N


def test_the_report_exists_before_the_first_socket_is_touched(
        leak: tuple[LabNet, Clients], tmp_path: Path) -> None:
    lab, _ = leak
    report = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "tcpdoctor", "relieve", "CLOSE_WAIT_LEAK", "--netns", lab.name,
           "--apply", "--rate", "5", "--max", "10", "--report", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(report.exists, 30, 0.01)
        os.kill(proc.pid, signal.SIGSTOP)  # stopped between the report and the first socket
        assert count(lab.name, "state", "close-wait") == N
        assert len(json.loads(report.read_text())["sockets"]) == 10
        os.kill(proc.pid, signal.SIGCONT)
        started = time.monotonic()
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - started >= 1.5  # 10 sockets at 5 a second
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count(lab.name, "state", "close-wait") == N - 10  # --max


REPLACE_PROG = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.connect((sys.argv[3], 8080))
print("READY", flush=True)
time.sleep(60)
"""


def test_a_socket_replaced_after_the_plan_is_vanished_and_untouched(
        leak: tuple[LabNet, Clients], tmp_path: Path) -> None:
    lab, _ = leak
    report = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "tcpdoctor", "relieve", "CLOSE_WAIT_LEAK", "--netns", lab.name,
           "--apply", "--reset", "--rate", "2", "--max", "3", "--report", str(report), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    newcomer = None
    try:
        assert wait_for(report.exists, 30, 0.01)
        os.kill(proc.pid, signal.SIGSTOP)
        first = json.loads(report.read_text())["sockets"][0]
        port = first["remote"].rsplit(":", 1)[1]
        # The planned socket ends, and a new connection takes its exact 4-tuple.
        in_netns(lab.name, "ss", "-K", "-tan", "dport", f"= :{port}")
        newcomer = subprocess.Popen(
            ["ip", "netns", "exec", lab.peer, sys.executable, "-c", REPLACE_PROG, PEER_ADDR,
             port, MAIN_ADDR], stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert newcomer.stdout is not None and newcomer.stdout.readline().strip() == "READY"
        assert wait_for(lambda: count(lab.name, "state", "established", "dport",
                                      f"= :{port}") == 1, 5)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
        result = json.loads(out)["result"]
        assert proc.returncode == 1, err  # one vanished
        assert result["vanished"] == 1 and result["relieved"] == 2 and result["failed"] == 0
        assert count(lab.name, "state", "established", "dport", f"= :{port}") == 1  # untouched
    finally:
        if proc.poll() is None:
            proc.kill()
        if newcomer is not None:
            os.killpg(newcomer.pid, signal.SIGKILL)
            newcomer.wait(timeout=10)


def test_a_listener_is_refused_and_still_accepts(leak: tuple[LabNet, Clients]) -> None:
    lab, _ = leak
    proc = tcpdoctor("relieve", "--netns", lab.name, "--state", "listen", "--apply", "--json")
    plan = json.loads(proc.stdout)
    assert proc.returncode == 0 and plan["sockets"] == 0
    assert plan["refused"][0]["state"] == "LISTEN"
    assert count(lab.name, "state", "listening") == 1
    assert in_netns(lab.peer, sys.executable, "-c", "import socket; socket.create_connection("
                    f"('{MAIN_ADDR}', 8080), timeout=5)").returncode == 0


def test_unprivileged_is_refused_and_changes_nothing(leak: tuple[LabNet, Clients]) -> None:
    lab, _ = leak
    path = f"/proc/{_pid_of(lab, 'td-leaky')}/ns/net"
    proc = tcpdoctor_as_nobody("relieve", "--netns", path, "--state", "close-wait", "--apply")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "nothing was changed" in proc.stderr or "permission" in proc.stderr.lower()
    assert count(lab.name, "state", "close-wait") == N


def test_time_wait_towards_one_destination_is_removed_exactly(lab: LabNet,
                                                             tmp_path: Path) -> None:
    sc = scenarios.SCENARIOS["time-wait-client"]
    scenarios.build(lab, sc, 1000)  # TIME_WAIT towards the peer's :8080
    lab.spawn(lab.peer, "td-other", [{"kind": "listen", "addr": PEER_ADDR, "port": 9090,
                                      "accept": "close-on-eof"}])
    lab.spawn(lab.name, "td-client2", [{"kind": "connect", "addr": PEER_ADDR, "port": 9090,
                                        "n": 50, "then": "close"}])
    to_other = ("state", "time-wait", "dport", "9090")
    assert wait_for(lambda: count(lab.name, *to_other) == 50, 10)
    target = count(lab.name, "state", "time-wait", "dport", "8080")
    proc = tcpdoctor("relieve", "--netns", lab.name, "--state", "time-wait", "--port", "8080",
                     "--ip", PEER_ADDR, "--apply", "--json", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert abs(result["relieved"] - target) <= 0.02 * target  # TIME_WAIT renews meanwhile
    assert count(lab.name, "state", "time-wait", "dport", "8080") <= 0.02 * target
    assert count(lab.name, *to_other) == 50  # another destination: untouched


def test_time_wait_is_refused_without_a_reason_to_end_it(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["time-wait-client"]
    scenarios.build(lab, sc, 300)
    proc = tcpdoctor("relieve", "--netns", lab.name, "--port", "8080", "--json")
    plan = json.loads(proc.stdout)
    assert plan["refused"] and plan["refused"][0]["state"] == "TIME_WAIT"
    assert "TIME_WAIT" not in [g["state"] for g in plan["groups"]]


def _pid_of(lab: LabNet, name: str) -> int:
    out = in_netns(lab.name, "ss", "-Htlnp", "sport", "8080").stdout
    return int(out.split("pid=")[1].split(",")[0])
