"""A loopback connection storm: a server whose acceptors close every connection at once and
a client that connects and closes at a paced rate (or as fast as it can).

    python -m bench.storm --port 7001 --rate 15000 --seconds 10

Run it inside a namespace the benchmark made (bench.trace_storm does). Prints one JSON line:
the connections made and the rate reached. Every process it forks is in its own process
group and is killed, by pid, before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time

BATCH = 100  # connections between two looks at the clock


def acceptors(port: int, count: int) -> list[int]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(4096)
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            while True:
                conn, _ = server.accept()
                conn.close()
        pids.append(pid)
    server.close()
    return pids


def storm(port: int, rate: float, seconds: float) -> tuple[int, float]:
    """Connect and close until `seconds` pass, `rate` per second (0: as fast as it can)."""
    target = ("127.0.0.1", port)
    made, start = 0, time.monotonic()
    end = start + seconds
    while True:
        for _ in range(BATCH):
            conn = socket.socket()
            conn.connect(target)
            conn.close()
        made += BATCH
        now = time.monotonic()
        if now >= end:
            return made, now - start
        if rate:
            ahead = start + made / rate - now
            if ahead > 0:
                time.sleep(ahead)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=7001)
    ap.add_argument("--rate", type=float, default=15_000, help="connections/s; 0: no pacing")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--acceptors", type=int, default=2)
    args = ap.parse_args()
    pids = acceptors(args.port, args.acceptors)
    try:
        made, took = storm(args.port, args.rate, args.seconds)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    sys.stdout.write(json.dumps({"connections": made, "seconds": round(took, 3),
                                 "rate": round(made / took, 1)}) + "\n")


if __name__ == "__main__":
    main()
