"""Issue 18: the collect script under dash and BusyBox sh, as root and not, in lab
namespaces; `analyze BUNDLE` against a live `check` of the same lab."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet
from tcpdoctor.model import bundle_layout
from tcpdoctor.model.kernel_state import SLAB_CACHES, SYSCTLS
from tests.conftest import tcpdoctor

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
    assert f"{bundle_layout.FORMAT_NAME}" in text and "format=1" in text.replace(
        f"format={bundle_layout.VERSION}", "format=1")
    for shell in (["dash", "-n"], [BUSYBOX, "sh", "-n"] if BUSYBOX else None):
        if shell and shutil.which(shell[0]):
            proc = subprocess.run([*shell], input=text, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr


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
    private = tmp_path / "tmp"  # its own TMPDIR: other tcpdoctors' files are not looked at
    private.mkdir()
    proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "analyze", str(path)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "TMPDIR": str(private)})
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path.parent / "escape").exists() and not Path("/tmp/escape").exists()
    if kind == "version":
        assert "upgrade tcpdoctor" in proc.stderr
    assert list(private.iterdir()) == []


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


@pytest.mark.parametrize("value", ["99999999999999999999", "18446744073709551617", "601",
                                   "-1", "1e3", " 5", "abc", ""])
def test_interval_is_checked_alike_in_every_shell(script: Path, tmp_path: Path,
                                                  value: str) -> None:
    """Issue 33: an out-of-range -i is refused with the same message under dash, BusyBox sh
    and bash (shells disagree on numbers past 64 bits), before anything is gathered."""
    shells = [[s] for s in ("dash", "bash") if shutil.which(s)]
    if BUSYBOX:
        shells.append([BUSYBOX, "sh"])
    got = set()
    for shell in shells:
        proc = subprocess.run([*shell, str(script), "-i", value, "-d", str(tmp_path)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, (shell, proc.stderr)
        got.add(proc.stderr.strip().splitlines()[0])
    assert len(got) == 1 and list(tmp_path.iterdir()) == []


def test_interval_leading_zeros_are_whole_seconds(script: Path) -> None:
    """0010 is ten seconds, not an error and not octal: checked as text, then compared."""
    for shell in ("dash", "bash"):
        if shutil.which(shell):
            proc = subprocess.run([shell, str(script), "-i", "0601", "-d", "/nonexistent"],
                                  capture_output=True, text=True, timeout=30)
            assert "at most 600 seconds, got '601'" in proc.stderr


def test_interval_counts_from_the_first_uptime_copy(script: Path, tmp_path: Path) -> None:
    """The bundle's two /proc/uptime copies are at least -i apart even when the first
    reading is slow: a CI run saw 0.97 s for -i 1 when the wait counted from before it."""
    real = shutil.which("head")
    assert real is not None
    slow = tmp_path / "bin"
    slow.mkdir()
    # head that takes 0.6 s over the first copy of /proc/uptime only (a marker file)
    (slow / "head").write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = /proc/uptime ] && [ ! -e "{tmp_path}/slowed" ]; then\n'
        f'  : > "{tmp_path}/slowed"; sleep 0.6\nfi\nexec {real} "$@"\n')
    (slow / "head").chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PATH=f"{slow}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    proc = subprocess.run(["sh", str(script), "-i", "1", "-d", str(out)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "slowed").exists()
    with tarfile.open(proc.stdout.strip().splitlines()[-1]) as tar:
        up = {m.name.split("/")[-2]: float(tar.extractfile(m).read().split()[0])  # type: ignore[union-attr]
              for m in tar.getmembers() if m.name.endswith("/uptime")
              and "/netns/" not in m.name}
    assert up["2"] - up["1"] >= 1.0
