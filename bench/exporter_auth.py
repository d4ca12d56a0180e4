"""Basic auth of the exporter under attack: wrong passwords for an existing and an unknown
user should cost the same (no user enumeration by timing), and a storm of 40 concurrent
wrong passwords should leave real scrapes under 2x their idle latency.

    python -m bench.exporter_auth [--cost 10] [--rounds 15]
"""

from __future__ import annotations

import argparse
import base64
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def get(port: int, user: str, password: str) -> float:
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": auth})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
    except urllib.error.HTTPError:
        pass
    return time.perf_counter() - t0


def start(cost: int) -> tuple[subprocess.Popen[str], int]:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=cost)).decode()
    cfg = Path(tempfile.mkdtemp()) / "web.yml"
    cfg.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "exporter", "--listen",
                             f"127.0.0.1:{port}", "--web-config-file", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and "serving" in proc.stderr.readline()
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cost", type=int, default=10, help="bcrypt cost of the user's hash")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    proc, port = start(args.cost)
    try:
        get(port, "prom", "s3cret")  # warm: the first scrape verifies and remembers
        known, unknown = [], []
        for _ in range(args.rounds):
            known.append(get(port, "prom", "wrong"))
            unknown.append(get(port, "mallory", "wrong"))
        k, u = statistics.median(known), statistics.median(unknown)
        idle = statistics.median(get(port, "prom", "s3cret") for _ in range(args.rounds))
        stop = threading.Event()

        def storm() -> None:
            while not stop.is_set():
                get(port, "prom", "wrong")

        threads = [threading.Thread(target=storm, daemon=True) for _ in range(40)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        busy = statistics.median(get(port, "prom", "s3cret") for _ in range(args.rounds))
        stop.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"wrong password, existing user  {k * 1000:8.1f} ms (median of {args.rounds})")
    print(f"wrong password, unknown user   {u * 1000:8.1f} ms  (difference "
          f"{abs(k - u) / max(k, u):.1%}; target < 10%)")
    print(f"scrape, idle                   {idle * 1000:8.1f} ms")
    print(f"scrape, 40 concurrent bad pw   {busy * 1000:8.1f} ms  ({busy / idle:.2f}x idle; "
          "target < 2x)")


if __name__ == "__main__":
    main()
