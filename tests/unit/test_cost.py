"""Issue 17: what the sockets cost, against `ss -tm` and /proc/slabinfo on real sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tcpdoctor.analysis.cost import by_state, cpu, priced_by_counts, socket_cost
from tcpdoctor.lab.net import LabNet
from tcpdoctor.model.columns import WEIGHT
from tcpdoctor.model.kernel_state import KernelState, deltas
from tcpdoctor.sources.kstate import parse_cpu_stat, parse_slabinfo, parse_softirqs
from tests import synth
from tests.conftest import in_netns

SKMEM = re.compile(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f(\d+),w(\d+),o(\d+)")


def slab_size(cache: str) -> int:
    """The object size /proc/slabinfo reports, read here independently of tcpdoctor."""
    for line in Path("/proc/slabinfo").read_text().splitlines():
        words = line.split()
        if words and words[0] == cache:
            return int(words[3])
    raise AssertionError(f"{cache} not in /proc/slabinfo")


def ss_skmem(ns: str) -> dict[str, int]:
    """Sums of ss -tm's skmem fields over every socket of the namespace."""
    sums = {"r": 0, "f": 0, "w": 0, "o": 0}
    for m in SKMEM.finditer(in_netns(ns, "ss", "-tanm").stdout):
        for key, value in zip(("r", "f", "w", "o"), m.groups(), strict=True):
            sums[key] += int(value)
    return sums


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdcost") as net:  # torn down even when the test fails
        yield net


def test_slabinfo_stat_and_softirqs_parsers() -> None:
    slab = parse_slabinfo(
        "slabinfo - version: 2.1\n"
        "# name            <active_objs> <num_objs> <objsize> ...\n"
        "tw_sock_TCP          192    192    256   16    1 : tunables    0    0    0\n"
        "TCP                   66    117   2368   13    8 : tunables    0    0    0\n"
        "kmalloc-64          1000   1000     64   64    1 : tunables    0    0    0\n", "t")
    assert slab == {"tw_sock_TCP": (256, 192), "TCP": (2368, 66)}
    stat = parse_cpu_stat("cpu  10 0 10 70 0 0 10 0 0 0\ncpu0 5 0 5 30 0 0 10 0 0 0\n"
                          "cpu1 5 0 5 40 0 0 0 0 0 0\nintr 1 2\n", "t")
    assert stat["cpu.softirq"] == 10 and stat["cpu.total"] == 100
    assert stat["cpu0.softirq"] == 10 and stat["cpu0.total"] == 50
    soft = parse_softirqs("      CPU0 CPU1\n  NET_TX:  3 4\n  NET_RX: 10 20\n", "t")
    assert soft == {"softirq.NET_TX": 7, "softirq.NET_RX": 30}


def test_cpu_shares_from_counter_deltas() -> None:
    before = KernelState(0.0, counters={"cpu.softirq": 0, "cpu.total": 0, "cpu0.softirq": 0,
                                        "cpu0.total": 0, "cpu1.softirq": 0, "cpu1.total": 0,
                                        "softirq.NET_RX": 0, "Tcp.RetransSegs": 0})
    after = KernelState(2.0, counters={"cpu.softirq": 20, "cpu.total": 400, "cpu0.softirq": 18,
                                       "cpu0.total": 200, "cpu1.softirq": 2, "cpu1.total": 200,
                                       "softirq.NET_RX": 5000, "Tcp.RetransSegs": 30})
    got = cpu(deltas(before, after), 2.0)
    assert got is not None
    assert got["softirq_share"] == 0.05 and got["softirq_busiest_cpu_share"] == 0.09
    assert got["net_rx_per_second"] == 2500 and got["retransmits_per_second"] == 15
    assert cpu(None, 1.0) is None


def test_objects_priced_by_kind_and_family() -> None:
    snap = synth.snapshot(
        {"n": 3, "state": "ESTABLISHED", "sport": 443, "raddr": "10.0.0.1", "inode": 7},
        {"n": 5, "state": "TIME_WAIT", "sport": 443, "raddr": "10.0.0.2", "inode": 0},
        {"n": 2, "state": "SYN_RECV", "sport": 443, "raddr": "10.0.0.3", "inode": 0},
        {"n": 4, "state": "TIME_WAIT", "sport": 443, "raddr": "2001:db8::1", "inode": 0,
         "laddr": "2001:db8::2", "family": 10})
    kernel = KernelState(0.0, slab={"TCP": (2000, 0), "tw_sock_TCP": (200, 0),
                                    "tw_sock_TCPv6": (210, 0), "request_sock_TCP": (300, 0),
                                    "sock_inode_cache": (800, 0), "filp": (100, 0)})
    sc = socket_cost(snap, kernel)
    assert sc.of()["object_bytes"] == 3 * (2000 + 900) + 5 * 200 + 2 * 300 + 4 * 210
    assert sc.of()["fds"] == 3 and sc.of()["receive_bytes"] == 0
    report_json = json.dumps(sc.of())
    assert "memory_bytes" in report_json


def test_census_priced_from_counts_equals_the_per_socket_pricing() -> None:
    """Issue 33: `states --json` prices objects from class counts, no per-socket column;
    the figures must be those of the per-socket pricing (FIN_WAIT2 with and without a
    file, both families, weighted rows of a reduced snapshot)."""
    snap = synth.snapshot(
        {"n": 3, "state": "ESTABLISHED", "sport": 443, "raddr": "10.0.0.1", "inode": 7},
        {"n": 5, "state": "TIME_WAIT", "sport": 443, "raddr": "10.0.0.2", "inode": 0},
        {"n": 2, "state": "FIN_WAIT2", "sport": 443, "raddr": "10.0.0.4", "inode": 0},
        {"n": 6, "state": "FIN_WAIT2", "sport": 443, "raddr": "10.0.0.5", "inode": 9},
        {"n": 2, "state": "SYN_RECV", "sport": 443, "raddr": "10.0.0.3", "inode": 0},
        {"n": 4, "state": "CLOSE_WAIT", "sport": 443, "raddr": "2001:db8::1", "inode": 3,
         "laddr": "2001:db8::2", "family": 10})
    kernel = KernelState(0.0, slab={"TCP": (2000, 0), "TCPv6": (2300, 0), "tw_sock_TCP": (200, 0),
                                    "request_sock_TCP": (300, 0), "sock_inode_cache": (800, 0),
                                    "filp": (100, 0)})
    for name in ("has_mem", "rmem_alloc", "wmem_queued"):  # a census reads no skmem
        snap.columns.pop(name)
    for weights in (None, [3, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1]):
        if weights is not None:
            snap.columns[WEIGHT] = np.array(weights, np.uint32)
        sc = socket_cost(snap, kernel)
        got = priced_by_counts(snap, kernel)
        assert got["total"] == sc.of() and got["by_state"] == by_state(snap, sc)
        assert got["objects_priced"] and not got["buffers_measured"]
    assert priced_by_counts(snap, None)["total"]["object_bytes"] == 0


def test_memory_and_orphan_findings_quote_what_the_sockets_hold() -> None:
    from tcpdoctor.analysis.check import run_rules
    from tcpdoctor.analysis.context import Context

    snap = synth.snapshot(
        {"n": 10, "state": "CLOSE_WAIT", "sport": 8080, "rmem_alloc": 1 << 20, "pid": 42},
        {"n": 30, "state": "FIN_WAIT1", "sport": 8080, "inode": 0, "wmem_queued": 4096},
        names={42: "java"})
    kernel = KernelState(0.0, sockstat={"TCP": {"mem": 2500, "orphan": 900}},
                         sysctls={"net.ipv4.tcp_mem": "1000 2000 3000",
                                  "net.ipv4.tcp_max_orphans": "1000"},
                         slab={"TCP": (2000, 0)})
    found = {f.id: f for f in run_rules(Context(snap, kernel)).findings}
    memory = found["TCP_MEMORY_PRESSURE"]
    assert "Socket buffers here hold" in memory.summary
    assert "receive buffers of 10 CLOSE_WAIT sockets to 192.0.2.10:443 of java (pid 42)" in (
        memory.summary)
    orphans = found["ORPHAN_PRESSURE"]
    assert "The orphans in this snapshot hold 178.6 KB" in orphans.summary
    assert orphans.evidence["cost"]["send_bytes"] == 30 * 4096
    assert orphans.evidence["cost"]["fds"] == 0
