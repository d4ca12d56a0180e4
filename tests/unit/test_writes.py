"""Whole files or a clear failure: the one writer on a file-size limit, a full filesystem
and a read-only one. Never exit 0 with a partial file, never an internal error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATA, small_tmpfs

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def tcpdoctor_limited(shell_prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    quoted = " ".join(f"'{a}'" for a in args)
    return subprocess.run(["bash", "-c", f"{shell_prefix}; exec {sys.executable} -m "
                           f"tcpdoctor {quoted}"], capture_output=True, text=True, check=False)


def test_file_size_limit_is_an_error_not_a_truncated_file(tmp_path: Path) -> None:
    out = tmp_path / "dropin.conf"
    proc = tcpdoctor_limited("ulimit -f 1", "tune", "--interval", "0", "--audit-file",
                             str(DATA / "seed_sysctl.conf"), "--write", str(out))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == f"tcpdoctor: cannot write {out}: file too large (a " \
        "file-size limit, ulimit -f?)"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "8k") as mnt:
        yield mnt


