"""--netns all on many namespaces, against one namespace holding the same sockets.

    sudo python -m bench.all_netns                    # 200 namespaces x 500 sockets
    sudo python -m bench.all_netns --namespaces 50 --per 200

Builds N named namespaces, each with a lab worker holding PER/2 loopback pairs, and one
more namespace holding all N*PER sockets (bench.population); then times, as whole
processes in alternating rounds (median wall time, peak RSS): `states --netns all`,
`check --netns all --interval 0` and the shell loop `for ns in ...; do ip netns exec $ns
ss -tan; done | awk` while only the N namespaces exist, then `states` of the single
namespace once they are gone (so that --netns all does not count it too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench.population import build
from tcpdoctor.lab.net import LabNet

PY = sys.executable
AWK = "awk '{++s[$1]} END {for (k in s) print k, s[k]}' > /dev/null"
# The floor: one netlink dump (state only) per namespace, on the sweep's threads, nothing
# else. Each dump walks the kernel's established hash, shared by all namespaces unless
# net.ipv4.tcp_child_ehash_entries gave them their own: its cost grows with the hash size
# times the namespace count, whatever the sockets.
FLOOR = """
from tcpdoctor.sources import netlink, sweep
from tcpdoctor.sources.target import Target
spaces = every_netns.discover(Target()).namespaces
sweep.in_each(spaces, lambda ns: netlink.read_sockets(frozenset({"state"}), parallel=False))
"""
CHILD_EHASH = "/proc/sys/net/ipv4/tcp_child_ehash_entries"


def measure(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1, 2):
        raise SystemExit(f"{argv}: exit {code}")
    return took, usage.ru_maxrss


def namespaces(n: int, per: int, tag: str) -> tuple[list[str], list[subprocess.Popen[str]]]:
    names, procs = [], []
    for i in range(n):
        name = f"tdbenchns-{tag}-{i}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        names.append(name)
        spec = json.dumps({"name": f"td-ns{i}", "actions": [
            {"kind": "listen", "addr": "127.0.0.1", "port": 8000},
            {"kind": "connect", "addr": "127.0.0.1", "port": 8000, "n": per // 2}]})
        procs.append(subprocess.Popen(["ip", "netns", "exec", name, PY, "-m",
                                       "tcpdoctor.lab.worker", spec],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().startswith("READY")
    return names, procs


def teardown(names: list[str], procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.terminate()  # only the workers this benchmark started
    for p in procs:
        p.wait(timeout=30)
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--namespaces", type=int, default=200)
    ap.add_argument("--per", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child-ehash", type=int, default=0, metavar="N",
                    help="Create the namespaces with their own established hash of N "
                         "buckets (net.ipv4.tcp_child_ehash_entries, restored afterwards)")
    args = ap.parse_args()
    before = None
    if args.child_ehash:
        with open(CHILD_EHASH) as fh:
            before = fh.read().strip()
        with open(CHILD_EHASH, "w") as fh:
            fh.write(str(args.child_ehash))
    try:
        runs = run_phases(args)
    finally:
        if before is not None:
            with open(CHILD_EHASH, "w") as fh:
                fh.write(before)
    report(args, runs)


def run_phases(args: argparse.Namespace) -> dict[str, list[tuple[float, int]]]:
    tag = os.urandom(3).hex()
    runs: dict[str, list[tuple[float, int]]] = {}
    names, procs = namespaces(args.namespaces, args.per, tag)
    try:  # phase 1: the many namespaces alone
        loop = " ".join(names)
        many = {
            "states --netns all": [PY, "-m", "tcpdoctor", "states", "--netns", "all",
                                   "--json"],
            "check --netns all --interval 0": [PY, "-m", "tcpdoctor", "check", "--netns",
                                               "all", "--json", "--interval", "0"],
            "for ns: ip netns exec ss -tan | awk": [
                "sh", "-c", f"for ns in {loop}; do ip netns exec $ns ss -tan; done | {AWK}"],
            "floor: one dump per namespace": [PY, "-c", FLOOR],
        }
        for _ in range(args.rounds):
            for name, argv in many.items():
                runs.setdefault(name, []).append(measure(argv))
    finally:
        teardown(names, procs)
    with LabNet(prefix="tdbench") as single:  # phase 2: the same sockets in one namespace
        build(single, args.namespaces * args.per)
        argv = ["ip", "netns", "exec", single.name, PY, "-m", "tcpdoctor", "states", "--json"]
        for _ in range(args.rounds):
            runs.setdefault("states (one namespace, same sockets)", []).append(measure(argv))
    return runs


def report(args: argparse.Namespace, runs: dict[str, list[tuple[float, int]]]) -> None:
    res = {k: {"seconds": statistics.median(t for t, _ in v),
               "rss_mb": max(r for _, r in v) / 1024} for k, v in runs.items()}
    for k, v in res.items():
        print(f"{k:40} {v['seconds']:7.3f} s  {v['rss_mb']:7.1f} MB")
    ratio = res["states --netns all"]["seconds"] / res[
        "states (one namespace, same sockets)"]["seconds"]
    print(f"states --netns all / one namespace: {ratio:.2f} (target <= 1.5)")
    floor = res["states --netns all"]["seconds"] / res["floor: one dump per namespace"][
        "seconds"]
    print(f"states --netns all / floor: {floor:.2f}")
    print(json.dumps({"namespaces": args.namespaces, "per": args.per,
                      "child_ehash": args.child_ehash, "results": res,
                      "ratio_states": round(ratio, 3), "ratio_floor": round(floor, 3),
                      "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
