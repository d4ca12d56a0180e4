"""Issue 18: the collect script under dash and BusyBox sh, as root and not, in lab
namespaces; `analyze BUNDLE` against a live `check` of the same lab."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tcpdoctor.model import bundle
from tcpdoctor.model.kernel_state import SLAB_CACHES, SYSCTLS

from .conftest import live, tcpdoctor, tcpdoctor_json

BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="Debian's busybox is not "
                                   "installed (.ci/run installs it as root)")


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A directory nobody can reach too (pytest's own tmp is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="tdcollect-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def script(shared: Path) -> Path:
    path = shared / "collect.sh"
    proc = tcpdoctor("collect", "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    assert path.stat().st_mode & 0o755 == 0o755
    return path


@pytest.fixture(scope="module")
def busybox_path(shared: Path) -> Path:
    """A PATH holding only BusyBox applets (no ss, no coreutils, no Python)."""
    assert BUSYBOX is not None
    root = shared / "busybox"
    root.mkdir()
    for applet in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split():
        (root / applet).symlink_to(BUSYBOX)
    return root


@pytest.fixture
def out_dir(shared: Path) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="out-", dir=shared))
    d.chmod(0o777)  # the unprivileged run writes its bundle here
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_script(ns: str | None, script: Path, out: Path, shell: list[str],
               env: dict[str, str] | None = None, user: bool = False,
               extra: tuple[str, ...] = ()) -> Path:
    cmd = [*shell, str(script), "-i", "1", "-d", str(out), *extra]
    if env is not None:
        cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd]
    if user:  # util-linux's setpriv, found before PATH is narrowed to BusyBox
        cmd = [shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534",
               "--clear-groups", *cmd]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])  # the script prints where it wrote
    assert path.parent == out and path.name.endswith(".tar.gz") and path.exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    return path


def findings(report: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(f["id"], f["severity"], tuple(sorted(p["name"] for p in f["processes"])))
            for f in report["findings"]}


@pytest.fixture
def close_wait_lab() -> Iterator[LabNet]:
    with LabNet(prefix="tdcollect") as lab:  # torn down even when the test fails
        sc = scenarios.SCENARIOS["close-wait"]
        scenarios.build(lab, sc, sc.default_n)
        yield lab


def test_script_is_generated_from_the_readers_tables() -> None:
    text = tcpdoctor("collect").stdout
    assert text.startswith("#!/bin/sh\n") and "@" not in text.replace("$@", "")
    for key in SYSCTLS:
        assert "sys/" + key.replace(".", "/") in text, key
    for cache in SLAB_CACHES:
        assert cache in text
    assert f"{bundle.FORMAT_NAME}" in text and "format=1" in text.replace(
        f"format={bundle.VERSION}", "format=1")
    for shell in (["dash", "-n"], [BUSYBOX, "sh", "-n"] if BUSYBOX else None):
        if shell and shutil.which(shell[0]):
            proc = subprocess.run([*shell], input=text, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr


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


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "absolute", "two-tops", "version"])
def test_hostile_or_foreign_bundles_are_refused(tmp_path: Path, kind: str) -> None:
    good = tarfile.TarInfo("tcpdoctor-x-1/FORMAT")
    members = [(good, b"tcpdoctor-bundle 1\n")]
    if kind == "dotdot":
        members.append((tarfile.TarInfo("tcpdoctor-x-1/../../escape"), b"x"))
    elif kind == "symlink":
        link = tarfile.TarInfo("tcpdoctor-x-1/sockets/ss.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        members.append((link, b""))
    elif kind == "absolute":
        members.append((tarfile.TarInfo("/tmp/escape"), b"x"))
    elif kind == "two-tops":
        members.append((tarfile.TarInfo("other/FORMAT"), b"x"))
    else:
        members = [(good, b"tcpdoctor-bundle 9\n")]
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(_tar(members))
    proc = tcpdoctor("analyze", str(path))
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path.parent / "escape").exists() and not Path("/tmp/escape").exists()
    if kind == "version":
        assert "upgrade tcpdoctor" in proc.stderr
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("tcpdoctor-bundle-*")]
    assert leftovers == []


def test_manpage_covers_every_command_and_option(tmp_path: Path) -> None:
    import click

    from tcpdoctor.cli import cli
    from tcpdoctor.cli.manpage import manpage

    text = manpage(cli)
    ctx = click.Context(cli, info_name="tcpdoctor")
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and f".SS tcpdoctor {name} " in text
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-") and not getattr(param, "hidden", False):
                    assert opt in text, (name, opt)
    page = tmp_path / "tcpdoctor.1"
    page.write_text(text)
    if shutil.which("man"):
        proc = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                              text=True, env={**os.environ, "MANWIDTH": "80",
                                              "MANPAGER": "cat", "PAGER": "cat"})
        assert proc.returncode == 0 and "tcpdoctor collect" in proc.stdout
        assert proc.stderr.strip() == "", proc.stderr
