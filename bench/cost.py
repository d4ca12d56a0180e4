"""What pricing the sockets costs `check`: the same diagnosis with and without it.

    sudo python -m bench.cost                      # 1M sockets (the issue's figure)
    sudo python -m bench.cost --sockets 200000

Builds a population (bench.population: ESTABLISHED pairs plus some CLOSE_WAIT), then runs
tcpdoctor's own diagnose() in alternating rounds inside its namespace: once as shipped
(skmem asked of the kernel, slab sizes read, every finding priced, the cost section built),
once with those parts switched off by patching them here, in the benchmark only. Prints the
median times, their ratio, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench.population import build
from tcpdoctor.lab.net import LabNet

ROUND = r"""
import json, sys, time
import numpy as np
from tcpdoctor.diagnose import diagnose
from tcpdoctor.sources.target import Target
if sys.argv[1] == "off":
    from tcpdoctor.analysis import check, context, cost
    from tcpdoctor.sources import kstate
    from tcpdoctor.sources.netlink import dump, layout
    dump.INFO_EXT = 1 << (layout.INET_DIAG_INFO - 1)  # tcp_info only, no skmem
    kstate.read_costs = lambda state, proc_root="/proc": None
    def unpriced(snap, kernel):
        z = np.zeros(len(snap), np.uint64)
        return cost.SocketCost(z, z, z, z, z, False, False)
    context.socket_cost = unpriced
    check.summary = lambda *a: {}
t0 = time.perf_counter()
d = diagnose(Target(), interval=0.0)
took = time.perf_counter() - t0
print(json.dumps({"seconds": took, "sockets": d.sample.snap.count(),
                  "priced": bool(d.report.cost)}))
"""


def one(ns: str, mode: str) -> dict[str, float]:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", ROUND, mode],
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sockets", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with LabNet(prefix="tdbench") as lab:
        counts = build(lab, args.sockets, close_wait=2000)
        print(f"population: {sum(counts.values()):,} sockets", flush=True)
        times: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.rounds):
            for mode in ("on", "off"):
                got = one(lab.name, mode)
                assert got["priced"] == (mode == "on")
                times[mode].append(got["seconds"])
        on, off = (statistics.median(times[m]) for m in ("on", "off"))
        print(f"check with costs    {on:7.3f} s (median of {args.rounds})")
        print(f"check without costs {off:7.3f} s")
        print(f"ratio               {on / off:7.3f} (target <= 1.2)")
        print(json.dumps({"sockets": sum(counts.values()), "with_costs_s": round(on, 3),
                          "without_costs_s": round(off, 3), "ratio": round(on / off, 3),
                          "runs": times, "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
