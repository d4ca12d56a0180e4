"""Issue 14: `tcpdoctor trace` on real connections in lab namespaces (root, tracefs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import MAIN_ADDR, PEER_ADDR, LabNet
from tests.conftest import live_reason, tcpdoctor
from tests.programs import TRACE_PROG as PROG

INSTANCES = "/sys/kernel/tracing/instances"
pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))



@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdtrace") as net:
        yield net


def run_in(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PROG, *args],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)


def traced(ns: str, seconds: float, load: list[list[str]], reader: str = "auto",
           meanwhile: Callable[[], None] | None = None) -> dict:  # type: ignore[type-arg]
    tracer = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "trace", "--summary",
                               "--json", "--duration", str(seconds), "--netns", ns,
                               "--reader", reader],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs, clients = [], []
    try:
        time.sleep(1.0)  # the instance is up well before the load starts
        if meanwhile is not None:
            meanwhile()
        for args in load:
            p = run_in(*args)
            if args[1] == "server":
                assert p.stdout is not None and "READY" in p.stdout.readline()
            procs.append(p)
            if args[1] == "client":
                clients.append(p)
        for p in clients:
            p.wait(timeout=seconds + 30)
        out, err = tracer.communicate(timeout=seconds + 30)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    assert tracer.returncode == 0, err
    result: dict = json.loads(out)  # type: ignore[type-arg]
    return result


def service(result: dict, name: str) -> dict:  # type: ignore[type-arg]
    found = [r for r in result["remote_services"] if r["service"] == name]
    assert found, result["remote_services"]
    return found[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("closer", ["client", "server"])
def test_summary_counts_opens_lifetimes_and_who_closes(lab: LabNet, closer: str) -> None:
    n, hold = 60, 0.05
    result = traced(lab.name, 8, [
        [lab.peer, "server", "td-tserver", PEER_ADDR, "7070", str(n), str(hold), closer],
        [lab.name, "client", "td-tclient", PEER_ADDR, "7070", str(n), str(hold), closer]])
    assert result["events_lost"] == 0 and result["reader"] == "raw"
    svc = service(result, f"{PEER_ADDR}:7070")
    assert svc["opened"] == n and svc["processes"] == {"td-tclient": n}
    assert hold * 1000 <= svc["lifetime_ms"]["p50"] <= hold * 1000 + 40
    side = "local" if closer == "client" else "remote"
    assert svc["closed_first_by"] == {side: n}
    if closer == "client":
        assert svc["closers"] == {"td-tclient": n}
    assert not result["local_ports"]  # the server's namespace is filtered out by --netns


def test_resets_received_and_sent_with_reasons(lab: LabNet) -> None:
    result = traced(lab.name, 6, [
        [lab.name, "client", "td-refused", PEER_ADDR, "7071", "5", "0", "2"],
        [lab.name, "server", "td-linger", MAIN_ADDR, "7072", "4", "0.01", "linger"],
        [lab.name, "client", "td-lclient", MAIN_ADDR, "7072", "4", "0.01", "server"]])
    assert service(result, f"{PEER_ADDR}:7071")["failed"] == {"refused": 5}
    assert {"peer": f"{PEER_ADDR}:7071", "count": 5} in result["resets_received"]
    linger = [r for r in result["resets_sent"] if r["local"] == f"{MAIN_ADDR}:7072"]
    assert sum(r["count"] for r in linger) == 4
    # The kernel's own name for it (6.18 files SO_LINGER 0 closes under TCP_STATE).
    assert {r["reason"] for r in linger} <= {"TCP_ABORT_ON_LINGER", "TCP_STATE"}


def test_dead_upstream_failed_connects_are_counted(lab: LabNet) -> None:
    # 198.19.0.0/16 is routed to the peer namespace, which drops it: SYNs go unanswered.
    result = traced(lab.name, 7, [
        [lab.name, "client", "td-dead", "198.19.0.9", "5432", "3", "0", "1"]])
    assert service(result, "198.19.0.9:5432")["failed"] == {"timeout": 3}


def test_check_trace_names_the_client_behind_time_wait(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["time-wait-client"]
    scenarios.build(lab, sc, sc.default_n)
    check = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "check", "--json", "--netns",
                              lab.name, "--trace", "4", "--interval", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    scenarios._tw_client_load(lab, 500)  # the client keeps opening while traced
    out, err = check.communicate(timeout=60)
    assert check.returncode in (1, 2), err
    report = json.loads(out)
    found = {f["id"]: f for f in report["findings"]}
    client = found["TIME_WAIT_CLIENT_SHORT"]
    assert "Traced: td-client opens" in client["summary"]
    assert client["evidence"]["traced_opener"].startswith("td-client opens")
    assert "RESET_STORM" not in [s["id"] for s in report["rules_skipped"]]


def test_reset_storm_is_skipped_without_trace() -> None:
    report = json.loads(tcpdoctor("check", "--json", "--interval", "0").stdout)
    # root is not told to become root
    assert {"id": "RESET_STORM", "reason": "needs the kernel's tracepoints: run "
            "`check --trace SECONDS`"} in report["rules_skipped"]


def has_instance(pid: int) -> bool:
    """Whether the tracing instance of the tcpdoctor this test started as `pid` exists
    (other tcpdoctors on the host may hold instances of their own: not looked at)."""
    return any(name.startswith(f"tcpdoctor-{pid}-") for name in os.listdir(INSTANCES))


def run_to_end(*args: str) -> tuple[int, int]:
    """Run tcpdoctor to its end; (exit code, pid), so that its instance can be looked up."""
    proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.wait(timeout=120), proc.pid


def test_no_instance_left_after_end_sigterm_and_sigkill() -> None:
    code, pid = run_to_end("trace", "--summary", "--duration", "0.5")
    assert code == 0 and not has_instance(pid)
    killed = []
    for sig, left in ((signal.SIGTERM, False), (signal.SIGKILL, True)):
        proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "trace"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not has_instance(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert has_instance(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=20)
        assert has_instance(proc.pid) == left
        killed.append(proc.pid)
    # The next start removes what the killed one left behind.
    code, pid = run_to_end("trace", "--summary", "--duration", "0.2")
    assert code == 0 and not has_instance(pid) and not has_instance(killed[-1])


def test_a_tracer_in_another_pid_namespace_leaves_ours_alone(lab: LabNet) -> None:
    """Another tcpdoctor, in a PID namespace where our pid does not exist and a /run of its
    own, starts and ends while ours runs: ours is not switched off and counts everything."""
    def other() -> None:
        script = 'mount -t tmpfs tmpfs /run && exec "$0" -m tcpdoctor trace --summary ' \
                 '--json --duration 1'
        proc = subprocess.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "sh",
                               "-c", script, sys.executable], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr

    n = 40
    result = traced(lab.name, 8, [
        [lab.peer, "server", "td-tserver", PEER_ADDR, "7071", str(n), "0.02", "client"],
        [lab.name, "client", "td-tclient", PEER_ADDR, "7071", str(n), "0.02", "client"]],
        meanwhile=other)
    assert "note" not in result, result.get("note")
    assert service(result, f"{PEER_ADDR}:7071")["opened"] == n


def test_not_root_is_exit_3() -> None:
    from tests.conftest import tcpdoctor_as_nobody

    proc = tcpdoctor_as_nobody("trace", "--summary", "--duration", "1")
    assert proc.returncode == 3 and "needs root" in proc.stderr


def test_text_pipe_reader_follows_the_same_connections(lab: LabNet) -> None:
    n, hold = 40, 0.05
    result = traced(lab.name, 7, [
        [lab.peer, "server", "td-tserver", PEER_ADDR, "7073", str(n), str(hold), "client"],
        [lab.name, "client", "td-tclient", PEER_ADDR, "7073", str(n), str(hold), "client"]],
        reader="text")
    assert result["reader"] == "text" and result["events_lost"] == 0
    svc = service(result, f"{PEER_ADDR}:7073")
    assert svc["opened"] == n and svc["processes"] == {"td-tclient": n}
    assert svc["closed_first_by"] == {"local": n}
    assert hold * 1000 <= svc["lifetime_ms"]["p50"] <= hold * 1000 + 40


def check_traced(lab: LabNet, scenario: str, load: Callable[[], object],
                 seconds: float = 4) -> dict:  # type: ignore[type-arg]
    """check --trace on a lab scenario, with load made while it traces: finding by id."""
    sc = scenarios.SCENARIOS[scenario]
    scenarios.build(lab, sc, sc.default_n)
    check = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "check", "--json", "--netns",
                              lab.name, "--trace", str(seconds), "--interval", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        load()
        out, err = check.communicate(timeout=60)
    finally:
        if check.poll() is None:
            check.kill()
            check.wait()
    assert check.returncode in (1, 2), err
    return {f["id"]: f for f in json.loads(out)["findings"]}


def test_check_trace_names_the_server_that_closes_first(lab: LabNet) -> None:
    found = check_traced(lab, "time-wait-server",
                         lambda: scenarios._tw_server_load(lab, 300))
    server = found["TIME_WAIT_SERVER_CLOSE"]
    assert "Traced: td-web closed first 300 of 300 connections on port 8080" in \
        server["summary"], server["summary"]
    assert server["evidence"]["traced_closer"].startswith("td-web closed first")


def test_check_trace_counts_failed_connects_to_a_dead_upstream(lab: LabNet) -> None:
    procs: list[subprocess.Popen[str]] = []
    try:
        # A client that retries with a 0.5 s connect timeout, 4 times, while traced.
        found = check_traced(lab, "dead-upstream", lambda: procs.append(run_in(
            lab.name, "client", "td-retry", "198.19.0.10", "5432", "4", "0", "0.5")))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    evidence = found["UPSTREAM_UNREACHABLE"]["evidence"]["traced_connects"]
    assert re.match(r"td-retry started [\d.]+ connects/s to 198\.19\.0\.10:5432; "
                    r"[\d.]+/s failed \(timeout 4\)", evidence), evidence


def test_watch_trace_names_the_client_in_each_sample(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["time-wait-client"]
    scenarios.build(lab, sc, sc.default_n)
    watch = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "watch", "--trace", "--json",
                              "--netns", lab.name, "--interval", "2", "--count", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        scenarios._tw_client_load(lab, 500)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 3
    traced_lines = [x for x in lines if "Traced: td-client opens"
                    in x["summaries"].get("TIME_WAIT_CLIENT_SHORT", "")]
    assert traced_lines, [x["summaries"] for x in lines]
    assert not has_instance(watch.pid)


def test_text_pipe_is_the_fallback_and_says_so(tmp_path: Path) -> None:
    """A kernel whose raw buffers cannot be ordered (no mono trace clock): a copy of this
    kernel's tcp_send_reset format in a tree whose trace_clock lacks mono."""
    import shutil

    from tcpdoctor.errors import TcpDoctorError
    from tcpdoctor.sources.tracefs.run import Trace
    from tcpdoctor.sources.tracefs.text import TextReader

    root = Path(tmp_path)
    fmt = root / "events" / "tcp" / "tcp_send_reset"
    fmt.mkdir(parents=True)
    shutil.copy("/sys/kernel/tracing/events/tcp/tcp_send_reset/format", fmt / "format")
    (root / "trace_clock").write_text("[local] global counter\n")
    (root / "trace_pipe").write_text("")
    auto = Trace(1.0)
    reader = auto._open(str(root))
    assert isinstance(reader, TextReader) and auto.reader == "text"
    assert "text pipe" in auto.note and "mono" in auto.note
    reader.close()
    with pytest.raises(TcpDoctorError, match="raw ring buffers"):
        Trace(1.0, reader="raw")._open(str(root))
