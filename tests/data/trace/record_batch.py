"""How tests/data/trace/batch.npy was recorded (root, once): real kernel events of a lab
namespace, as the raw reader decodes them, for tests/unit/test_tracker.py to replay
through the tracker without root.

    sudo PYTHONPATH=. python tests/data/trace/record_batch.py

In one private namespace (loopback traffic only), each client opens N connections and
holds each HOLD seconds: td-cli-a to td-srv-a:8080, the client closing first; td-cli-b to
td-srv-b:8081, the server closing first; td-cli-c to the closed port 8089 (refused);
td-hungry, in a second namespace whose port range holds 10 ports, holds 10 connections
to td-srv-d:8082 and tries 7 more, which fail for want of a local port (EADDRNOTAVAIL).
truth.json says what was done; comms.json the command name of every pid (thread) in the
events.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tests.programs import CONNECT_FAIL_PROG
from tests.programs import TRACE_PROG as PROG

from tcpdoctor.lab.net import MAIN_ADDR, LabNet
from tcpdoctor.sources.tracefs.follow import Comms
from tcpdoctor.sources.tracefs.run import Trace

HERE = Path(__file__).parent
N, HOLD = 20, 0.05


def main() -> None:
    tables: list[np.ndarray] = []
    comms: dict[int, str] = {}

    def keep(cols: dict[str, np.ndarray], tracker: object) -> None:
        from tcpdoctor.model.trace import ROW_DTYPE

        table = np.empty(cols["ts"].shape[0], ROW_DTYPE)
        for name in ROW_DTYPE.names or ():
            table[name] = cols[name]
        tables.append(table)
        for pid in set(cols["pid"].tolist()):
            if pid > 0 and pid not in comms:
                with contextlib.suppress(OSError):  # already gone: its events stay unnamed
                    comms[pid] = Path(f"/proc/{pid}/comm").read_text().strip()

    with LabNet(prefix="tdrec") as lab:
        run = Trace(8.0, keep)
        thread = run.start_thread()
        run.ready.wait(10)
        time.sleep(0.5)
        procs = []

        def start(*args: str) -> subprocess.Popen[str]:
            p = subprocess.Popen(["ip", "netns", "exec", lab.name, sys.executable, "-c", PROG,
                                  *args], stdout=subprocess.PIPE, text=True)
            procs.append(p)
            return p

        for srv, port, closer in (("td-srv-a", 8080, "client"), ("td-srv-b", 8081, "server")):
            p = start("server", srv, MAIN_ADDR, str(port), str(N), str(HOLD), closer)
            assert p.stdout is not None and "READY" in p.stdout.readline()
        p = start("server", "td-srv-d", MAIN_ADDR, "8082", "10", "0", "client")
        assert p.stdout is not None and "READY" in p.stdout.readline()
        clients = [start("client", "td-cli-a", MAIN_ADDR, "8080", str(N), str(HOLD), "client"),
                   start("client", "td-cli-b", MAIN_ADDR, "8081", str(N), str(HOLD), "server"),
                   start("client", "td-cli-c", MAIN_ADDR, "8089", "5", "0", "client")]
        lab.sysctl(lab.peer, "net.ipv4.ip_local_port_range", "40000 40009")
        lab.sysctl(lab.peer, "net.ipv4.tcp_tw_reuse", "0")
        hungry = subprocess.Popen(["ip", "netns", "exec", lab.peer, sys.executable, "-c",
                                   CONNECT_FAIL_PROG, "td-hungry", MAIN_ADDR, "8082", "10", "7"],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(hungry)
        assert hungry.stdout is not None
        starved = json.loads(hungry.stdout.readline())
        for p in clients:
            p.wait(timeout=60)
        thread.join(timeout=30)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    events = np.concatenate(tables)
    # Threads that ended before their names were read (a server closes in a worker thread):
    # the tracer's own pid -> comm record has them.
    saved = Comms._saved()
    for pid in set(events["pid"].tolist()) - set(comms):
        if pid > 0 and pid in saved:
            comms[pid] = saved[pid]
    np.save(HERE / "batch.npy", events, allow_pickle=False)
    (HERE / "comms.json").write_text(json.dumps({str(k): v for k, v in sorted(comms.items())},
                                                indent=1) + "\n")
    (HERE / "truth.json").write_text(json.dumps({
        "addr": MAIN_ADDR, "n": N, "hold_ms": HOLD * 1000, "refused": 5,
        "client_closes": {"client": "td-cli-a", "server": "td-srv-a", "port": 8080},
        "server_closes": {"client": "td-cli-b", "server": "td-srv-b", "port": 8081},
        "closed_port": {"client": "td-cli-c", "port": 8089},
        "port_starved": {"client": "td-hungry", "pid": starved["pid"],
                         "destination": f"{MAIN_ADDR}:8082", "failed": starved["failed"]}},
        indent=1) + "\n")
    print(f"{events.shape[0]} events, {len(comms)} pids; lost {run.lost}")


if __name__ == "__main__":
    main()
