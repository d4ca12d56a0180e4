"""Shared fixtures. Live tests build real sockets in private network namespaces (root only)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tcpdoctor.lab.net import MAIN_ADDR, LabNet

DATA = Path(__file__).parent / "data"
# Hypothesis keeps its examples in memory: a test run writes nothing into the tree (which
# an unprivileged run of the unit layer may not write to anyway).
settings.register_profile("tcpdoctor", database=None)
settings.load_profile("tcpdoctor")

SS_STATES = {
    "ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}


def live_reason() -> str | None:
    if os.geteuid() != 0:
        return "live tests need root to create network namespaces (CI runs them as root)"
    if shutil.which("ip") is None or shutil.which("ss") is None:
        return "live tests need iproute2 (ip, ss)"
    return None


live = pytest.mark.skipif(live_reason() is not None, reason=live_reason() or "")


def in_netns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          check=check)


def ss_lines(ns: str, opts: str = "-Htan") -> list[list[str]]:
    return [line.split() for line in in_netns(ns, "ss", opts).stdout.splitlines() if line]


def ss_state_counts(ns: str) -> Counter[str]:
    return Counter(SS_STATES[f[0]] for f in ss_lines(ns))


def tcpdoctor(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcpdoctor", *args], capture_output=True,
                          text=True, check=check)


def tcpdoctor_json(*args: str) -> Any:
    proc = tcpdoctor(*args, "--json")
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def wait_for(pred: Any, timeout: float = 20.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


# The mixed population of issue 2: expected counts per state in the main namespace.
POPULATION = {
    "ESTABLISHED": 2 * 20 + 2 * 3,
    "CLOSE_WAIT": 15,
    "FIN_WAIT2": 15,
    "SYN_SENT": 4,
    "TIME_WAIT": 12 + 10,
    "LISTEN": 5,
}


def build_population(lab: LabNet) -> None:
    ns = lab.name
    lab.spawn(ns, "td-srv", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080}])
    lab.spawn(ns, "td-cli", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080, "n": 20}])
    lab.spawn(ns, "td-leak", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8081}])
    lab.spawn(ns, "td-fin", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8081, "n": 15,
                              "then": "shutdown-wr"}])
    lab.spawn(ns, "td-dead", [{"kind": "connect", "addr": "198.19.0.10", "port": 5432, "n": 4,
                               "then": "nonblock"}])
    lab.spawn(ns, "td-v6", [{"kind": "listen", "addr": "::1", "port": 8443}])
    lab.spawn(ns, "td-v6c", [{"kind": "connect", "addr": "::1", "port": 8443, "n": 3}])
    # TIME_WAIT last: it expires after 60 s.
    lab.spawn(ns, "td-close", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8082,
                                "accept": "close"}])
    lab.spawn(ns, "td-twc", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8082, "n": 12,
                              "then": "wait-eof-close"}])
    lab.spawn(ns, "td-eof", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8083,
                              "accept": "close-on-eof"}])
    lab.spawn(ns, "td-short", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8083, "n": 10,
                                "then": "close"}])
    settled = wait_for(lambda: dict(ss_state_counts(ns)) == POPULATION)
    assert settled, f"population did not settle: {dict(ss_state_counts(ns))}"


@pytest.fixture(scope="module")
def population() -> Iterator[LabNet]:
    reason = live_reason()
    if reason:
        pytest.skip(reason)
    lab = LabNet(prefix="tdtest")
    try:
        lab.open()
        build_population(lab)
        yield lab
    finally:
        lab.close()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at where/mnt (root): a disk that fills up on demand."""
    mnt = where / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tdtest-fs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# tcpdoctor as nobody: everything is imported as root first (the interpreter lives under
# /root, which nobody may not read), then the process gives up root and runs the command.
AS_NOBODY = """
import importlib, os, pkgutil, sys
import tcpdoctor
for m in pkgutil.walk_packages(tcpdoctor.__path__, "tcpdoctor."):
    if not m.name.endswith("__main__") and ".exporter" not in m.name:
        importlib.import_module(m.name)
import rich.console, rich.table, rich.text, tomllib, difflib, encodings.ascii
import encodings.latin_1, gzip, json, sqlite3, ctypes, textwrap, csv, urllib.parse
import numpy.ma, numpy.lib.recfunctions
os.setgroups([]); os.setgid(65534); os.setuid(65534)
tcpdoctor.cli.main(sys.argv[1:])
"""


def tcpdoctor_as_nobody(*args: str, env: dict[str, str] | None = None,
                        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AS_NOBODY, *args], capture_output=True,
                          text=True, check=False, env=env, timeout=300)
