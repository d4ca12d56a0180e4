"""Build a large, stable socket population inside a lab namespace for benchmarks.

ESTABLISHED pairs are spread over several holder processes (each process may hold at most
RLIMIT_NOFILE sockets, 20,000 on this machine kind), every pair on its own server port so
that no destination runs out of ephemeral ports.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

from tcpdoctor.lab.net import MAIN_ADDR, LabNet
from tcpdoctor.sources.live import take_snapshot

PER_PROCESS = 15000  # sockets one holder keeps; below the 20,000 open-files limit


def build(lab: LabNet, sockets: int, time_wait: int = 0, close_wait: int = 0,
          syn_sent: int = 0) -> dict[str, int]:
    """About `sockets` ESTABLISHED sockets (pairs), CLOSE_WAIT held by a leaky server,
    SYN_SENT towards a backend that never answers, then `time_wait` server-side TIME_WAIT
    last (they expire after 60 s)."""
    if close_wait:
        lab.spawn(lab.name, "td-leaky", [{"kind": "listen", "addr": MAIN_ADDR, "port": 19998}])
        lab.spawn(lab.peer, "td-peer", [{"kind": "connect", "addr": MAIN_ADDR, "port": 19998,
                                         "n": close_wait, "then": "close"}], timeout=600)
    if syn_sent:
        lab.spawn(lab.name, "td-app", [{"kind": "connect", "addr": "198.19.0.10", "port": 5432,
                                        "n": syn_sent, "then": "nonblock"}], timeout=600)
    pairs = sockets // 2
    port = 20000
    while pairs > 0:
        n = min(PER_PROCESS, pairs)
        lab.spawn(lab.name, f"td-hold-s{port}", [{"kind": "listen", "addr": MAIN_ADDR,
                                                   "port": port}])
        lab.spawn(lab.name, f"td-hold-c{port}", [{"kind": "connect", "addr": MAIN_ADDR,
                                                   "port": port, "n": n}], timeout=600)
        pairs -= n
        port += 1
    if time_wait:
        lab.sysctl(lab.name, "net.ipv4.tcp_max_tw_buckets", str(max(262144, 2 * time_wait)))
        lab.spawn(lab.name, "td-tw-srv", [{"kind": "listen", "addr": MAIN_ADDR, "port": 19999,
                                           "accept": "close"}])
        per = PER_PROCESS
        for i in range(0, time_wait, per):
            lab.spawn(lab.name, f"td-tw-c{i // per}", [{
                "kind": "connect", "addr": MAIN_ADDR, "port": 19999,
                "n": min(per, time_wait - i), "then": "wait-eof-close"}], timeout=600)
    return take_snapshot(netns_name=lab.name, want=frozenset({"state"})).state_counts()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sockets", type=int, default=200_000)
    ap.add_argument("--time-wait", type=int, default=0)
    ap.add_argument("--hold", type=float, default=600)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwind: the lab tears down
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with LabNet(prefix="tdbench") as lab:
        t0 = time.monotonic()
        counts = build(lab, args.sockets, args.time_wait)
        print(f"netns {lab.name}: {sum(counts.values()):,} sockets in "
              f"{time.monotonic() - t0:.1f} s: { {k: v for k, v in counts.items() if v} }",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.hold)
    sys.exit(0)


if __name__ == "__main__":
    main()
