"""The conntrack reader against `conntrack -L | awk` and a floor, on a table it fills.

A private network namespace gets N TCP entries inserted through ctnetlink (IPCTNL_MSG_CT_NEW,
as `conntrack -I` does; no traffic), ESTABLISHED with a long timeout, a share of them
source-NATed. Then, alternating, the median wall time and peak RSS of:

  floor            a ctnetlink dump received and discarded (what any reader pays)
  read_table       tcpdoctor's columnar reader alone (sources.conntrack.dump)
  conntrack --json `tcpdoctor conntrack --netns NS --json` (every namespace joined)
  conntrack -L     `conntrack -L | awk` counting states

The table's size is bounded by the host's nf_conntrack_max, a global limit: --entries
above it is refused, unless --raise-max is given, which raises it for the run only (the
value before is printed first, and written back when the bench ends, however it ends).

    sudo python -m bench.conntrack --entries 250000 --json docs/bench-conntrack.json
    sudo python -m bench.conntrack --entries 1000000 --raise-max
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

from bench.run import Run, measure, summarize
from tcpdoctor.model.addresses import V4_MAPPED_INT
from tcpdoctor.sources.conntrack.dump import attr, message, nest, open_socket, tcp_tuple
from tcpdoctor.sources.conntrack.layout import (
    CTA_PROTOINFO,
    CTA_PROTOINFO_TCP,
    CTA_PROTOINFO_TCP_STATE,
    CTA_STATUS,
    CTA_TIMEOUT,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_REPLY,
)
from tcpdoctor.sources.netns import run_in

PY = sys.executable
CT_NEW_CREATE = (1 << 8) | 0  # IPCTNL_MSG_CT_NEW
NLM_F_REQUEST, NLM_F_CREATE, NLM_F_EXCL = 0x1, 0x400, 0x200
FLOOR = r"""
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 12)
s.send(struct.pack("=IHHIIBBH", 20, 0x101, 0x301, 1, 0, 0, 0, 0))
buf = bytearray(1 << 16)
while True:
    n = s.recv_into(buf)
    if n >= 20 and struct.unpack_from("=IH", buf, n - 20) == (20, 3):
        break
    if n >= 16 and struct.unpack_from("=H", buf, 4)[0] in (2, 3):
        break
"""
READER = ("from tcpdoctor.sources.conntrack.dump import read_table; "
          "print(len(read_table().columns['ct_state']))")
AWK = "conntrack -L 2>/dev/null | awk '{s[$4]++} END {for (k in s) print k, s[k]}' > /dev/null"


def _v4(addr: int) -> tuple[int, int]:
    return 0, V4_MAPPED_INT | addr


def fill(entries: int) -> int:
    """Insert `entries` ESTABLISHED entries into this namespace's table; how many took."""
    sock = open_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    made = 0
    batch = []
    for i in range(entries):
        src = 0x0A000000 | (i // 60000)  # 10.0.x.y: 60,000 ports per source
        sport = 1024 + i % 60000
        nat = i % 4 == 0  # a quarter source-NATed, to 203.0.113.N for 10.0.0.N
        # (both tuples of an entry must be unique: one translated address per source)
        _, reply = tcp_tuple(CTA_TUPLE_REPLY, _v4(0xC6336401),
                             _v4((0xCB007101 + (i // 60000)) if nat else src), 443, sport)
        _, orig = tcp_tuple(CTA_TUPLE_ORIG, _v4(src), _v4(0xC6336401), sport, 443)
        body = (orig + reply
                + attr(CTA_STATUS, struct.pack(">I", 0x8 | 0x4 | 0x2 | (0x10 if nat else 0)))
                + attr(CTA_TIMEOUT, struct.pack(">I", 3600))
                + nest(CTA_PROTOINFO, nest(CTA_PROTOINFO_TCP,
                                           attr(CTA_PROTOINFO_TCP_STATE, bytes([3])))))
        batch.append(message(CT_NEW_CREATE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, i + 1,
                             socket.AF_INET, body))
        if len(batch) == 200 or i == entries - 1:
            sock.send(b"".join(batch))
            made += len(batch)
            batch = []
    sock.close()
    return made


MAX_PATH = "/proc/sys/net/netfilter/nf_conntrack_max"


def _write_max(value: int) -> None:
    with open(MAX_PATH, "w") as fh:
        fh.write(str(value))


def count(ns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat",
                          "/proc/sys/net/netfilter/nf_conntrack_count"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=250_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--raise-max", action="store_true",
                    help="raise the host's nf_conntrack_max for this run (restored after)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwind: restore, remove
    if os.geteuid() != 0:
        sys.exit("bench: needs root (a private namespace and its conntrack table)")
    with open(MAX_PATH) as fh:
        cap = int(fh.read())
    raised = None
    if args.entries > cap:
        if not args.raise_max:
            sys.exit(f"bench: {args.entries:,} entries exceed nf_conntrack_max ({cap:,}), a "
                     "host-wide limit: add --raise-max to raise it for this run")
        raised = cap
        print(f"bench: nf_conntrack_max {cap} -> {args.entries + 1000} for this run "
              f"(restored to {cap} after)", flush=True)
        _write_max(args.entries + 1000)
    ns = f"tdctbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        t0 = time.monotonic()
        run_in(ns, lambda: fill(args.entries))
        deadline = time.monotonic() + 60
        while count(ns) < args.entries and time.monotonic() < deadline:
            time.sleep(0.5)
        built = count(ns)
        tools = {"floor (ctnetlink dump, discard)": [PY, "-c", FLOOR],
                 "read_table (columns)": [PY, "-c", READER],
                 "tcpdoctor conntrack --json": [PY, "-m", "tcpdoctor", "conntrack", "--json"],
                 "conntrack -L | awk": ["sh", "-c", AWK]}
        results: dict[str, list[Run]] = {}
        for _ in range(args.runs):
            for name, argv in tools.items():
                got = measure(ns, argv, 300.0)
                if got is not None:
                    results.setdefault(name, []).append(got)
        out = {"entries": built, "built_seconds": round(time.monotonic() - t0, 1),
               "runs": args.runs,
               "results": {k: summarize(v) for k, v in results.items()}}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if raised is not None:
            _write_max(raised)
    print(f"{out['entries']:,} entries")
    for name, r in out["results"].items():
        print(f"  {name:34s} {r['wall']:7.3f} s  {r['rss_mb']:7.1f} MB")
    awk = out["results"].get("conntrack -L | awk", {}).get("wall")
    mine = out["results"].get("tcpdoctor conntrack --json", {}).get("wall")
    if awk and mine:
        print(f"  tcpdoctor conntrack / conntrack -L | awk: {mine / awk:.2f}x")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
