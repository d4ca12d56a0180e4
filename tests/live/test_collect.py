"""Issue 18: the collect script under dash and BusyBox sh, as root and not, in lab

The tests that need root; the root-free ones, and the helpers both use, are in
tests/unit/test_collect.py."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from tcpdoctor.lab.net import LabNet
from tests.conftest import live, tcpdoctor, tcpdoctor_json
from tests.unit.test_collect import (  # noqa: F401
    busybox_path,
    close_wait_lab,
    findings,
    needs_busybox,
    out_dir,
    run_script,
    script,
    shared,
)


@live
def test_dash_root_bundle_reports_what_check_reports(close_wait_lab: LabNet, script: Path,
                                                      out_dir: Path) -> None:
    lab = close_wait_lab
    path = run_script(lab.name, script, out_dir, ["dash"])
    got = tcpdoctor_json("analyze", str(path), "--json")
    want = tcpdoctor_json("check", "--json", "--netns", lab.name, "--interval", "1")
    assert findings(got) == findings(want)
    assert ("CLOSE_WAIT_LEAK", "warning", ("td-leaky",)) in findings(got)
    assert got["states"] == want["states"]
    assert {r["id"] for r in got["rules_skipped"]} == {r["id"] for r in want["rules_skipped"]}
    assert got["interval_seconds"] >= 1.0  # two readings: rates
    assert got["source"].startswith("bundle ") and got["host"] and got["kernel"]
    assert got["cost"]["objects_priced"] and got["cost"]["buffers_measured"]


@live
@needs_busybox
def test_busybox_root_reads_proc_net_tcp_and_owners(close_wait_lab: LabNet, script: Path,
                                                     out_dir: Path, busybox_path: Path) -> None:
    lab = close_wait_lab
    env = {"PATH": str(busybox_path)}
    path = run_script(lab.name, script, out_dir, [str(busybox_path / "sh")], env)
    with tarfile.open(path) as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
    assert "ss.txt" not in names and {"tcp", "owners.txt", "processes.txt"} <= names
    got = tcpdoctor_json("analyze", str(path), "--json")
    want = tcpdoctor_json("check", "--json", "--netns", lab.name, "--interval", "1")
    assert findings(got) == findings(want)
    assert got["states"] == want["states"]
    assert any("ss not found" in n for n in got["notes"])


@live
@needs_busybox
def test_busybox_as_nobody_gives_a_partial_bundle_with_notes(
        close_wait_lab: LabNet, script: Path, out_dir: Path, busybox_path: Path) -> None:
    env = {"PATH": str(busybox_path), "HOME": "/tmp"}
    path = run_script(close_wait_lab.name, script, out_dir, [str(busybox_path / "sh")], env,
                      user=True)
    proc = tcpdoctor("analyze", str(path), "--json")
    assert proc.returncode == 1, proc.stderr  # the leak is still found, owner unknown
    got = json.loads(proc.stdout)
    assert got["states"]["CLOSE_WAIT"] == 200
    leak = next(f for f in got["findings"] if f["id"] == "CLOSE_WAIT_LEAK")
    assert leak["processes"] == []
    notes = " ".join(got["notes"])
    assert "not run as root" in notes and "slabinfo" in notes
    assert not got["cost"]["objects_priced"]


@live
def test_all_netns_bundle_and_diff_of_two_bundles(close_wait_lab: LabNet, script: Path,
                                                  out_dir: Path) -> None:
    lab = close_wait_lab
    path = run_script(None, script, out_dir, ["dash"], extra=("--all-netns",))
    host = tcpdoctor_json("analyze", str(path), "--json")
    assert any(lab.name in n and "--netns NAME" in n for n in host["notes"])
    inside = tcpdoctor_json("analyze", str(path), "--json", "--netns", lab.name)
    assert inside["netns"] == lab.name and inside["states"]["CLOSE_WAIT"] == 200
    assert ("CLOSE_WAIT_LEAK", "warning", ("td-leaky",)) in findings(inside)
    missing = tcpdoctor("analyze", str(path), "--netns", "no-such-ns")
    assert missing.returncode == 3 and lab.name in missing.stderr
    second = run_script(lab.name, script, out_dir, ["dash"])
    proc = tcpdoctor("diff", str(path), str(second), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["states"]["CLOSE_WAIT"]["change"] == 200


@live
def test_bundle_carries_rates(script: Path, out_dir: Path) -> None:
    """Rate-based rules run on a bundle: a tiny tcp_max_tw_buckets under steady short
    connections makes TCPTimeWaitOverflow rise between the two readings."""
    with LabNet(prefix="tdcollect") as lab:
        lab.sysctl(lab.name, "net.ipv4.tcp_max_tw_buckets", "4")
        lab.spawn(lab.peer, "td-api", [{"kind": "listen", "addr": "198.18.0.2", "port": 8080,
                                        "accept": "close-on-eof"}])
        lab.spawn(lab.name, "td-client", [{"kind": "connect", "addr": "198.18.0.2",
                                           "port": 8080, "n": 3000, "pause": 0.004,
                                           "then": "close", "background": True}])
        path = run_script(lab.name, script, out_dir, ["dash"])
    got = tcpdoctor_json("analyze", str(path), "--json")
    tw = next(f for f in got["findings"] if f["id"] == "TW_BUCKET_OVERFLOW")
    assert tw["severity"] == "critical" and tw["evidence"]["TCPTimeWaitOverflow_delta"] > 0


HOSTILE = ("td-a b", "td-*", "td-$(touch x)", "-td-dash", ".td-dot", "td-é")


@live
def test_hostile_namespace_names_are_skipped_and_safe_ones_collected_once(
        script: Path, out_dir: Path) -> None:
    """Issue 33: names are read a line at a time; a name with a space, a glob, a command
    substitution, a leading dash or dot, or a byte outside [A-Za-z0-9._-] is skipped with a
    note; the lab's plain name is collected exactly once; no file appears in the cwd."""
    made = []
    try:
        for name in HOSTILE:
            if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0:
                made.append(name)
        with LabNet(prefix="tdcollect") as lab:
            (out_dir / "td-glob-bait").write_text("")  # what `td-*` would have matched
            proc = subprocess.run(["dash", str(script), "-i", "0", "-d", str(out_dir),
                                   "--all-netns"], capture_output=True, text=True, timeout=300,
                                  cwd=out_dir)
            assert proc.returncode == 0, proc.stderr
            path = Path(proc.stdout.strip().splitlines()[-1])
            with tarfile.open(path) as tar:
                names = tar.getnames()
                notes = tar.extractfile(next(n for n in names if n.endswith("/notes.txt")))
                assert notes is not None
                text = notes.read().decode()
            spaces = {n.split("/netns/")[1].split("/")[0] for n in names if "/netns/" in n}
            assert lab.name in spaces and lab.peer in spaces
            assert not any(h in spaces for h in HOSTILE)
            assert f"{len(made)} namespace names skipped" in text
            assert sorted(p.name for p in out_dir.iterdir() if not p.name.endswith(".gz")) == [
                "td-glob-bait"]
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@live
def test_full_tmpdir_fails_loudly_with_a_note_in_the_bundle(script: Path,
                                                             out_dir: Path) -> None:
    """Issue 33: a TMPDIR that fills up mid-way (a 128 KB tmpfs in a private mount
    namespace: nothing outside sees it) gives exit 1, a message naming TMPDIR, and a bundle
    whose notes say it is incomplete; analyze says so in one line."""
    inner = (f"mount -t tmpfs -o size=128k tdcollect /mnt && TMPDIR=/mnt dash {script} "
             f"-i 0 -d {out_dir}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "no space left in TMPDIR (/mnt)" in proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    with tarfile.open(path) as tar:
        notes = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/notes.txt")))
        assert notes is not None and b"this bundle is incomplete" in notes.read()
    got = tcpdoctor("analyze", str(path))
    assert got.returncode == 3 and "Traceback" not in got.stderr  # it stopped before ss
    assert len(got.stderr.strip().splitlines()) == 1 and "incomplete" in got.stderr
