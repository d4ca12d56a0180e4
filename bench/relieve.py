"""How fast `relieve` ends a CLOSE_WAIT leak, against `ss -K` on the same population.

    sudo python -m bench.relieve                   # 10,000 CLOSE_WAIT (the issue's figure)
    sudo python -m bench.relieve --sockets 2000

Each round builds a fresh lab leak (a server that never closes, clients that closed) and
ends it one way: `ss -K state close-wait` (iproute2: SOCK_DESTROY for every match, no
guard), `tcpdoctor relieve CLOSE_WAIT_LEAK --reset --apply` (a fresh diagnosis, the report
written first, SOCK_DESTROY by cookie, the table read again) and the graceful default
(pidfd_getfd + shutdown). --rate is lifted so that the figure is the work, not the pacing.
Prints seconds per method, sockets per second and the ratio to ss -K, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet


def _ss_kill(lab: LabNet) -> float:
    t0 = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", lab.name, "ss", "-K", "-tan", "state", "close-wait"],
                   capture_output=True, check=True)
    return time.perf_counter() - t0


def _relieve(lab: LabNet, *extra: str) -> float:
    with tempfile.TemporaryDirectory(prefix="tcpdoctor-bench-") as state:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "tcpdoctor", "relieve", "CLOSE_WAIT_LEAK",
                               "--netns", lab.name, "--apply", "--rate", "1000000", "--max",
                               "1000000", "--state-dir", state, "--json", *extra],
                              capture_output=True, text=True)
        took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"relieve failed: {proc.stderr.strip()}")
    return took


def _left(lab: LabNet) -> int:
    out = subprocess.run(["ip", "netns", "exec", lab.name, "ss", "-Htan", "state", "close-wait"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def one(method: str, n: int) -> float:
    sc = scenarios.SCENARIOS["close-wait"]
    with LabNet(prefix="tdbench") as lab:
        scenarios.build(lab, sc, n)
        took = (_ss_kill(lab) if method == "ss -K" else
                _relieve(lab, "--reset") if method == "relieve --reset" else _relieve(lab))
        if _left(lab):
            raise SystemExit(f"{method} left {_left(lab)} CLOSE_WAIT sockets")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sockets", type=int, default=10_000)
    args = ap.parse_args()
    times = {m: one(m, args.sockets) for m in ("ss -K", "relieve --reset", "relieve")}
    base = times["ss -K"]
    for method, took in times.items():
        print(f"{method:16} {took:6.2f} s  {args.sockets / took:9,.0f} sockets/s  "
              f"{took / base:5.2f}x ss -K")
    print(json.dumps({"sockets": args.sockets, "seconds": times}))


if __name__ == "__main__":
    main()
