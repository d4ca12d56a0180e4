"""Mutation fuzzing of everything `analyze` reads: raw netlink dumps, snapshots, ss,
netstat, Windows netstat and /proc/net/tcp text, plain and gzip; collect bundles (their tar
structure and every member the script writes), trace event batches, and cgroup, namespace
and process names (tests/fuzz_inputs.py).

    python -m tests.fuzz --seconds 40            # the short run CI makes
    python -m tests.fuzz --count 1000000 -j 2    # a long run, on demand

Each input goes through analyze's whole path in-process (load, merge, every rule, JSON and
text report) under a time limit (SIGALRM) and a memory watch (peak RSS). An input that
raises anything but tcpdoctor's own one-line errors, runs over the time limit or takes the
process over the memory limit is a crasher: it is kept in tests/data/fuzz-regressions/,
which the suite replays (tests/unit/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import resource
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests import fuzz_inputs

DATA = Path(__file__).parent / "data"
REGRESSIONS = DATA / "fuzz-regressions"
TIME_LIMIT = 30  # seconds per input
MEMORY_LIMIT_MB = 1024


def seeds() -> dict[str, bytes]:
    """One or more real inputs of every format analyze reads."""
    from tests.unit.test_analyze import NETSTAT_SAMPLE, SS_SAMPLE, WINDOWS_SAMPLE

    out = {
        "netlink": (DATA / "ss1.dump").read_bytes(),
        "netlink-info": (DATA / "ss_tani_lab.dump").read_bytes(),
        "proc": (DATA / "proc_net_tcp").read_bytes(),
        "proc6": (DATA / "proc_net_tcp6").read_bytes(),
        "ss": (DATA / "proc_net_tcp.ss").read_bytes(),
        "ss-p": SS_SAMPLE.encode(),
        "ss-i": (DATA / "ss_tani_lab.ss").read_bytes(),
        "netstat": NETSTAT_SAMPLE.encode(),
        "windows": WINDOWS_SAMPLE.encode(),
        "snapshot": _snapshot(),
    }
    from tests.unit.test_lsof import LINUX

    out["lsof"] = LINUX.encode()
    out["counts"] = b"$ netstat -ant | awk '{print $6}' | sort | uniq -c\n  300 CLOSE_WAIT\n" \
        b"   4000 TIME_WAIT\n    120 ESTABLISHED\nTCP:   4432 (estab 120, timewait 4000)\n"
    real = DATA / "real"
    out["table"] = (real / "issues-openradar-pcblist-generic-header.txt").read_bytes() + \
        b"Proto Local Remote State\ntcp 10.0.0.1:23 10.0.0.9:5151 ESTABLISHED\n"
    out["redacted"] = (real / "issues-diamond-netstat-dots-redacted.txt").read_bytes() + \
        (real / "issues-node-fin-wait2-xx-redacted.txt").read_bytes()
    out["inline"] = (real / "issues-lsof-org-backticked-rows.txt").read_bytes()
    out["squeezed"] = (real / "pages-adays-uniq-c-squeezed.txt").read_bytes() + \
        (real / "pages-mylinux-ss-s-squeezed.txt").read_bytes()
    out["gzip"] = gzip.compress(out["ss-p"])
    out["bundle"] = fuzz_inputs.pack(fuzz_inputs.bundle_members())
    out["trace"] = fuzz_inputs.trace_seed()
    out["names"] = fuzz_inputs.NAMES_SEED
    out["ctnetlink"] = (DATA / "conntrack" / "nat-gateway.ctnetlink").read_bytes()
    out["conntrack"] = (DATA / "conntrack" / "nat-gateway.proc").read_bytes()
    return out


def _snapshot() -> bytes:
    from tcpdoctor.model import snapshot_file
    from tcpdoctor.model.kernel_state import KernelState
    from tests import synth

    snap = synth.snapshot({"n": 4, "state": "CLOSE_WAIT", "pid": 7},
                          {"n": 3, "state": "TIME_WAIT", "sport": 8080}, names={7: "app"})
    kernel = KernelState(0.0, sockstat={"TCP": {"inuse": 7, "tw": 3}},
                         counters={"Tcp.OutRsts": 1},
                         sysctls={"net.ipv4.tcp_max_tw_buckets": "131072"}, file_nr=(1, 0, 9))
    return snapshot_file.to_bytes("s.json", snap, kernel)


# --- mutation strategies --------------------------------------------------------------

def flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def huge_number(rng: random.Random, data: bytes) -> bytes:
    runs = [m.span() for m in re.finditer(rb"\d+", data)]
    if not runs:
        return data
    a, z = rng.choice(runs)
    big = rng.choice([b"9" * 5000, b"99999999999", b"4294967296", b"18446744073709551616",
                      b"-1", b"1.2.3", b"."])
    return data[:a] + big + data[z:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]


def length_field(rng: random.Random, data: bytes) -> bytes:
    """Netlink: move one message's length field (the walk must still end)."""
    offs, off = [], 0
    while off + 16 <= len(data) and len(offs) < 64:
        length = struct.unpack_from("=I", data, off)[0]
        offs.append(off)
        off += max(4, (length + 3) & ~3)
    if not offs:
        return flip(rng, data)
    at = rng.choice(offs)
    b = bytearray(data)
    value = struct.unpack_from("=I", b, at)[0] + rng.choice([-8, -4, -2, -1, 1, 2, 4, 8, 1000])
    struct.pack_into("=I", b, at, max(0, min(value, 2**32 - 1)))
    return bytes(b[:rng.choice([len(b), at + max(0, value)])])


def long_line(rng: random.Random, data: bytes) -> bytes:
    at = data.find(b"\n", rng.randrange(len(data) + 1))
    at = len(data) if at < 0 else at + 1
    return data[:at] + rng.choice([b"A", b"9", b" "]) * rng.choice([70_000, 300_000]) + \
        b"\n" + data[at:]


def lines(rng: random.Random, data: bytes) -> bytes:
    rows = data.split(b"\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(rows))
        rows.insert(rng.randrange(len(rows) + 1), rows[i]) if rng.random() < 0.5 else \
            rows.pop(i) if len(rows) > 1 else None
    return b"\n".join(rows)


def json_edit(rng: random.Random, data: bytes) -> bytes:
    try:
        doc = json.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    except (ValueError, OSError):
        return flip(rng, data)
    key = rng.choice(sorted(doc))
    doc[key] = rng.choice([None, 5, "x", [], {}, -1, 2**70, [[[[]]]]])
    if rng.random() < 0.3 and isinstance(doc.get("columns"), dict) and doc["columns"]:
        col = rng.choice(sorted(doc["columns"]))
        doc["columns"][col] = rng.choice([None, "x", {"dtype": "u1"}, {"dtype": "u8",
                                                                        "data": "AAAA"}])
    return json.dumps(doc, sort_keys=rng.random() < 0.5).encode()


STRATEGIES = [flip, huge_number, truncate, long_line, lines]


def mutate(rng: random.Random, kind: str, corpus: dict[str, bytes]) -> bytes:
    data = corpus[kind]
    if kind == "bundle" and rng.random() < 0.8:
        return fuzz_inputs.mutate_bundle(rng, STRATEGIES)
    if kind == "trace":
        return fuzz_inputs.mutate_trace(rng, data)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if kind.startswith(("netlink", "ctnetlink")) and roll < 0.4:
            data = length_field(rng, data)
        elif kind == "snapshot" and roll < 0.5:
            data = json_edit(rng, data)
        elif roll < 0.1:
            data = splice(rng, data, corpus[rng.choice(sorted(corpus))])
        else:
            data = rng.choice(STRATEGIES)(rng, data)
    if rng.random() < 0.1:
        data = gzip.compress(data, compresslevel=1)
    return data


# --- running one input ----------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def analyze(path: str) -> str:
    """analyze's path, in-process: 'ok', 'refused' (a one-line error) or raises."""
    from tcpdoctor.analysis.check import run_rules
    from tcpdoctor.analysis.context import Context
    from tcpdoctor.errors import TcpDoctorError
    from tcpdoctor.render.report import render
    from tcpdoctor.sources import offline

    try:
        snap, kernel, _ = offline.load(path)
        report = run_rules(Context.saved(offline.merge([snap]), kernel))
        json.dumps(report.as_json())
        with contextlib.redirect_stdout(io.StringIO()):
            render(report)
    except TcpDoctorError:
        return "refused"
    return "ok"


def run_one(data: bytes, tmp: str, kind: str = "") -> str:
    """One input of a kind (a regression file's kind is the start of its name)."""
    with open(tmp, "wb") as fh:
        fh.write(data)
    signal.alarm(TIME_LIMIT)
    try:
        if kind == "trace":
            return fuzz_inputs.run_trace(data)
        if kind == "names":
            return fuzz_inputs.run_names(data)
        if kind == "ctnetlink":
            return fuzz_inputs.run_ctnetlink(data)
        if kind == "conntrack":
            return fuzz_inputs.run_conntrack_text(data)
        return analyze(tmp)
    except Hang:
        return "hang"
    except MemoryError:
        return "memory"
    except Exception as exc:
        return f"internal:{type(exc).__name__}"
    finally:
        signal.alarm(0)


def keep(kind: str, data: bytes, outcome: str) -> Path:
    REGRESSIONS.mkdir(exist_ok=True)
    name = f"{kind}-{outcome.split(':')[0]}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path = REGRESSIONS / name
    path.write_bytes(data)
    return path


def fuzz(count: int | None, seconds: float | None, seed: int, quiet: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    corpus = seeds()
    kinds = sorted(corpus)
    stats: dict[str, Counter[str]] = {k: Counter() for k in kinds}
    crashers: list[str] = []
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.NamedTemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None,
                                     suffix=".fuzz") as tmp:
        n = 0
        while (count is None or n < count) and (seconds is None
                                                or time.monotonic() - start < seconds):
            kind = kinds[n % len(kinds)]
            data = mutate(rng, kind, corpus)
            outcome = run_one(data, tmp.name, kind)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            if rss_mb > MEMORY_LIMIT_MB and "memory" not in stats[kind]:
                outcome = "memory"
            stats[kind][outcome.split(":")[0]] += 1
            if outcome not in ("ok", "refused"):
                crashers.append(str(keep(kind, data, outcome)))
            n += 1
            if not quiet and n % 10000 == 0:
                print(f"{n:,} inputs, {time.monotonic() - start:.0f} s, "
                      f"{len(crashers)} crashers", file=sys.stderr, flush=True)
    return {"inputs": n, "seconds": round(time.monotonic() - start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "per_format": {k: dict(v) for k, v in stats.items()}, "crashers": crashers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, help="inputs to try")
    ap.add_argument("--seconds", type=float, help="stop after this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    if args.count is None and args.seconds is None:
        args.seconds = 40.0
    result = fuzz(args.count, args.seconds, args.seed, args.quiet)
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["crashers"] else 0)


if __name__ == "__main__":
    main()
