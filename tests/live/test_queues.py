"""Queues that do not drain, on real sockets: a stalled reader found with the bytes `ss`
shows, a sender facing zero windows found, the same load read as it arrives not found."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import in_netns, live_reason, tcpdoctor

pytestmark = pytest.mark.skipif(live_reason() is not None, reason=str(live_reason()))


@pytest.fixture
def lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdqueue") as net:
        yield net


def check(lab: LabNet, name: str) -> tuple[int, dict[str, dict]]:  # type: ignore[type-arg]
    sc = scenarios.SCENARIOS[name]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--netns", lab.name, "--json", "--interval", "1")
    return proc.returncode, {f["id"]: f for f in json.loads(proc.stdout)["findings"]}


def test_a_stalled_reader_is_found_with_the_bytes_ss_shows(lab: LabNet) -> None:
    code, found = check(lab, "stalled-reader")
    ss = in_netns(lab.name, "ss", "-Htnm", "state", "established", "sport", "8080").stdout
    recv_q = sum(int(line.split()[0]) for line in ss.splitlines() if line[:1].isdigit())
    skmem_r = sum(int(x) for x in re.findall(r"skmem:\(r(\d+)", ss))
    f = found["STALLED_READER"]
    assert code == 1 and f["severity"] == "warning"
    assert f["evidence"]["sockets"] == scenarios.SCENARIOS["stalled-reader"].default_n
    assert abs(f["evidence"]["unread_bytes"] - recv_q) <= 0.02 * recv_q
    assert abs(f["evidence"]["receive_buffer_bytes"] - skmem_r) <= 0.02 * skmem_r
    assert recv_q > 10 << 20  # tens of MB, far below SOCKET_MEMORY_HOG's share
    assert "SOCKET_MEMORY_HOG" not in found
    assert [p["name"] for p in f["processes"]] == ["td-worker"]


def test_a_sender_facing_zero_windows_is_found(lab: LabNet) -> None:
    code, found = check(lab, "peer-not-reading")
    f = found["PEER_NOT_READING"]
    assert code == 1 and f["evidence"]["sockets"] == 100
    assert [p["name"] for p in f["processes"]] == ["td-publisher"]


def test_a_reader_that_keeps_up_is_not_found(lab: LabNet) -> None:
    code, found = check(lab, "busy-reader")
    assert "STALLED_READER" not in found and code == 0, found
