"""The procfs reader and the owner join on a recorded /proc tree (tests/data/proc_tree, made
by record_tree.py there from a lab namespace), checked socket by socket against `ss -tanpe`
taken at the same moment: IPv4 and IPv6, both queues, and sockets shared by two
processes. No root: the tree is rebuilt under a temporary directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tcpdoctor.model.addresses import format_endpoint
from tcpdoctor.model.tcp import AF_INET, AF_INET6, STATE_NAMES, TCP_LISTEN
from tcpdoctor.sources import owners, procfs
from tests.conftest import SS_STATES

TREE = Path(__file__).parents[1] / "data" / "proc_tree"
SS_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*?)ino:(\d+)")


def oracle() -> dict[int, dict[str, object]]:
    """ss's view, by socket inode: state, queues, ends, owners' pids."""
    out = {}
    for line in (TREE / "ss.txt").read_text().splitlines():
        m = SS_ROW.match(line)
        assert m, line
        state, recv_q, send_q, local, peer, users, ino = m.groups()
        out[int(ino)] = {"state": SS_STATES[state], "recv_q": int(recv_q),
                         "send_q": int(send_q), "local": local, "peer": peer,
                         "pids": sorted(int(p) for p in re.findall(r"pid=(\d+)", users))}
    return out


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/proc as the readers see it: net/tcp{,6}, PID/comm and PID/fd/N -> socket:[INODE]."""
    root = tmp_path_factory.mktemp("proc")
    (root / "net").mkdir()
    for name in ("tcp", "tcp6"):
        (root / "net" / name).write_bytes((TREE / "net" / name).read_bytes())
    for pid, entry in json.loads((TREE / "owners.json").read_text()).items():
        (root / pid / "fd").mkdir(parents=True)
        (root / pid / "comm").write_text(entry["comm"] + "\n")
        for fd, link in entry["fd"].items():
            (root / pid / "fd" / fd).symlink_to(link)
    return root


def endpoint(cols: dict[str, np.ndarray], i: int, side: str) -> str:
    hi, lo, port = (("laddr_hi", "laddr_lo", "sport") if side == "local"
                    else ("raddr_hi", "raddr_lo", "dport"))
    return format_endpoint(int(cols[hi][i]), int(cols[lo][i]), int(cols[port][i]))


def test_every_socket_of_both_families_is_read_with_its_queues(proc: Path) -> None:
    cols, notes = procfs.read_sockets(str(proc))
    want = oracle()
    assert notes == []
    assert sorted(cols["inode"].tolist()) == sorted(want)
    fams = {AF_INET: 0, AF_INET6: 0}
    for i, ino in enumerate(cols["inode"].tolist()):
        w = want[ino]
        fams[int(cols["family"][i])] += 1
        assert STATE_NAMES[int(cols["state"][i]) - 1] == w["state"], ino
        assert endpoint(cols, i, "local") == w["local"], ino
        assert int(cols["rqueue"][i]) == w["recv_q"], (ino, "Recv-Q")
        if cols["state"][i] != TCP_LISTEN:  # ss's Send-Q of a listener is its backlog
            assert int(cols["wqueue"][i]) == w["send_q"], (ino, "Send-Q")
            assert endpoint(cols, i, "remote") == w["peer"], ino
    v6 = sum(1 for w in want.values() if str(w["local"]).startswith("["))
    assert fams == {AF_INET: len(want) - v6, AF_INET6: v6} and v6 > 0
    # the recording has data both ways: a swapped queue column cannot pass
    assert (cols["rqueue"] > 0).any() and (cols["wqueue"] > 0).any()
    assert not ((cols["rqueue"] > 0) & (cols["wqueue"] > 0)).any()


def test_owner_join_names_the_lowest_pid_of_a_shared_socket(proc: Path) -> None:
    cols, _ = procfs.read_sockets(str(proc))
    table = owners.scan(str(proc))
    got = owners.lookup(table, cols["inode"])
    want = oracle()
    shared = 0
    for ino, pid in zip(cols["inode"].tolist(), got.tolist(), strict=True):
        pids = want[ino]["pids"]
        assert isinstance(pids, list)
        assert pid == min(pids), (ino, pid, pids)
        shared += len(pids) > 1
    assert shared >= 2
    assert {table.names[p] for p in set(got.tolist())} == {"td-sink", "td-push"}


def test_owner_join_of_inodes_in_any_order(proc: Path) -> None:
    """The lookup is by value: reversed and shuffled inodes get the same owners."""
    cols, _ = procfs.read_sockets(str(proc))
    table = owners.scan(str(proc))
    inodes = cols["inode"]
    base = dict(zip(inodes.tolist(), owners.lookup(table, inodes).tolist(), strict=True))
    for order in (inodes[::-1], np.random.default_rng(1).permutation(inodes)):
        assert dict(zip(order.tolist(), owners.lookup(table, order).tolist(),
                        strict=True)) == base
