"""Issue 33: the TCP iterator gives, socket by socket, what inet_diag gives: every column of
the netlink reader (addresses, ports, timers, queues, owners' inodes, cookies, tcp_info's
idle times, skmem) on real sockets in every state the lab makes, IPv4 and IPv6; `check`
reads through it as root and reports the same findings as through netlink."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tcpdoctor.model.columns import BASE_COLUMNS, ID_COLUMNS
from tcpdoctor.model.tcp import AF_INET, AF_INET6, STATE_NAMES
from tcpdoctor.sources import bpf_tcp, netlink
from tcpdoctor.sources.netns import run_in
from tests.conftest import POPULATION, live, tcpdoctor

pytestmark = live

WANT = frozenset(BASE_COLUMNS) | frozenset(ID_COLUMNS)
KEY = ("state", "sport", "dport", "laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo")
# Columns that move with the clock between the two reads: compared within the time between.
CLOCKED = ("expires", "lastsnd", "lastrcv", "lastack")


def read(ns: str, fast: bool) -> dict[tuple[int, ...], dict[str, int]]:
    if fast:
        cols = run_in(ns, lambda: bpf_tcp.read_sockets(WANT, True, (AF_INET, AF_INET6)))
        assert cols is not None, "this kernel (root, BTF, bpf_iter_tcp) runs the TCP iterator"
    else:
        cols = run_in(ns, lambda: netlink.read_sockets(WANT, info=True, parallel=False))
    out: dict[tuple[int, ...], dict[str, int]] = {}
    for i in range(cols["state"].shape[0]):
        key = tuple(int(cols[k][i]) for k in KEY)
        assert key not in out, f"socket {key} read twice"
        out[key] = {k: int(v[i]) for k, v in cols.items()}
    return out


def assert_same(ns: str) -> dict[str, int]:
    """Netlink, the iterator, netlink again: each of the iterator's values lies between
    the two netlink readings of the same socket (equal to both where nothing moved; within
    a jiffy or two of the clocks' range; a retransmission between them moves its count
    and timer)."""
    before, got, after = read(ns, False), read(ns, True), read(ns, False)
    assert before.keys() == got.keys() == after.keys()
    for key, mine in got.items():
        b, a = before[key], after[key]
        # A timer fired or was re-armed between the readings (a probe sent, an ACK that
        # restarts the retransmit timer): its deadline may be anything up to the later one.
        rearmed = (b["timer"], b["retrans"]) != (a["timer"], a["retrans"]) or \
            a["expires"] > b["expires"] + 20
        for name, value in mine.items():
            slack = 20 if name in CLOCKED else 0
            lo = min(b[name], a[name]) - slack
            hi = max(b[name], a[name]) + slack
            if name == "expires" and rearmed:
                lo = 0
            assert lo <= value <= hi, (STATE_NAMES[key[0] - 1], name, mine, b, a)
    counts: dict[str, int] = {}
    for key in got:
        counts[STATE_NAMES[key[0] - 1]] = counts.get(STATE_NAMES[key[0] - 1], 0) + 1
    return counts


def test_iterator_equals_netlink_on_the_mixed_population(population: LabNet) -> None:
    """ESTABLISHED, CLOSE_WAIT, FIN_WAIT2, SYN_SENT (retransmit timers), TIME_WAIT (time-wait
    sockets), LISTEN; IPv4 and IPv6."""
    assert assert_same(population.name) == POPULATION


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdbpf") as net:
        yield net


@pytest.mark.parametrize("name,state", [("syn-flood", "SYN_RECV"),
                                        ("stalled-reader", "ESTABLISHED"),
                                        ("peer-not-reading", "ESTABLISHED")])
def test_iterator_equals_netlink_on_requests_and_full_queues(lab: LabNet, name: str,
                                                             state: str) -> None:
    """Request sockets (SYN_RECV: their own timer and retransmissions), unread receive
    queues, full send queues facing zero windows (the probe timer)."""
    sc = scenarios.SCENARIOS[name]
    scenarios.build(lab, sc, sc.default_n)
    counts = assert_same(lab.name)
    assert counts.get(state, 0) >= sc.default_n // 2


def test_check_reads_through_the_iterator_and_finds_what_netlink_finds(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["close-wait"]
    scenarios.build(lab, sc, sc.default_n)

    def findings(*extra: str) -> tuple[str, dict[str, tuple[str, list[str]]]]:
        proc = tcpdoctor("check", "--netns", lab.name, "--json", "--interval", "0", *extra)
        data = json.loads(proc.stdout)
        return data["source"], {f["id"]: (f["severity"], [p["name"] for p in f["processes"]])
                                for f in data["findings"]}

    fast_source, fast = findings()
    slow_source, slow = findings("--source", "netlink")
    assert (fast_source, slow_source) == ("bpf", "netlink")
    assert fast == slow and fast[str(sc.finding)] == (sc.severity, [sc.process])
