"""How tests/data/proc_tree was recorded (root, once): a lab namespace's /proc/net/tcp and
tcp6, its processes' socket fds and names, and `ss` at the same moment as the oracle, for
tests/unit/test_proc_tree.py to read through the procfs reader and the owner join
without root.

    sudo python tests/data/proc_tree/record_tree.py

td-sink accepts IPv4 and IPv6 connections and never reads; td-push connects 4 over IPv4
and 3 over IPv6 and writes 1 MB into each, so that receive queues hold unread data and
send queues hold what the full receivers refuse (Send-Q and Recv-Q differ on every
connection); td-push then forks td-pushkid, which shares every socket (one inode, two
owners). Traffic stays on the namespace's loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tcpdoctor.lab.net import LabNet

HERE = Path(__file__).parent
SINK = r"""
import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, b"td-sink", 0, 0, 0)
v4 = socket.create_server(("127.0.0.1", 7001)); v6 = socket.create_server(("::1", 7002),
                                                                        family=socket.AF_INET6)
held = []
for srv, n in ((v4, 4), (v6, 3)):
    for _ in range(n):
        c, _ = srv.accept(); c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        held.append(c)
print("READY", flush=True)
time.sleep(60)
"""
PUSH = r"""
import ctypes, os, socket, sys, time
ctypes.CDLL(None).prctl(15, b"td-push", 0, 0, 0)
held = []
for addr, port, fam, n in (("127.0.0.1", 7001, socket.AF_INET, 4),
                           ("::1", 7002, socket.AF_INET6, 3)):
    for _ in range(n):
        s = socket.socket(fam); s.connect((addr, port)); s.setblocking(False)
        sent = 0
        try:
            while sent < (1 << 20):
                sent += s.send(b"x" * 65536)
        except BlockingIOError:
            pass
        held.append(s)
if os.fork() == 0:
    ctypes.CDLL(None).prctl(15, b"td-pushkid", 0, 0, 0)
    time.sleep(60); os._exit(0)
print("READY", flush=True)
time.sleep(60)
"""


def netns_run(ns: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          check=True, env={**os.environ, "LC_ALL": "C"}).stdout


def main() -> None:
    with LabNet(prefix="tdtree") as lab:
        procs = []
        for prog in (SINK, PUSH):
            p = subprocess.Popen(["ip", "netns", "exec", lab.name, sys.executable, "-c", prog],
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            if prog is SINK:
                time.sleep(0.5)
        try:
            for p in reversed(procs):
                assert p.stdout is not None and "READY" in p.stdout.readline()
            time.sleep(1.0)  # queues settle
            out = HERE / "net"
            out.mkdir(exist_ok=True)
            (out / "tcp").write_text(netns_run(lab.name, "cat", "/proc/net/tcp"))
            (out / "tcp6").write_text(netns_run(lab.name, "cat", "/proc/net/tcp6"))
            ss = netns_run(lab.name, "ss", "-Htanpe")
            (HERE / "ss.txt").write_text(ss)
            owners = {}
            for pid in {int(x) for x in re.findall(r"pid=(\d+)", ss)}:
                fds = {}
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with_link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if with_link.startswith("socket:["):
                        fds[fd] = with_link
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                owners[str(pid)] = {"comm": comm, "fd": fds}
            (HERE / "owners.json").write_text(json.dumps(owners, indent=1, sort_keys=True)
                                              + "\n")
        finally:
            for p in procs:
                p.kill()
                p.wait()
            subprocess.run(["pkill", "-KILL", "-f", "td-pushkid"], check=False)
    print("recorded", HERE)


if __name__ == "__main__":
    main()
