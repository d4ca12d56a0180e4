"""Bundles arrive from customers: hostile or broken ones end in bounded time and memory
with one line naming BUNDLE:member, and text from them reaches people escaped."""

from __future__ import annotations

import gzip
import io
import os
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import DATA

TOP = "tcpdoctor-x-1"


def header(name: str, size: int, kind: bytes = b"0") -> bytes:
    """A raw ustar header claiming `size` (tarfile would not write a lying one)."""
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = kind
    h[257:265] = b"ustar\x0000"
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def analyze(tmp: Path, raw: bytes) -> tuple[subprocess.CompletedProcess[str], float]:
    path = tmp / "bundle.tar.gz"
    path.write_bytes(gzip.compress(raw))
    private = tmp / "t"
    private.mkdir(exist_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", LIMITED, str(path)], capture_output=True,
                          text=True, env={**os.environ, "TMPDIR": str(private)}, timeout=60)
    assert list(private.iterdir()) == []  # nothing left unpacked
    return proc, time.monotonic() - t0


# analyze under an address-space cap: a reader that allocates what a header claims fails.
LIMITED = ("import resource, sys, runpy\n"
           "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
           "sys.argv = ['tcpdoctor', 'analyze', sys.argv[1]]\n"
           "runpy.run_module('tcpdoctor', run_name='__main__')\n")


@pytest.mark.parametrize("raw,what", [
    (header(f"{TOP}/PaxHeaders/x", 2 << 30, b"x"), "tar name header"),
    (header("././@LongLink", 1 << 30, b"L"), "tar name header"),
    (header(f"{TOP}/FORMAT", 2 << 30), f"bundle.tar.gz:{TOP}/FORMAT"),
    (header(f"{TOP}/processes.txt", 400 << 20), "a file of at most 16 MB"),
    (header(f"{TOP}/sockets/ss.txt", 1 << 30), "a file of at most 256 MB"),
])
def test_oversized_headers_and_members_are_refused_at_once(tmp_path: Path, raw: bytes,
                                                           what: str) -> None:
    proc, took = analyze(tmp_path, raw + bytes(1024))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and took < 10
    assert len(proc.stderr.strip().splitlines()) == 1 and what in proc.stderr, proc.stderr
    assert "tcpdoctor-bundle-" not in proc.stderr  # never the temporary directory


def test_a_storm_of_small_members_ends_quickly(tmp_path: Path) -> None:
    raw = b"".join(header(f"{TOP}/m{i}", 0) for i in range(25_000)) + bytes(1024)
    proc, took = analyze(tmp_path, raw)
    assert proc.returncode == 3 and "at most 20,000 files" in proc.stderr and took < 10


def _bundle(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_hostile_contents_give_a_report_with_no_raw_control_byte(tmp_path: Path) -> None:
    raw = _bundle({
        "FORMAT": b"tcpdoctor-bundle 1\n",
        "meta.txt": b"host=evil\x1b]0;PWN\x07\nkernel=6.1\n",
        "notes.txt": b"could not read x \x1b[2J\n",
        "processes.txt": b"\xc2\xb2 5 1024 a\n1 12345678901234567890123 1024 init\n"
                         b"7 \x1b[31m 9 x\n",
        "sockets/tcp": (DATA / "proc_net_tcp").read_bytes(),
        "sockets/owners.txt": b"99999999999999999999999 1\n",
        "proc/1/sys/fs/file-nr": b"abc def ghi\n",
    })
    proc, _ = analyze(tmp_path, raw)
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for out in (proc.stdout, proc.stderr):
        assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;PWN\\x07" in proc.stdout


def test_the_memory_cap_of_these_tests_is_real() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    assert soft == resource.RLIM_INFINITY or soft > 1 << 30  # the cap is set per child only
