"""Start-up cost: what `tcpdoctor states --json` spends before it reads a socket, against
`python -c 'import numpy'` (what every numpy tool pays), and whole runs in an empty
namespace. Alternating runs, median wall time of whole processes.

    python -m bench.startup [--runs 21]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PY = sys.executable
# Everything `states --json` imports and parses before its first netlink read.
BEFORE_READING = (
    "from tcpdoctor.cli import cli; import tcpdoctor.sources.live, tcpdoctor.render.output; "
    "ctx = cli.make_context('tcpdoctor', ['states', '--json']); "
    "cli.get_command(ctx, 'states').make_context('states', ['--json'], parent=ctx)")
CASES = {
    "python -c 'import numpy'": [PY, "-c", "import numpy"],
    "states --json, up to the first read": [PY, "-c", BEFORE_READING],
    "states --json, empty namespace": ["unshare", "-n", PY, "-m", "tcpdoctor", "states",
                                       "--json"],
}


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.runs):
        for name, argv in CASES.items():
            times[name].append(wall(argv))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["python -c 'import numpy'"]
    for name, t in med.items():
        print(f"{name:40} {t * 1000:7.1f} ms  ({(t - base) * 1000:+6.1f} ms over numpy)")
    print(f"\nmedian of {args.runs} alternating runs; target: states before reading "
          "<= 40 ms over numpy")


if __name__ == "__main__":
    main()
