"""Issue 5's bounded memory: a folded (weighted) snapshot must say what the full one says.

Folding keeps one row per distinct kind of socket with a weight; these tests compare the
report of every rule, the state counts and the top groups on both, on the rule boundary
cases of test_rules.py, on random populations (hypothesis) and through `analyze` on text
dumps streamed in small blocks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.groups import group
from tcpdoctor.model.columns import WEIGHT
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import DEFAULT_PORT_RANGE
from tcpdoctor.sources import offline
from tcpdoctor.sources.offline import loader as offline_load
from tcpdoctor.sources.offline import reduce
from tcpdoctor.sources.offline.accumulate import Accumulator
from tests import synth
from tests.conftest import tcpdoctor
from tests.unit.test_rules import CASES, kernel


def folded(ctx: Context) -> Context:
    snap = ctx.snap
    ports = ctx.kernel.sysctl_ints("net.ipv4.ip_local_port_range") if ctx.kernel else None
    port_range = (ports[0], ports[1]) if ports else DEFAULT_PORT_RANGE
    cols = reduce.combine(reduce.fold(dict(snap.columns), snap.listening_ports(), port_range))
    red = Snapshot(cols, snap.source, process_names=dict(snap.process_names))
    return Context(red, ctx.kernel, ctx.deltas, ctx.interval, ctx.fd_counts, ctx.nofile,
                   trace=ctx.trace, conntrack=ctx.conntrack)


@pytest.mark.parametrize(("rule_id", "make", "points"), CASES, ids=[c[0] for c in CASES])
def test_boundary_cases_identical_when_folded(rule_id: str, make: Any, points: Any) -> None:
    for n, _ in points:
        ctx = make(n)
        small = folded(ctx)
        assert small.snap.count() == len(ctx.snap)
        full = [f.as_json() for f in run_rules(ctx).findings]
        assert [f.as_json() for f in run_rules(small).findings] == full, (rule_id, n)


STATES = ["ESTABLISHED", "TIME_WAIT", "CLOSE_WAIT", "SYN_RECV", "SYN_SENT", "FIN_WAIT2",
          "LAST_ACK"]
population = st.lists(st.fixed_dictionaries({
    "n": st.integers(1, 400),
    "state": st.sampled_from(STATES),
    "server": st.booleans(),  # on a listening port (else a client socket)
    "service": st.sampled_from([80, 443, 5432, 40500]),  # 40500: a service inside the range
    "remotes": st.integers(1, 300),
    "pid": st.sampled_from([-1, 11, 12]),
    "rqueue": st.sampled_from([0, 1, 5]),
}), min_size=1, max_size=6)


def build(specs: list[dict[str, Any]]) -> Context:
    rows: list[dict[str, Any]] = [
        {"state": "LISTEN", "sport": p, "dport": 0, "raddr": "0.0.0.0", "pid": 11}
        for p in (80, 443, 40500)]
    for s in specs:
        r = s["remotes"]
        if s["server"]:
            rows.append({"n": s["n"], "state": s["state"], "sport": s["service"],
                         "dport": lambda i: 1024 + i * 7 % 60000, "pid": s["pid"],
                         "raddr": lambda i, r=r: f"198.51.{i % r // 250}.{i % r % 250}",
                         "rqueue": s["rqueue"]})
        else:
            rows.append({"n": s["n"], "state": s["state"], "dport": s["service"],
                         "sport": lambda i: 32768 + i * 13 % 28000, "pid": s["pid"],
                         "raddr": lambda i, r=r: f"203.0.{i % r // 250}.{i % r % 250}",
                         "rqueue": s["rqueue"]})
    snap = synth.snapshot(*rows, names={11: "web", 12: "worker"})
    return Context(snap, kernel(net__ipv4__ip_local_port_range="32768 60999"))


@settings(max_examples=60, deadline=None)
@given(population)
def test_random_populations_same_report(specs: list[dict[str, Any]]) -> None:
    ctx = build(specs)
    small = folded(ctx)
    assert small.snap.summary() == ctx.snap.summary()
    full = run_rules(ctx).findings
    red = run_rules(small).findings
    assert [(f.id, f.severity) for f in red] == [(f.id, f.severity) for f in full]
    for a, b in zip(full, red, strict=True):
        assert b.processes == a.processes, a.id
        numbers = {k: v for k, v in a.evidence.items() if isinstance(v, int | float)}
        assert {k: b.evidence[k] for k in numbers} == numbers, a.id
    for by in (["remote-ip", "state"], ["service-port"], ["process", "state"]):
        assert group(small.snap, by, limit=None).groups == group(ctx.snap, by,
                                                                 limit=None).groups


NETSTAT = """Active Internet connections (servers and established)
Proto Recv-Q Send-Q Local Address           Foreign Address         State
tcp        0      0 0.0.0.0:80              0.0.0.0:*               LISTEN
tcp        0      0 0.0.0.0:8080            0.0.0.0:*               LISTEN
"""


def big_netstat(path: Path, n: int) -> dict[str, int]:
    """n sockets: TIME_WAIT on :80 from 300 clients, CLOSE_WAIT on :8080, client TIME_WAIT
    to one backend (ephemeral local ports), one LISTEN added at the very end."""
    lines = [NETSTAT]
    counts = {"LISTEN": 3, "TIME_WAIT": 0, "CLOSE_WAIT": 0}
    for i in range(n):
        if i % 3 == 0:
            lines.append(f"tcp        0      0 10.0.0.5:80             198.51.100.{i % 300 // 2}"
                         f":{1024 + i % 60000:<9} TIME_WAIT\n")
            counts["TIME_WAIT"] += 1
        elif i % 3 == 1:
            lines.append(f"tcp        1      0 10.0.0.5:8080           10.0.2.{i % 50}:"
                         f"{2000 + i % 50000:<13} CLOSE_WAIT\n")
            counts["CLOSE_WAIT"] += 1
        else:
            lines.append(f"tcp        0      0 10.0.0.5:{32768 + i % 28000:<14} 10.0.1.1:5432"
                         "           TIME_WAIT\n")
            counts["TIME_WAIT"] += 1
    lines.append("tcp        0      0 0.0.0.0:9000            0.0.0.0:*               LISTEN\n")
    path.write_text("".join(lines))
    return counts


def test_analyze_streams_and_folds_big_text(tmp_path: Path) -> None:
    path = tmp_path / "netstat.txt"
    counts = big_netstat(path, 30_000)
    exact = json.loads(tcpdoctor("analyze", "--json", str(path)).stdout)
    proc = tcpdoctor("analyze", "--json", "--reduce-above", "1000", str(path))
    assert proc.returncode == 2, proc.stderr
    small = json.loads(proc.stdout)
    assert {k: v for k, v in small["states"].items() if v} == counts
    assert small["states"] == exact["states"] and small["total"] == exact["total"]
    assert [(f["id"], f["severity"]) for f in small["findings"]] == \
        [(f["id"], f["severity"]) for f in exact["findings"]]
    assert any("distinct kinds" in n for n in small["notes"])
    assert not any("distinct kinds" in n for n in exact["notes"])
    piped = tcpdoctor_stdin(path, "--reduce-above", "1000")
    assert piped["states"] == exact["states"]
    assert any("from a pipe" in n for n in piped["notes"])


def tcpdoctor_stdin(path: Path, *args: str) -> Any:
    import subprocess
    import sys

    with open(path, "rb") as fh:
        proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "analyze", "--json", *args,
                               "-"], stdin=fh, capture_output=True, text=True, check=False)
    return json.loads(proc.stdout)


def test_blocks_concatenate_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small blocks (many flushes) give the very same columns as one block."""
    path = tmp_path / "netstat.txt"
    big_netstat(path, 5_000)
    whole, _, _ = offline.load(str(path))
    monkeypatch.setattr(offline_load, "BLOCK_ROWS", 97)
    seen: list[int] = []
    add = Accumulator.add
    monkeypatch.setattr(Accumulator, "add",
                        lambda self, cols: (seen.append(len(cols["state"])), add(self, cols)))
    pieces, _, _ = offline.load(str(path))
    assert len(seen) > 20  # many blocks (of about 97 x 100 bytes of lines)
    assert set(pieces.columns) == set(whole.columns) and WEIGHT not in whole.columns
    for name, col in whole.columns.items():
        assert np.array_equal(np.asarray(pieces.columns[name]), np.asarray(col)), name
