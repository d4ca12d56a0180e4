"""Every rule's thresholds at the boundary, on synthetic columns (issue 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.registry import REGISTRY
from tcpdoctor.cli.options import load_thresholds
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.model.kernel_state import KernelState
from tests import synth

SPEC_IDS = {
    "TIME_WAIT_SERVER_CLOSE", "TIME_WAIT_CLIENT_SHORT", "TW_BUCKET_OVERFLOW", "CLOSE_WAIT_LEAK",
    "FIN_WAIT2_BUILDUP", "LAST_ACK_BUILDUP", "SYN_FLOOD", "ACCEPT_QUEUE_OVERFLOW",
    "OUTBOUND_SCAN", "UPSTREAM_UNREACHABLE", "EPHEMERAL_PORT_EXHAUSTION", "PEER_CONCENTRATION",
    "IDLE_ESTABLISHED", "ORPHAN_PRESSURE", "TCP_MEMORY_PRESSURE", "CONNTRACK_FULL", "FD_LIMIT",
    "RESET_STORM",
    "UNSAFE_SYSCTL", "SOCKET_MEMORY_HOG", "STALLED_READER", "PEER_NOT_READING",
    "CONNTRACK_GHOSTS", "SNAT_PORT_EXHAUSTION",
}
SYSCTLS = {"net.ipv4.tcp_max_tw_buckets": "131072", "net.ipv4.tcp_max_orphans": "131072",
           "net.ipv4.tcp_mem": "1000 2000 3000", "net.ipv4.ip_local_port_range": "32768 60999",
           "net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_tw_reuse": "2",
           "net.ipv4.tcp_ehash_entries": "262144", "net.netfilter.nf_conntrack_max": "1000",
           "net.netfilter.nf_conntrack_count": "0", "net.core.somaxconn": "4096"}


def kernel(sockstat: dict[str, int] | None = None, **sysctls: str) -> KernelState:
    values = dict(SYSCTLS)
    values.update({k.replace("__", "."): v for k, v in sysctls.items()})
    return KernelState(0.0, sockstat={"TCP": sockstat or {}}, sysctls=dict(values))


def severity(rule_id: str, ctx: Context) -> str | None:
    report = run_rules(ctx, only={rule_id})
    return report.findings[0].severity if report.findings else None


LISTEN_8080 = {"state": "LISTEN", "sport": 8080, "dport": 0, "raddr": "0.0.0.0", "pid": 7}
Case = tuple[str, Callable[[int], Context], list[tuple[int, str | None]]]

CASES: list[Case] = [
    ("TIME_WAIT_SERVER_CLOSE", lambda n: Context(synth.snapshot(
        LISTEN_8080, {"n": n, "state": "TIME_WAIT", "sport": 8080, "dport": 50000}),
        kernel()), [(1999, None), (2000, "warning"), (65536, "critical")]),
    ("TIME_WAIT_CLIENT_SHORT", lambda n: Context(synth.snapshot(
        {"n": n, "state": "TIME_WAIT", "sport": lambda i: 40000 + i % 4000, "dport": 443}),
        kernel(net__ipv4__ip_local_port_range="40000 45999")),
        [(1999, None), (2000, "warning"), (3000, "critical")]),
    ("TW_BUCKET_OVERFLOW", lambda n: Context(synth.snapshot(), kernel({"tw": n}, **{
        "net__ipv4__tcp_max_tw_buckets": "1000"})),
        [(799, None), (800, "warning"), (950, "critical")]),
    ("CLOSE_WAIT_LEAK", lambda n: Context(synth.snapshot(
        {"n": n, "state": "CLOSE_WAIT", "sport": 8080}), kernel()),
        [(99, None), (100, "warning"), (1000, "critical")]),
    ("FIN_WAIT2_BUILDUP", lambda n: Context(synth.snapshot(
        {"n": n, "state": "FIN_WAIT2"}), kernel()),
        [(499, None), (500, "warning"), (5000, "critical")]),
    ("LAST_ACK_BUILDUP", lambda n: Context(synth.snapshot(
        {"n": n, "state": "LAST_ACK"}), kernel()),
        [(499, None), (500, "warning"), (5000, "critical")]),
    ("SYN_FLOOD", lambda n: Context(synth.snapshot(
        {"n": n, "state": "SYN_RECV", "sport": 80, "raddr": lambda i: f"198.51.100.{i % 250}"}),
        kernel()), [(255, None), (256, "warning"), (2048, "critical")]),
    ("ACCEPT_QUEUE_OVERFLOW", lambda n: Context(synth.snapshot(
        {**LISTEN_8080, "rqueue": n, "wqueue": 16}), kernel()),
        [(15, None), (16, "critical")]),
    ("OUTBOUND_SCAN", lambda n: Context(synth.snapshot(
        {"n": 60, "state": "SYN_SENT", "raddr": lambda i: f"203.0.113.{i % n}"}), kernel()),
        [(49, None), (50, "critical")]),
    ("UPSTREAM_UNREACHABLE", lambda n: Context(synth.snapshot(
        {"n": n, "state": "SYN_SENT", "dport": 5432}), kernel()),
        [(19, None), (20, "warning"), (500, "critical")]),
    ("EPHEMERAL_PORT_EXHAUSTION", lambda n: Context(synth.snapshot(
        {"n": n, "sport": lambda i: 40000 + i}),
        kernel(net__ipv4__ip_local_port_range="40000 40999")),
        [(499, None), (500, "warning"), (800, "critical")]),
    ("PEER_CONCENTRATION", lambda n: Context(synth.snapshot(
        {"n": n, "raddr": "198.51.100.7", "state": "CLOSE_WAIT"}), kernel()),
        [(499, None), (500, "info"), (10000, "warning")]),
    ("STALLED_READER", lambda n: Context(synth.snapshot(LISTEN_8080, {
        "n": n, "sport": 8080, "rqueue": 131072, "lastrcv": 2000, "lastsnd": 2000}), kernel()),
        [(19, None), (20, "warning"), (1000, "critical")]),
    ("PEER_NOT_READING", lambda n: Context(synth.snapshot(
        {"n": n, "wqueue": 920064, "timer": 4}), kernel()),
        [(19, None), (20, "warning"), (1000, "critical")]),
    ("IDLE_ESTABLISHED", lambda n: Context(synth.snapshot(
        {"n": n, "lastrcv": 600_000, "lastsnd": 700_000}), kernel()),
        [(99, None), (100, "warning"), (10000, "critical")]),
    ("ORPHAN_PRESSURE", lambda n: Context(synth.snapshot(), kernel(
        {"orphan": n}, net__ipv4__tcp_max_orphans="1000")),
        [(249, None), (250, "warning"), (800, "critical")]),
    ("TCP_MEMORY_PRESSURE", lambda n: Context(synth.snapshot(), kernel({"mem": n})),
        [(1999, None), (2000, "warning"), (2700, "critical")]),
    ("CONNTRACK_FULL", lambda n: Context(synth.snapshot(), kernel(
        net__netfilter__nf_conntrack_count=str(n))),
        [(799, None), (800, "warning"), (950, "critical")]),
    ("FD_LIMIT", lambda n: Context(synth.snapshot({"pid": 7}, names={7: "app"}), kernel(),
                                   fd_counts={7: n}, nofile=lambda pid: 1000),
        [(799, None), (800, "warning"), (950, "critical")]),
    # n sockets with 1 MiB unread each; tcp_mem's pressure point at 200,000 pages (800 MiB).
    ("SOCKET_MEMORY_HOG", lambda n: Context(synth.snapshot(
        {"n": n, "rmem_alloc": 1 << 20, "rqueue": 1 << 20}),
        kernel(net__ipv4__tcp_mem="100000 200000 300000")),
        [(63, None), (78, None), (79, "warning"), (390, "warning"), (391, "critical")]),
    ("UNSAFE_SYSCTL", lambda n: Context(synth.snapshot(), kernel(
        net__ipv4__tcp_max_tw_buckets=str(n))),
        [(32768, None), (20000, "warning"), (5000, "critical")]),
    ("RESET_STORM", lambda n: Context(synth.snapshot(), trace={
        "seconds": 1, "resets_per_second": {"sent": n, "received": 0},
        "resets_sent": [{"reason": "NO_SOCKET", "local": "10.0.0.1:80", "count": n}],
        "resets_received": []}),
        [(99, None), (100, "warning"), (999, "warning"), (1000, "critical")]),
    # n ESTABLISHED entries from a pod whose sockets are all gone (and 50 that have theirs).
    ("CONNTRACK_GHOSTS", lambda n: conntrack_context(n, 50),
     [(99, None), (100, "warning"), (9999, "warning"), (10000, "critical")]),
    # n NAT mappings towards one destination through a 1000-port range.
    ("SNAT_PORT_EXHAUSTION", lambda n: conntrack_context(0, n, nat_range=(1, 1000)),
     [(799, None), (800, "warning"), (949, "warning"), (950, "critical")]),
]


def conntrack_context(ghosts: int, live: int, nat_range: tuple[int, int] | None = None,
                      ) -> Context:
    """A gateway's table: `ghosts` entries from 10.0.0.2 without sockets, `live` from
    10.0.0.3 with theirs, all SNATed to 203.0.113.1 towards 10.9.0.9:80."""
    import numpy as np

    from tcpdoctor.analysis import conntrack as ct
    from tcpdoctor.model.addresses import V4_MAPPED_INT
    from tcpdoctor.model.conntrack import CT_COLUMNS, ConntrackTable

    n = ghosts + live
    cols = {k: np.zeros(n, dtype=dt) for k, dt in CT_COLUMNS.items()}
    cols["ct_state"][:] = 3  # ESTABLISHED
    cols["status"][:] = 0x10 | 0x4  # source-NATed, assured
    src = np.where(np.arange(n) < ghosts, 0x0A000002, 0x0A000003)
    sport = (np.arange(n) % 60000 + 1024).astype(np.uint16)
    cols["orig_src_lo"][:] = V4_MAPPED_INT | src
    cols["orig_dst_lo"][:] = cols["reply_src_lo"][:] = V4_MAPPED_INT | 0x0A090009
    cols["reply_dst_lo"][:] = V4_MAPPED_INT | 0xCB007101
    cols["orig_sport"][:], cols["orig_dport"][:] = sport, 80
    cols["reply_sport"][:], cols["reply_dport"][:] = 80, np.arange(n) % 65000 + 1
    live_rows = np.arange(ghosts, n)
    sockets: dict[str, np.ndarray] = {
        "netns_id": np.full(live, 2, np.uint16), "state": np.ones(live, np.uint8),
        "laddr_hi": np.zeros(live, np.uint64), "raddr_hi": np.zeros(live, np.uint64),
        "laddr_lo": cols["orig_src_lo"][live_rows], "sport": sport[live_rows],
        "raddr_lo": cols["orig_dst_lo"][live_rows], "dport": np.full(live, 80, np.uint16)}
    spaces = [{"netns": "gw"}, {"netns": "pod-a"}, {"netns": "pod-b"}]
    joined = ct.join(ConntrackTable(cols, "test", "gw"), spaces,
                     [[], [V4_MAPPED_INT | 0x0A000002], [V4_MAPPED_INT | 0x0A000003]], 0, sockets)
    ranges = {-1: nat_range} if nat_range else {}
    return Context(synth.snapshot(), kernel(), conntrack={"joined": joined, "ranges": ranges,
                                                          "limits": {}})


def test_catalogue_is_complete() -> None:
    assert set(REGISTRY) == SPEC_IDS
    assert {c[0] for c in CASES} == SPEC_IDS


@pytest.mark.parametrize(("rule_id", "make", "points"), CASES, ids=[c[0] for c in CASES])
def test_threshold_boundaries(rule_id: str, make: Callable[[int], Context],
                              points: list[tuple[int, str | None]]) -> None:
    for value, expected in points:
        assert severity(rule_id, make(value)) == expected, f"{rule_id} at {value}"


def test_time_wait_rules_tell_server_from_client() -> None:
    snap = synth.snapshot(LISTEN_8080,
                          {"n": 2500, "state": "TIME_WAIT", "sport": 8080, "dport": 50000},
                          {"n": 2500, "state": "TIME_WAIT", "sport": lambda i: 33000 + i,
                           "dport": 443, "raddr": "198.51.100.9"},
                          names={7: "web"})
    report = run_rules(Context(snap, kernel()))
    by_id = {f.id: f for f in report.findings}
    server = by_id["TIME_WAIT_SERVER_CLOSE"]
    assert server.evidence["ports"] == {"8080": 2500}
    assert server.processes == [{"pid": 7, "name": "web", "count": 2500}]
    client = by_id["TIME_WAIT_CLIENT_SHORT"]
    assert client.evidence["destinations"] == {"198.51.100.9:443": 2500}
    assert client.sysctl[0]["key"] == "net.ipv4.tcp_tw_reuse"


def test_rate_counters_escalate() -> None:
    tw = Context(synth.snapshot(), kernel({"tw": 10}), deltas={"TcpExt.TCPTimeWaitOverflow": 3})
    assert severity("TW_BUCKET_OVERFLOW", tw) == "critical"
    acc = Context(synth.snapshot(LISTEN_8080), kernel(), deltas={"TcpExt.ListenOverflows": 5})
    assert severity("ACCEPT_QUEUE_OVERFLOW", acc) == "warning"
    syn = Context(synth.snapshot({"n": 300, "state": "SYN_RECV", "sport": 80}), kernel(),
                  deltas={"TcpExt.SyncookiesSent": 40})
    assert severity("SYN_FLOOD", syn) == "critical"


def test_advice_respects_kernel_facts() -> None:
    """Never recommend tcp_tw_recycle; never claim tcp_fin_timeout shortens TIME_WAIT."""
    snap = synth.snapshot(LISTEN_8080,
                          {"n": 70000, "state": "TIME_WAIT", "sport": 8080, "dport": 50000},
                          {"n": 3000, "state": "TIME_WAIT", "sport": lambda i: 33000 + i},
                          {"n": 600, "state": "FIN_WAIT2", "timer": 3, "inode": 0})
    report = run_rules(Context(snap, kernel({"tw": 73600}, net__ipv4__tcp_max_tw_buckets="5000",
                                            net__ipv4__tcp_tw_recycle="1")))
    for f in report.findings:
        for rec in f.sysctl:
            assert not (rec["key"].endswith("tcp_tw_recycle") and rec["recommended"] != 0)
            assert rec["key"] != "net.ipv4.tcp_fin_timeout" or "does not change TIME_WAIT" in \
                rec["why"]
        text = " ".join(f.actions)
        assert "tcp_fin_timeout shortens" not in text
    unsafe = next(f for f in report.findings if f.id == "UNSAFE_SYSCTL")
    keys = {r["key"]: r["recommended"] for r in unsafe.sysctl}
    assert keys["net.ipv4.tcp_tw_recycle"] == 0
    assert keys["net.ipv4.tcp_max_tw_buckets"] == 131072  # ehash / 2, never 5000 or 180000


def test_actions_start_with_the_application() -> None:
    snap = synth.snapshot({"n": 200, "state": "CLOSE_WAIT", "sport": 8080, "pid": 9},
                          names={9: "leaky"})
    f = run_rules(Context(snap, kernel())).findings[0]
    assert f.actions[0].startswith("Fix leaky")
    assert f.processes == [{"pid": 9, "name": "leaky", "count": 200}]


def test_rules_without_inputs_are_skipped_with_reason() -> None:
    report = run_rules(Context(synth.snapshot({"n": 5})))
    skipped = {s["id"]: s["reason"] for s in report.skipped}
    assert "ORPHAN_PRESSURE" in skipped and "kernel figures" in skipped["ORPHAN_PRESSURE"]
    assert "FD_LIMIT" in skipped


@pytest.mark.parametrize("override", ["NOPE.warning=1", "CLOSE_WAIT_LEAK.nope=1",
                                      "CLOSE_WAIT_LEAK.warning=abc", "CLOSE_WAIT_LEAK"])
def test_bad_threshold_overrides(override: str) -> None:
    with pytest.raises(TcpDoctorError):
        load_thresholds(None, (override,))


def test_threshold_config_file(tmp_path: Any) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[thresholds.CLOSE_WAIT_LEAK]\nwarning = 5\n")
    th = load_thresholds(str(cfg), ("CLOSE_WAIT_LEAK.critical=10",))
    ctx = Context(synth.snapshot({"n": 6, "state": "CLOSE_WAIT"}), kernel())
    assert run_rules(ctx, th, only={"CLOSE_WAIT_LEAK"}).findings[0].severity == "warning"
    cfg.write_text("[thresholds\n")
    with pytest.raises(TcpDoctorError, match="not valid TOML"):
        load_thresholds(str(cfg), ())


def test_rules_doc_is_current() -> None:
    from pathlib import Path

    from tcpdoctor.render.ruledocs import rules_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
    assert doc.read_text() == rules_markdown(), "regenerate: python -m tcpdoctor.render.ruledocs"


def test_factorize_many_wide_columns() -> None:
    import numpy as np

    from tcpdoctor.analysis.groups import factorize

    rng = np.random.default_rng(3)
    cols = [rng.integers(0, 2**63, 5000, dtype=np.uint64) for _ in range(3)]
    cols.append(np.tile(np.arange(10, dtype=np.uint16), 500))
    cols = [np.concatenate([c, c[:100]]) for c in cols]  # 100 duplicated rows
    values, inverse, counts = factorize(cols)
    assert values[0].shape[0] == 5000 and counts.sum() == 5100 and (counts <= 2).all()
    rows = list(zip(*(c.tolist() for c in cols), strict=True))
    assert sorted(set(rows)) == sorted(zip(*(v.tolist() for v in values), strict=True))
    for i in (0, 4999, 5050):
        assert tuple(v[inverse[i]] for v in values) == rows[i]


@pytest.mark.parametrize(("key", "value", "severity", "recommended"), [
    ("net.ipv4.tcp_syncookies", "0", "warning", 1),
    ("net.ipv4.tcp_abort_on_overflow", "1", "warning", 0),
    ("net.ipv4.ip_local_port_range", "600 60999", "warning", "32768 60999"),
    ("net.ipv4.tcp_tw_recycle", "1", "critical", 0),
    ("net.ipv4.tcp_max_tw_buckets", "5000", "critical", 131072),
    ("net.ipv4.tcp_timestamps", "0", "warning", 1),
])
def test_unsafe_sysctl_flags_each_harmful_running_value(key: str, value: str, severity: str,
                                                        recommended: Any) -> None:
    """Each harmful value in force is one finding entry, with the safe value to restore."""
    ctx = Context(synth.snapshot(), kernel(**{key.replace(".", "__"): value}))
    report = run_rules(ctx, only={"UNSAFE_SYSCTL"})
    assert [f.id for f in report.findings] == ["UNSAFE_SYSCTL"], key
    f = report.findings[0]
    assert f.severity == severity
    assert [(r["key"], r["recommended"]) for r in f.sysctl] == [(key, recommended)]
    assert f.title == REGISTRY["UNSAFE_SYSCTL"].title


def test_unsafe_sysctl_quiet_on_defaults() -> None:
    assert severity("UNSAFE_SYSCTL", Context(synth.snapshot(), kernel())) is None


def test_registry_refuses_a_second_rule_with_the_same_id() -> None:
    from tcpdoctor.analysis.registry import rule

    with pytest.raises(ValueError, match="registered twice"):
        rule("CLOSE_WAIT_LEAK", "again")(lambda ctx, th: None)
    assert REGISTRY["CLOSE_WAIT_LEAK"].title != "again"


def test_registry_names_every_finding() -> None:
    """Rules never restate their id or title: the registry adds the registered ones."""
    snap = synth.snapshot({"n": 150, "state": "CLOSE_WAIT"})
    f = run_rules(Context(snap, kernel()), only={"CLOSE_WAIT_LEAK"}).findings[0]
    assert (f.id, f.title) == ("CLOSE_WAIT_LEAK", REGISTRY["CLOSE_WAIT_LEAK"].title)


def test_severity_order_and_exit_codes() -> None:
    from tcpdoctor.analysis.severity import Severity, exit_code, worst

    assert sorted(["critical", "info", "warning", "ok"], key=Severity) == [
        "ok", "info", "warning", "critical"]
    assert worst(["info", "critical", "warning"]) == "critical"
    assert [exit_code(s) for s in ([], ["info"], ["warning", "info"], ["critical"])] == [
        0, 0, 1, 2]
