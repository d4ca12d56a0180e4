"""The trace tracker fed a recorded batch of real kernel events (tests/data/trace, made by
record_batch.py there): who opened, who closed first, how long connections lived, which
failed — exact against what the recording did, without root or tracefs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tcpdoctor.model.trace import columns
from tcpdoctor.sources.tracefs.follow import Comms, Tracker, summary

TRACE = Path(__file__).parents[1] / "data" / "trace"
TRUTH = json.loads((TRACE / "truth.json").read_text())


class Recorded(Comms):
    """The names the recording saw; nothing is looked up on this host (its /proc and the
    tracer's saved_cmdlines belong to other processes now)."""

    def __init__(self) -> None:
        super().__init__()
        saved = json.loads((TRACE / "comms.json").read_text())
        self.recorded = {int(k): v for k, v in saved.items()}

    def name(self, pid: int) -> str:
        return self.recorded.get(pid, "?")

    def netns_of(self, pid: int) -> int:
        return 1  # the recording's one namespace


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    tracker = Tracker(Recorded())
    events = np.load(TRACE / "batch.npy", allow_pickle=False)
    # Fed in three batches, as the reader hands them over: sockets cross batches.
    for part in np.array_split(events, 3):
        tracker.feed(columns(part), {})
    return summary(tracker, 8.0, 0)


def remote(result: dict[str, Any], port: int) -> dict[str, Any]:
    name = f"{TRUTH['addr']}:{port}"
    [found] = [r for r in result["remote_services"] if r["service"] == name]
    return found


def local(result: dict[str, Any], port: int) -> dict[str, Any]:
    [found] = [r for r in result["local_ports"] if r["port"] == port]
    return found


@pytest.mark.parametrize("case", ["client_closes", "server_closes"])
def test_openers_are_the_clients_and_servers_serve_their_port(result: dict[str, Any],
                                                              case: str) -> None:
    c, n = TRUTH[case], TRUTH["n"]
    assert remote(result, c["port"])["processes"] == {c["client"]: n}
    # a connection the server accepted is the server's, never its opener's
    assert local(result, c["port"])["processes"] == {c["server"]: n}
    assert remote(result, c["port"])["opened"] == local(result, c["port"])["opened"] == n


def test_who_closed_first(result: dict[str, Any]) -> None:
    n = TRUTH["n"]
    a, b = TRUTH["client_closes"], TRUTH["server_closes"]
    assert remote(result, a["port"])["closed_first_by"] == {"local": n}
    assert remote(result, a["port"])["closers"] == {a["client"]: n}
    assert local(result, a["port"])["closed_first_by"] == {"remote": n}
    assert remote(result, b["port"])["closed_first_by"] == {"remote": n}
    assert local(result, b["port"])["closers"] == {b["server"]: n}


def test_lifetimes_run_from_the_first_change_to_the_close(result: dict[str, Any]) -> None:
    """Each connection was held HOLD ms: its lifetime is at least that, from connect() (or
    the SYN) to the close, not from its last state change."""
    hold = TRUTH["hold_ms"]
    for case in ("client_closes", "server_closes"):
        port = TRUTH[case]["port"]
        for entry in (remote(result, port), local(result, port)):
            p50 = entry["lifetime_ms"]["p50"]
            assert hold <= p50 < hold + 500, (case, entry["lifetime_ms"])


def test_refused_connects_fail_and_are_counted(result: dict[str, Any]) -> None:
    closed = remote(result, TRUTH["closed_port"]["port"])
    assert closed["failed"] == {"refused": TRUTH["refused"]}
    assert closed["processes"] == {TRUTH["closed_port"]["client"]: TRUTH["refused"]}
    [started] = [c for c in result["connects"]
                 if c["service"].endswith(f":{TRUTH['closed_port']['port']}")]
    assert started["started"] == TRUTH["refused"]


def test_connects_refused_a_local_port_are_counted_one_for_one(result: dict[str, Any]) -> None:
    starved = TRUTH["port_starved"]
    assert starved["failed"] == 7
    assert result["connect_failures"] == [
        {"reason": "EADDRNOTAVAIL", "destination": starved["destination"],
         "process": starved["client"], "pid": starved["pid"], "count": starved["failed"]}]


def test_the_follow_table_and_the_reservoirs_stay_bounded() -> None:
    """A storm whose closes are lost: the table keeps at most MAX_OPEN sockets, drops (and
    counts) the oldest; a service's lifetime reservoir grows with what it holds."""
    from tcpdoctor.model.trace import STATE_CHANGE
    from tcpdoctor.sources.tracefs import follow

    tracker = Tracker(Recorded())
    n = follow.MAX_OPEN + 1000
    cols = {"kind": np.full(n, STATE_CHANGE, np.uint8), "ts": np.arange(1, n + 1, dtype=np.int64),
            "pid": np.full(n, 1234, np.int32), "skaddr": np.arange(n, dtype=np.uint64),
            "old": np.full(n, 7, np.int32), "new": np.full(n, 2, np.int32),
            "reason": np.zeros(n, np.int32), "sport": np.zeros(n, np.uint16),
            "dport": np.full(n, 443, np.uint16), "saddr_hi": np.zeros(n, np.uint64),
            "saddr_lo": np.zeros(n, np.uint64), "daddr_hi": np.zeros(n, np.uint64),
            "daddr_lo": np.full(n, 0xFFFF_0A00_0001, np.uint64)}
    tracker.feed(cols, {})
    assert len(tracker.open) == follow.MAX_OPEN and tracker.dropped == 1000
    assert summary(tracker, 1.0, 0)["sockets_dropped"] == 1000
    svc = follow.Service()
    assert svc.lifetimes.shape[0] == 0
    rng = np.random.default_rng(0)
    for ms in range(100):
        svc.lifetime(float(ms), rng)
    assert svc.kept == 100 and svc.lifetimes.shape[0] < follow.SAMPLE


def test_every_cpu_is_read_at_every_poll(tmp_path: Path) -> None:
    """Issue 33: a CPU whose buffer is always full must not starve the others. Before, one
    poll read its page budget from the first CPU and never looked at the second: `safe`
    stayed 0 and every event waited in the reorder buffer (an unpaced storm: 225 MB)."""
    import os

    from tcpdoctor.sources.tracefs.ring import RawReader

    page = 4096
    busy, quiet = tmp_path / "cpu0", tmp_path / "cpu1"
    busy.write_bytes(bytes(page) * 300)
    quiet.write_bytes(bytes(page) * 3)
    reader = object.__new__(RawReader)
    reader.page_size = page
    reader.fds = [os.open(busy, os.O_RDONLY), os.open(quiet, os.O_RDONLY)]
    read: list[int] = []
    clock = iter(range(1, 10**6))

    def decode(raw: bytes, out: object) -> int:
        read.append(len(raw))
        return next(clock)
    reader.decode_page = decode  # type: ignore[method-assign]
    try:
        more, safe = reader.poll(object(), max_pages=100)  # type: ignore[arg-type]
        assert more and len(read) == 50 + 3  # half the budget each; the quiet CPU drained
        assert 0 < safe <= 50  # the busy CPU's newest event read, not 0
    finally:
        for fd in reader.fds:
            os.close(fd)
