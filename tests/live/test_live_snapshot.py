"""Issue 2 on real sockets: states, top, owners and procfs compared with `ss` as the oracle."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from tcpdoctor.lab.net import LabNet
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.model.tcp import STATE_NAMES, TCP_LISTEN
from tcpdoctor.sources.live import take_snapshot
from tests.conftest import (
    POPULATION,
    SS_STATES,
    live,
    ss_lines,
    ss_state_counts,
    tcpdoctor,
    tcpdoctor_json,
)

pytestmark = live


def test_states_json_equals_ss(population: LabNet) -> None:
    ours = tcpdoctor_json("states", "--netns", population.name)
    theirs = ss_state_counts(population.name)
    assert ours["schema"] == 1 and ours["source"] == "netlink"
    assert ours["states"] == {s: theirs.get(s, 0) for s in STATE_NAMES}
    assert ours["total"] == sum(theirs.values())
    assert ours["established"] == theirs["ESTABLISHED"]
    assert ours["non_established"] == ours["total"] - ours["established"]
    assert {k: v for k, v in ours["states"].items() if v} == POPULATION


def test_states_family_filters(population: LabNet) -> None:
    v6 = tcpdoctor_json("states", "--netns", population.name, "-6")
    v4 = tcpdoctor_json("states", "--netns", population.name, "-4")
    assert v6["total"] == len(ss_lines(population.name, "-Htan6")) == 7  # listener + 3 pairs
    assert v4["total"] + v6["total"] == sum(POPULATION.values())


def test_procfs_matches_netlink(population: LabNet) -> None:
    nl = take_snapshot("netlink", population.name)
    pf = take_snapshot("procfs", population.name)
    assert pf.source == "procfs"
    assert nl.state_counts() == pf.state_counts()
    key = ("state", "sport", "dport", "laddr_lo", "raddr_lo", "raddr_hi", "rqueue", "wqueue")

    def rows(snap: Snapshot) -> list[tuple[int, ...]]:
        # a listener's wqueue is its backlog limit in netlink and 0 in /proc/net/tcp
        wq = np.where(snap.columns["state"] == TCP_LISTEN, 0, snap.columns["wqueue"])
        cols = {**snap.columns, "wqueue": wq}
        return sorted(zip(*(cols[k].tolist() for k in key), strict=True))

    assert rows(nl) == rows(pf)
    assert any(r[6] for r in rows(pf)), "the population has unread data somewhere"
    # Inodes of full sockets agree too (TIME_WAIT and request sockets have none).
    assert sorted(nl.columns["inode"].tolist()) == sorted(pf.columns["inode"].tolist())


def test_top_remote_ip_state_equals_ss_awk(population: LabNet) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", population.name, "sh", "-c",
         "ss -Htan | awk '{n=$5; sub(/:[^:]*$/, \"\", n); print n, $1}' | sort | uniq -c"],
        capture_output=True, text=True, check=True).stdout
    theirs = Counter()
    for line in out.splitlines():
        count, addr, state = line.split()
        addr = addr.strip("[]").replace("*", "0.0.0.0") if addr != "[::]" else "::"
        theirs[(addr, SS_STATES[state])] += int(count)
    res = tcpdoctor_json("top", "--netns", population.name, "--by", "remote-ip,state",
                         "-n", "1000")
    ours = Counter({(g["key"]["remote-ip"], g["key"]["state"]): g["count"]
                    for g in res["groups"]})
    assert res["other"] == 0
    assert ours == theirs


def _ss_processes(ns: str) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for fields in ss_lines(ns, "-Htanp"):
        m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', " ".join(fields))
        counts[(m.group(1) if m else "(none)", SS_STATES[fields[0]])] += 1
    return counts


def test_top_by_process_equals_ss_p(population: LabNet) -> None:
    res = tcpdoctor_json("top", "--netns", population.name, "--by", "process,state",
                         "-n", "1000")
    ours = Counter({(g["key"]["process"] or "(none)", g["key"]["state"]): g["count"]
                    for g in res["groups"]})
    assert ours == _ss_processes(population.name)
    # The process the test named with prctl(PR_SET_NAME) owns exactly its CLOSE_WAIT sockets.
    assert ours[("td-leak", "CLOSE_WAIT")] == POPULATION["CLOSE_WAIT"]


def test_top_filters(population: LabNet) -> None:
    ns = population.name
    tw = tcpdoctor_json("top", "--netns", ns, "--by", "local-port", "--state", "time-wait")
    assert tw["groups"][0]["key"] == {"local-port": 8082} and tw["groups"][0]["count"] == 12
    dead = tcpdoctor_json("top", "--netns", ns, "--by", "remote-ip", "--ip", "198.19.0.0/16")
    assert dead["groups"] == [{"key": {"remote-ip": "198.19.0.10"}, "count": 4,
                               "states": {"SYN_SENT": 4}}]
    non = tcpdoctor_json("top", "--netns", ns, "--by", "state", "--state", "non-established",
                         "-n", "2")
    assert non["other"] + sum(g["count"] for g in non["groups"]) == (
        sum(POPULATION.values()) - POPULATION["ESTABLISHED"])
    port = tcpdoctor_json("top", "--netns", ns, "--by", "state", "--port", "8081")
    assert {g["key"]["state"]: g["count"] for g in port["groups"]} == {
        "CLOSE_WAIT": 15, "FIN_WAIT2": 15, "LISTEN": 1}
    net = tcpdoctor_json("top", "--netns", ns, "--by", "remote-net", "-n", "1")
    assert net["groups"][0]["key"]["remote-net"] == "198.18.0.0/24"


def test_top_csv_and_table(population: LabNet) -> None:
    csv_out = tcpdoctor("top", "--netns", population.name, "--by", "state", "--csv").stdout
    assert csv_out.splitlines()[0].startswith("state,count,ESTABLISHED")
    table = tcpdoctor("top", "--netns", population.name, "--by", "remote-ip,state", "-n", "5")
    assert table.returncode == 0 and "198.18.0.1" in table.stdout


UNPRIVILEGED = """
import importlib, os, pkgutil, sys
import tcpdoctor
# Commands load their modules on demand: load every one while still root.
for m in pkgutil.walk_packages(tcpdoctor.__path__, "tcpdoctor."):
    if not m.name.endswith("__main__"):  # importing __main__ would run the command
        importlib.import_module(m.name)
import rich.console, rich.table, rich.text, numpy.ma, numpy.lib.recfunctions, tomllib
os.setgroups([]); os.setgid(65534); os.setuid(65534)
tcpdoctor.cli.main(sys.argv[1:])
"""


def test_unprivileged_counts_and_says_owners_unknown(population: LabNet) -> None:
    # Imports happen as root (the interpreter lives under /root), then the process drops to
    # nobody before it reads any socket; it runs inside the namespace via `ip netns exec`.
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", population.name, sys.executable, "-c",
                               UNPRIVILEGED, *args], capture_output=True, text=True)

    states = run("states", "--json")
    assert states.returncode == 0, states.stderr
    assert f'"total": {sum(POPULATION.values())}' in states.stdout
    top = run("top", "--by", "process,state", "--json")
    assert top.returncode == 0 and "Traceback" not in top.stderr
    assert "owners partly unknown" in top.stderr
    assert '"process": null' in top.stdout  # counted, owner unknown


@pytest.mark.parametrize("args", [["--netns", "no-such-ns-xyz"], ["--by", "nope"]])
def test_bad_options_exit_3_one_line(args: list[str]) -> None:
    proc = tcpdoctor("top", *args)
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_parallel_split_reads_every_socket_exactly_once(population: LabNet) -> None:
    from tcpdoctor.sources import netlink
    from tcpdoctor.sources.netns import run_in

    key = ("state", "sport", "dport", "laddr_lo", "raddr_lo", "raddr_hi", "inode")

    def rows(parallel: bool) -> list[tuple[int, ...]]:
        cols = run_in(population.name, lambda: netlink.read_sockets(parallel=parallel))
        return sorted(zip(*(cols[k].tolist() for k in key), strict=True))

    single, split = rows(False), rows(True)
    assert split == single and len(split) == sum(POPULATION.values())


def test_split_bytecode_halves_are_complementary() -> None:
    from tcpdoctor.sources.netlink.bytecode import SPLIT_PORT, split_bytecode

    # Evaluate both filters as the kernel does (inet_diag_bc_run) on every port pair class.
    def run(bc: bytes, sport: int, dport: int) -> bool:
        import struct

        pos, length = 0, len(bc)
        while pos < length:
            code, yes, no = struct.unpack_from("=BBH", bc, pos)
            if code == 1:  # JMP: always takes `no`
                pos += no
                continue
            port = struct.unpack_from("=BBH", bc, pos + 4)[2]
            ok = {2: sport >= port, 3: sport <= port, 4: dport >= port, 5: dport <= port}[code]
            pos += yes if ok else no
        assert pos in (length, length + 4)
        return pos == length

    for sport in (0, 80, SPLIT_PORT - 1, SPLIT_PORT, 60999, 65535):
        for dport in (0, 443, SPLIT_PORT - 1, SPLIT_PORT, 50000, 65535):
            same, diff = run(split_bytecode(True), sport, dport), run(split_bytecode(False),
                                                                         sport, dport)
            assert same != diff
            assert same == ((sport >= SPLIT_PORT) == (dport >= SPLIT_PORT))


def test_owners_from_the_kernel_iterator_equal_the_proc_scan(
        population: LabNet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 33: as root on the host, owners come from a BPF task_file iterator (one pass
    in the kernel); every socket gets the owner the /proc readlink scan gives it."""
    from tcpdoctor.sources import bpf_iter

    assert bpf_iter.available("/proc") and bpf_iter.open_files() is not None, \
        "this kernel (root, BTF, the initial pid namespace) runs the iterator"

    def owned() -> dict[int, int]:
        snap = take_snapshot(netns_name=population.name, with_owners=True)
        c = snap.columns
        return {int(i): int(p) for i, p in zip(c["inode"], c["pid"], strict=True) if i}

    fast = owned()
    monkeypatch.setenv("TCPDOCTOR_NO_BPF", "1")
    assert not bpf_iter.available("/proc")
    assert owned() == fast and sum(p > 0 for p in fast.values()) >= POPULATION["CLOSE_WAIT"]
