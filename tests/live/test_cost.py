"""Issue 17: what the sockets cost, against `ss -tm` and /proc/slabinfo on real sockets.

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_cost.py."""

from __future__ import annotations

from pathlib import Path

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tests.conftest import in_netns, live, tcpdoctor, tcpdoctor_json
from tests.unit.test_cost import lab, slab_size, ss_skmem  # noqa: F401


@live
def test_unread_buffers_match_ss_skmem(lab: LabNet) -> None:
    """N CLOSE_WAIT sockets each with 32 KiB nobody reads: the buffer figures are ss's."""
    sc = scenarios.SCENARIOS["unread-close-wait"]
    n = 120  # above CLOSE_WAIT_LEAK's warning threshold (100)
    scenarios.build(lab, sc, n)
    report = tcpdoctor_json("check", "--json", "--netns", lab.name, "--interval", "0")
    ours = report["cost"]["total"]
    theirs = ss_skmem(lab.name)
    assert theirs["r"] >= n * 32768  # the data sits unread (truesize is larger than data)
    assert abs(ours["receive_bytes"] - theirs["r"]) <= 0.02 * theirs["r"]
    assert abs(ours["send_bytes"] - theirs["w"]) <= max(0.02 * theirs["w"], 4096)
    held = ours["receive_bytes"] + ours["send_bytes"] + ours["other_buffer_bytes"]
    assert abs(held - sum(theirs.values())) <= 0.02 * sum(theirs.values())
    leak = {f["id"]: f for f in report["findings"]}["CLOSE_WAIT_LEAK"]
    assert leak["evidence"]["cost"]["receive_bytes"] >= n * 32768
    assert leak["evidence"]["cost"]["fds"] == n
    # A saved `ss -tanm` of the same sockets is priced the same way by analyze.
    capture = in_netns(lab.name, "ss", "-tanmp").stdout
    path = Path(f"/tmp/{lab.name}-ss.txt")
    try:
        path.write_text(capture)
        offline = tcpdoctor_json("analyze", str(path), "--json")
    finally:
        path.unlink(missing_ok=True)
    assert offline["cost"]["buffers_measured"]
    assert offline["cost"]["total"]["receive_bytes"] == theirs["r"]


@live
def test_time_wait_objects_cost_count_times_slab_size(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["time-wait-server"]
    scenarios.build(lab, sc, 500)
    data = tcpdoctor_json("states", "--json", "--netns", lab.name)
    tw = data["cost"]["by_state"]["TIME_WAIT"]
    assert tw["sockets"] == data["states"]["TIME_WAIT"] >= 450
    assert tw["object_bytes"] == tw["sockets"] * slab_size("tw_sock_TCP")
    assert tw["buffer_bytes"] == 0 and tw["fds"] == 0  # minisockets: no buffers, no file
    listen = data["cost"]["by_state"]["LISTEN"]
    per_file = slab_size("sock_inode_cache") + slab_size("filp")
    assert listen["object_bytes"] == listen["sockets"] * (slab_size("TCP") + per_file)
    table = tcpdoctor("states", "--netns", lab.name, "--cost")
    assert table.returncode == 0 and "memory" in table.stdout and "fds" in table.stdout


@live
def test_memory_hog_names_process_port_and_bytes(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["memory-hog"]
    scenarios.build(lab, sc, sc.default_n)
    proc = tcpdoctor("check", "--netns", lab.name, "--interval", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("Cost:"))
    assert "receive buffers" in proc.stdout and "td-sink" in proc.stdout
    assert "MB" in line
    report = tcpdoctor_json("check", "--json", "--netns", lab.name, "--interval", "0")
    hog = {f["id"]: f for f in report["findings"]}["SOCKET_MEMORY_HOG"]
    assert "9000" in hog["summary"] and "td-sink" in hog["summary"]
    theirs = ss_skmem(lab.name)
    assert abs(hog["evidence"]["receive_bytes"] - theirs["r"]) <= 0.02 * theirs["r"]
    groups = tcpdoctor_json("top", "--json", "--netns", lab.name, "--by", "process",
                            "--cost")["groups"]
    assert groups[0]["key"]["process"] == "td-sink"
    assert groups[0]["memory_bytes"] >= theirs["r"] * 0.98
    assert groups[0]["memory_bytes"] >= groups[-1]["memory_bytes"]


@live
def test_healthy_lab_has_no_memory_hog(lab: LabNet) -> None:
    sc = scenarios.SCENARIOS["healthy"]
    scenarios.build(lab, sc, sc.default_n)
    report = tcpdoctor_json("check", "--json", "--netns", lab.name, "--interval", "0")
    assert "SOCKET_MEMORY_HOG" not in {f["id"] for f in report["findings"]}
    assert report["cost"]["by_state"]["ESTABLISHED"]["fds"] == sc.default_n
