"""A reader that leaves early (`| head -1`, `| true`) is not a failure: every command exits
as if its output had been read whole, under `set -o pipefail`, text and JSON alike."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests.conftest import DATA

HEALTHY = str(DATA / "real" / "jc-centos-7.7__netstat-p.txt")
COMMANDS = [
    ["states"], ["states", "--json"], ["states", "--csv"], ["top", "--by", "state"],
    ["top", "--by", "state", "--json"], ["analyze", HEALTHY], ["analyze", HEALTHY, "--json"],
    ["tune", "--explain", "net.ipv4.tcp_tw_reuse"], ["--help"], ["lab", "--list"],
]


def shell(pipeline: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"set -o pipefail; {pipeline}"], capture_output=True,
                          text=True, check=False, timeout=120)


# `true` never reads (the first write fails); `head -1` reads a line, then leaves.
CASES = [(args, "true") for args in COMMANDS] + [
    (args, "head -1") for args in (["states"], ["top", "--by", "state", "--json"],
                                   ["analyze", HEALTHY])]


@pytest.mark.parametrize(("args", "reader"), CASES,
                         ids=lambda a: " ".join(a)[:40] if isinstance(a, list) else a)
def test_a_closed_pipe_keeps_the_verdict(args: list[str], reader: str) -> None:
    cmd = shlex.join([sys.executable, "-m", "tcpdoctor", *args])
    whole = shell(f"{cmd} > /dev/null")
    cut = shell(f"{cmd} | {reader}")
    assert cut.returncode == whole.returncode, cut.stderr
    assert "Traceback" not in cut.stderr and "Broken pipe" not in cut.stderr
    assert "Exception ignored" not in cut.stderr


def test_the_healthy_capture_is_healthy() -> None:
    """So that the pipe test above also shows 0 stays 0."""
    assert shell(shlex.join([sys.executable, "-m", "tcpdoctor", "analyze", HEALTHY])
                 + " > /dev/null").returncode == 0
