"""`conntrack` on a NAT lab (pods behind a masquerading gateway, nftables), `conntrack -L`
in the gateway as the oracle: entry counts per state, per-pod attribution, ghosts found
exactly (N sockets gone behind a gateway that drops their RST -> N ghosts, none of the
live ones) and check reports them, `relieve --conntrack-ghosts` deletes exactly those
(a dry run first, its report before acting), a collected bundle carries the table and
analyze finds the same ghosts, SNAT ports per destination against the NAT range, the
/proc fallback equal to ctnetlink; without root, one line and no traceback."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab.natlab import SERVER_ADDR, NatLab
from tests.conftest import live_reason, tcpdoctor, tcpdoctor_as_nobody, tcpdoctor_json, wait_for
from tests.unit.test_collect import out_dir, run_script, script, shared  # noqa: F401

pytestmark = [
    pytest.mark.skipif(live_reason() is not None, reason=str(live_reason())),
    pytest.mark.skipif(shutil.which("nft") is None or shutil.which("conntrack") is None,
                       reason="needs nftables and conntrack (.ci/run installs them)"),
]
PORT = 8080


def oracle_states(lab: NatLab) -> Counter[str]:
    return Counter(line.split()[3] for line in lab.conntrack_list())


def section(lab: NatLab, *extra: str) -> dict[str, Any]:
    doc = tcpdoctor_json("conntrack", "--netns", lab.gw, "-n", "50", *extra)
    assert len(doc["tables"]) == 1
    table: dict[str, Any] = doc["tables"][0]
    return table


def serve(lab: NatLab) -> None:
    assert lab.base is not None
    lab.base.spawn(lab.srv, "td-srv", [{"kind": "listen", "addr": SERVER_ADDR, "port": PORT}])


def connect(lab: NatLab, pod: int, name: str, n: int, **extra: Any) -> None:
    assert lab.base is not None
    lab.base.spawn(lab.pod(pod), name, [{"kind": "connect", "addr": SERVER_ADDR, "port": PORT,
                                         "n": n, **extra}])


@pytest.fixture
def nat() -> Iterator[NatLab]:
    with NatLab(pods=2) as lab:
        serve(lab)
        yield lab


def test_states_and_pods_equal_the_oracle_and_ghosts_are_exact(nat: NatLab,
                                                               tmp_path: Path) -> None:
    connect(nat, 0, "td-pod0-app", 30)
    connect(nat, 1, "td-pod1-app", 20)
    assert wait_for(lambda: oracle_states(nat)["ESTABLISHED"] == 50)
    got = section(nat, "--by", "namespace,state")
    assert got["source"] == "netlink"
    assert got["states"] == dict(oracle_states(nat))
    per_pod = {g["namespace"]: g["entries"] for g in got["groups"]}
    assert per_pod == {nat.pod(0): 30, nat.pod(1): 20}
    assert got["ghosts"]["count"] == 0
    by_owner = {g["process"].split(" (")[0]: g["entries"]
                for g in section(nat, "--by", "process")["groups"]}
    assert by_owner == {"td-pod0-app": 30, "td-pod1-app": 20}
    # 12 more from pod 0 whose RSTs the gateway drops: killed, their sockets are gone at
    # once (SO_LINGER 0) and their entries stay ESTABLISHED.
    nat.drop_endings_from(0)
    connect(nat, 0, "td-doomed", 12, linger0=True)
    assert wait_for(lambda: oracle_states(nat)["ESTABLISHED"] == 62)
    assert nat.base is not None
    nat.base.retire("td-doomed")
    got = section(nat, "--ghosts")
    assert got["states"] == dict(oracle_states(nat)) == {"ESTABLISHED": 62}
    ghosts = got["ghosts"]
    assert ghosts["count"] == 12
    assert ghosts["by_namespace"] == [{"namespace": nat.pod(0), "pod": None, "entries": 12,
                                       "states": {"ESTABLISHED": 12}}]
    assert all(e["side"] == "originator" for e in ghosts["entries"])
    assert len({e["original"] for e in ghosts["entries"]}) == 12
    # check sees them too, in the gateway (a namespace without a socket of its own), and
    # its verdict is no all-clear.
    found = findings(nat, "--threshold", "CONNTRACK_GHOSTS.warning=10")
    assert found["CONNTRACK_GHOSTS"]["evidence"]["ghosts"] == 12
    assert found["CONNTRACK_GHOSTS"]["evidence"]["by_namespace"] == {nat.pod(0): 12}
    relieve_removes_exactly_the_ghosts(nat, {e["original"] for e in ghosts["entries"]},
                                       tmp_path)


def entries(lab: NatLab) -> set[str]:
    """The oracle's lines without their timeouts (which tick)."""
    return {" ".join(w for i, w in enumerate(line.split()) if i != 2)
            for line in lab.conntrack_list()}


def relieve_removes_exactly_the_ghosts(nat: NatLab, ghosts: set[str], tmp_path: Path) -> None:
    before = entries(nat)
    dry = tcpdoctor_json("relieve", "--conntrack-ghosts", "--netns", nat.gw)
    assert dry["dry_run"] and dry["entries"] == 12
    assert entries(nat) == before  # a dry run changes nothing
    report = tmp_path / "relief.json"
    done = tcpdoctor("relieve", "--conntrack-ghosts", "--netns", nat.gw, "--apply", "--json",
                     "--report", str(report), "--rate", "100")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert (result["deleted"], result["vanished"], result["failed"],
            result["still_there"]) == (12, 0, 0, 0)
    after = entries(nat)
    gone = before - after
    assert after < before and len(gone) == 12
    # exactly the ghosts: each deleted line is one of them (orig src:sport -> dst:dport)
    assert {"{0}:{2} -> {1}:{3}".format(*(f.split("=")[1] for f in line.split()[3:7]))
            for line in gone} == ghosts
    assert len(json.loads(report.read_text())["entries"]) == 12


def findings(lab: NatLab, *extra: str) -> dict[str, Any]:
    """check --netns all's findings in the lab's gateway, by id."""
    done = tcpdoctor("check", "--netns", "all", "--json", "--interval", "0", *extra)
    assert done.returncode in (1, 2), done.stderr
    doc = json.loads(done.stdout)
    return {f["id"]: f for f in doc["findings"] if f.get("netns") == lab.gw}


def test_a_collected_bundle_carries_the_table_and_analyze_finds_the_ghosts(
        nat: NatLab, script: Path, out_dir: Path) -> None:
    connect(nat, 0, "td-app", 7)
    nat.drop_endings_from(1)
    connect(nat, 1, "td-doomed", 6, linger0=True)
    assert wait_for(lambda: oracle_states(nat)["ESTABLISHED"] == 13)
    assert nat.base is not None
    nat.base.retire("td-doomed")
    bundle = run_script(None, script, out_dir, ["dash"], extra=("--all-netns",))
    doc = tcpdoctor_json("analyze", str(bundle), "--netns", nat.gw, "--json", "--threshold",
                         "CONNTRACK_GHOSTS.warning=3")
    table = doc["conntrack"]
    assert table["entries"] == 13 and table["states"] == dict(oracle_states(nat))
    assert table["ghosts"] == 6
    assert {r["namespace"]: r["entries"] for r in table["by_namespace"]} == {
        nat.pod(0): 7, nat.pod(1): 6}
    ghost = next(f for f in doc["findings"] if f["id"] == "CONNTRACK_GHOSTS")
    assert ghost["evidence"]["by_namespace"] == {nat.pod(1): 6}


def test_snat_ports_per_destination_against_the_range() -> None:
    with NatLab(pods=1, ports="40000-40009") as lab:
        serve(lab)
        # 14 tries through a 10-port range: 10 get a port, 4 time out at the gateway.
        connect(lab, 0, "td-greedy", 14, keep_on_error=True, connect_timeout=1)
        got = section(lab)
        assert oracle_states(lab) == Counter({"ESTABLISHED": 10})
        assert got["snat"] == [{"translated_source": "198.18.50.1",
                                "destination": f"{SERVER_ADDR}:{PORT}", "ports_used": 10,
                                "ports_available": 10, "range": "40000-40009",
                                "range_known": True}]
        found = findings(lab)
        assert found["SNAT_PORT_EXHAUSTION"]["severity"] == "critical"
        # check of the gateway alone (a namespace with entries and no socket of its own)
        alone = tcpdoctor("check", "--netns", lab.gw, "--json", "--interval", "0")
        assert alone.returncode == 2, alone.stderr
        doc = json.loads(alone.stdout)
        assert doc["conntrack"]["entries"] == 10
        assert [f["id"] for f in doc["findings"]] == ["SNAT_PORT_EXHAUSTION"]


def test_proc_fallback_reads_what_netlink_reads(nat: NatLab) -> None:
    from tcpdoctor.sources import netns
    from tcpdoctor.sources.conntrack import dump, text

    connect(nat, 0, "td-app", 25)
    connect(nat, 1, "td-app1", 5)
    assert wait_for(lambda: oracle_states(nat)["ESTABLISHED"] == 30)
    by_netlink = netns.run_in(nat.gw, dump.read_table).columns
    by_proc = netns.run_in(nat.gw,
                           lambda: text.read_file("/proc/thread-self/net/nf_conntrack")).columns
    # Every namespace's table (--netns all) against conntrack -L in that namespace.
    tables = {t["netns"]: t for t in tcpdoctor_json("conntrack", "--netns", "all")["tables"]}
    for ns in nat.namespaces:
        said = Counter(line.split()[3] for line in nat.conntrack_list(ns))
        assert tables[ns]["states"] == dict(said), ns
    order_a = sorted(zip(*(by_netlink[k].tolist() for k in KEYS), strict=True))
    order_b = sorted(zip(*(by_proc[k].tolist() for k in KEYS), strict=True))
    assert order_a == order_b and len(order_a) == 30


KEYS = ("ct_state", "orig_src_lo", "orig_sport", "orig_dst_lo", "orig_dport", "reply_src_lo",
        "reply_sport", "reply_dst_lo", "reply_dport", "mark", "zone")


def test_without_root_one_line_no_traceback(nat: NatLab) -> None:
    done = tcpdoctor_as_nobody("conntrack")
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "root" in done.stderr
    assert tcpdoctor("conntrack", "--by", "colour").returncode == 3
