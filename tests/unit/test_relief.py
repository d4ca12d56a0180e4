"""`relieve` without root: the identity columns read from a recorded dump (iproute2 as the
oracle), the SOCK_DESTROY request laid out as the uapi header says, the guards and methods
of a plan, and the relief line findings carry."""

from __future__ import annotations

import errno
import os
import re
import struct
from typing import Any

import numpy as np
import pytest

from tcpdoctor.analysis.relief import RELIEF_STATES, relief_command
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.columns import BASE_COLUMNS, ID_COLUMNS
from tcpdoctor.model.snapshot import Snapshot
from tcpdoctor.relief import act, plan
from tcpdoctor.relief.plan import DESTROY, GRACEFUL, Choice, choose
from tcpdoctor.sources import ending
from tcpdoctor.sources.netlink.decode import decode
from tests import synth
from tests.conftest import DATA


def test_cookies_and_inodes_are_what_ss_decodes_from_the_same_bytes() -> None:
    want = frozenset(BASE_COLUMNS) | frozenset(ID_COLUMNS)
    cols, _ = decode((DATA / "ss_tani_lab.dump").read_bytes(), want, info=True)
    oracle = re.findall(r"ino:(\d+) sk:([0-9a-f]+)", (DATA / "ss_tani_lab.sse").read_text())
    assert oracle and len(oracle) == len(cols["cookie"])
    assert [(int(i), int(c, 16)) for i, c in oracle] == list(
        zip(cols["inode"].tolist(), cols["cookie"].tolist(), strict=True))


def test_a_destroy_request_names_one_socket_as_inet_diag_req_v2() -> None:
    src = ending.address_bytes(2, 0, 0xFFFF_C612_0001)  # ::ffff:198.18.0.1
    dst = ending.address_bytes(10, 0x20010DB8_00000000, 1)
    req = ending.destroy_request(7, 2, 8080, 40001, src, dst, 3, (5 << 32) | 9)
    length, mtype, flags, seq, port = struct.unpack_from("=IHHII", req)
    assert (length, mtype, seq, port) == (len(req), 21, 7, 0)  # SOCK_DESTROY
    assert flags == 0x1 | 0x4  # NLM_F_REQUEST | NLM_F_ACK
    family, proto, ext, _pad, states = struct.unpack_from("=BBBBI", req, 16)
    assert (family, proto, ext, states) == (2, 6, 0, 0)
    assert struct.unpack_from(">HH", req, 24) == (8080, 40001)
    assert req[28:32] == bytes([198, 18, 0, 1]) and req[32:44] == bytes(12)
    assert req[44:60] == bytes.fromhex("20010db8000000000000000000000001")
    assert struct.unpack_from("=III", req, 60) == (3, 9, 5)
    assert length == 16 + 8 + 48


def test_acks_are_read_per_sequence_number() -> None:
    def ack(seq: int, err: int) -> bytes:
        return struct.pack("=IHHIIi", 20, 2, 0, seq, 0, -err)

    assert ending._acks(ack(1, 0) + ack(2, errno.ENOENT) + ack(3, errno.EPERM)) == {
        1: 0, 2: errno.ENOENT, 3: errno.EPERM}


def _snap(*specs: dict[str, Any], kernel: str = "6.18.0") -> Snapshot:
    snap = synth.snapshot(*specs, names={100: "leaky", os.getpid(): "tcpdoctor"})
    n = len(snap)
    snap.columns["cookie"] = np.arange(1, n + 1, dtype=np.uint64)
    snap.columns["ifindex"] = np.zeros(n, np.uint32)
    snap.kernel = kernel
    return snap


LEAK = {"n": 50, "state": "CLOSE_WAIT", "sport": 8080, "dport": lambda i: 40000 + i,
        "pid": 100, "inode": lambda i: 1000 + i}
LISTENER = {"state": "LISTEN", "sport": 8080, "dport": 0, "raddr": "0.0.0.0", "pid": 100}
ORPHANS = {"n": 5, "state": "LAST_ACK", "inode": 0, "pid": -1}
TIME_WAIT = {"n": 7, "state": "TIME_WAIT", "inode": 0, "pid": -1, "dport": 5432}


def _plan(snap: Snapshot, choice: Choice, finding_mask: np.ndarray | None = None) -> plan.Plan:
    findings = {} if finding_mask is None else {choice.finding or "": finding_mask}
    everything = np.ones(len(snap), dtype=bool)
    from tcpdoctor.analysis.groups import filter_mask

    mask = filter_mask(snap, list(choice.states), list(choice.ports), list(choice.remotes),
                       list(choice.pids)) if choice.has_filter() else everything
    return choose(snap, findings, choice, mask)


def test_a_finding_plan_takes_its_states_and_owned_sockets_go_gracefully() -> None:
    snap = _snap(LEAK, LISTENER, {"n": 3, "pid": 100, "inode": 5})
    everything = np.ones(len(snap), dtype=bool)
    p = _plan(snap, Choice("CLOSE_WAIT_LEAK"), everything)
    assert len(p) == 50 and set(p.columns["state"].tolist()) == set(
        RELIEF_STATES["CLOSE_WAIT_LEAK"])
    assert (p.columns["method"] == GRACEFUL).all()
    rows = plan.groups(p)
    assert rows == [{"state": "CLOSE_WAIT", "count": 50, "pid": 100, "process": "leaky",
                     "local_port": 8080, "remote": None, "peers": 1, "method": "graceful"}]
    p = _plan(snap, Choice("CLOSE_WAIT_LEAK", reset=True), everything)
    assert (p.columns["method"] == DESTROY).all()


def test_guards_refuse_listeners_own_sockets_time_wait_and_old_kernels_orphans() -> None:
    mine = {"n": 2, "state": "CLOSE_WAIT", "pid": os.getpid(), "inode": 9}
    for kernel, orphans_ok in (("6.18.44-fc", True), ("5.15.0-91-generic", False)):
        snap = _snap(LEAK, LISTENER, mine, ORPHANS, TIME_WAIT, kernel=kernel)
        p = _plan(snap, Choice(states=("close-wait", "listen", "last-ack", "syn-sent")))
        refused = {r["state"]: r["count"] for r in p.refused}
        assert refused.get("LISTEN") == 1 and refused.get("CLOSE_WAIT") == 2
        assert ("LAST_ACK" in refused) is not orphans_ok
        assert len(p) == 50 + (5 if orphans_ok else 0)
        ownerless = p.columns["state"] == 9
        assert (p.columns["method"][ownerless] == DESTROY).all()
    snap = _snap(TIME_WAIT, LEAK)
    p = _plan(snap, Choice(ports=(5432,)))
    assert len(p) == 0 and p.refused[0]["state"] == "TIME_WAIT"
    p = _plan(snap, Choice(states=("time-wait",)))
    assert len(p) == 7 and (p.columns["method"] == DESTROY).all()
    tw = snap.columns["state"] == 6
    p = _plan(snap, Choice("EPHEMERAL_PORT_EXHAUSTION"), tw)
    assert len(p) == 7


def test_max_leaves_the_rest_for_another_run() -> None:
    p = _plan(_snap(LEAK), Choice(states=("close-wait",), limit=20))
    assert len(p) == 20 and p.beyond_limit == 30


def test_without_cookies_relief_refuses() -> None:
    snap = synth.snapshot(LEAK)
    with pytest.raises(Exception, match="netlink"):
        choose(snap, {}, Choice(states=("close-wait",)), np.ones(len(snap), dtype=bool))


def test_a_client_side_group_names_its_remote_service() -> None:
    snap = _snap({"n": 4, "state": "CLOSE_WAIT", "sport": lambda i: 50000 + i,
                  "dport": 6379, "raddr": "2001:db8::7", "pid": 100, "inode": 3})
    rows = plan.groups(_plan(snap, Choice(states=("close-wait",))))
    assert rows[0]["remote"] == "[2001:db8::7]:6379" and rows[0]["local_port"] is None


def test_outcomes_count_replaced_sockets_as_vanished_not_failed() -> None:
    errnos = np.array([0, 0, errno.ENOENT, errno.ESTALE, errno.EPERM, errno.EPERM], np.int32)
    assert act.outcome_counts(errnos) == {"relieved": 2, "vanished": 2, "failed": 2}
    assert act.failures(errnos) == {"EPERM": 2}


def test_report_rows_carry_what_destroy_needs(tmp_path: Any) -> None:
    p = _plan(_snap(LEAK), Choice(states=("close-wait",), limit=2))
    path = tmp_path / "r.json"
    act.write_report(p, str(path), {"schema": 1})
    import json

    rows = json.loads(path.read_text())["sockets"]
    assert rows[0] == {"local": "10.0.0.1:8080", "remote": "192.0.2.10:40000",
                       "state": "CLOSE_WAIT", "cookie": 1, "inode": 1000, "pid": 100,
                       "fd": None, "method": "graceful"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert format_addr(0, 0xFFFF_0A00_0001) == "10.0.0.1"


def test_findings_relief_can_help_carry_the_dry_run_command() -> None:
    assert relief_command("CLOSE_WAIT_LEAK") == "tcpdoctor relieve CLOSE_WAIT_LEAK"
    assert relief_command("CLOSE_WAIT_LEAK", "pod:shop/web-1 (app)") == (
        "tcpdoctor relieve CLOSE_WAIT_LEAK --netns 'pod:shop/web-1 (app)'")
    assert relief_command("SYN_FLOOD") is None
    from tcpdoctor.analysis.check import run_rules
    from tcpdoctor.analysis.context import Context

    report = run_rules(Context.saved(_snap({**LEAK, "n": 150}), None))
    leak = next(f for f in report.as_json()["findings"] if f["id"] == "CLOSE_WAIT_LEAK")
    assert leak["relief"] == "tcpdoctor relieve CLOSE_WAIT_LEAK"


def test_kernel_versions_parse() -> None:
    assert plan.kernel_version("6.11.0-rc1") == (6, 11)
    assert plan.kernel_version("5.4.0-150-generic") == (5, 4)
    assert plan.kernel_version("weird") == (0, 0)
