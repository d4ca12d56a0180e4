"""Generate a big `netstat -an` capture of a sick web server (default 1 GiB), and the exact
state counts it holds, for the bounded-memory benchmark of `tcpdoctor analyze`.

    python -m bench.bigdump OUT.txt [--size-mb 1024] [--seed 1]

The mix, per 1,000 sockets: 450 TIME_WAIT on the server's port 80 from 50,000 client IPs;
200 ESTABLISHED on 443 from the same clients; 150 client-side TIME_WAIT to 8 backends
(ephemeral local ports); 100 CLOSE_WAIT on 8080 from 2,000 internal IPs; 50 SYN_RECV on
80 from random (spoofed) sources; 30 ESTABLISHED to the backends; 20 IPv6 ESTABLISHED.
Lines follow net-tools' layout (`%-5s %6ld %6ld %-23s %-23s %-12s`), UDP and UNIX sections
included, as a pasted `netstat -an` has them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter

HEADER = ("Active Internet connections (servers and established)\n"
          "Proto Recv-Q Send-Q Local Address           Foreign Address         State      \n")
LISTENERS = [("tcp", "0.0.0.0:22", "0.0.0.0:*"), ("tcp", "0.0.0.0:80", "0.0.0.0:*"),
             ("tcp", "0.0.0.0:443", "0.0.0.0:*"), ("tcp", "0.0.0.0:8080", "0.0.0.0:*"),
             ("tcp", "127.0.0.1:3306", "0.0.0.0:*"), ("tcp6", ":::22", ":::*"),
             ("tcp6", ":::443", ":::*")]
TAIL = ("udp        0      0 0.0.0.0:68              0.0.0.0:*                          \n"
        "Active UNIX domain sockets (servers and established)\n"
        "Proto RefCnt Flags       Type       State         I-Node   Path\n"
        "unix  2      [ ACC ]     STREAM     LISTENING     17181    /run/systemd/private\n")
SERVER = "10.0.0.5"
MIX = [(450, "tw_server"), (200, "est_server"), (150, "tw_client"), (100, "close_wait"),
       (50, "syn_recv"), (30, "est_client"), (20, "est_v6")]


def line(proto: str, local: str, remote: str, state: str, rq: int = 0, sq: int = 0) -> str:
    return f"{proto:<5} {rq:6d} {sq:6d} {local:<23} {remote:<23} {state:<12}\n"


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.clients = [f"{self.r.choice((203, 198, 100))}.{self.r.randrange(256)}."
                        f"{self.r.randrange(256)}.{self.r.randrange(1, 255)}"
                        for _ in range(50_000)]
        self.internal = [f"10.0.{2 + i // 250}.{1 + i % 250}" for i in range(2000)]
        self.backends = [(f"10.0.1.{i}", 5432 if i % 2 else 6379) for i in range(1, 9)]
        self.kinds = [k for n, k in MIX for _ in range(n)]

    def one(self) -> tuple[str, str]:
        r = self.r
        kind = r.choice(self.kinds)
        port = r.randrange(1024, 65536)
        if kind == "tw_server":
            return line("tcp", f"{SERVER}:80", f"{r.choice(self.clients)}:{port}",
                        "TIME_WAIT"), "TIME_WAIT"
        if kind == "est_server":
            rq, sq = (0, 0) if r.random() < 0.9 else (r.randrange(1, 3000), r.randrange(0, 9000))
            return line("tcp", f"{SERVER}:443", f"{r.choice(self.clients)}:{port}",
                        "ESTABLISHED", rq, sq), "ESTABLISHED"
        if kind in ("tw_client", "est_client"):
            ip, bport = r.choice(self.backends)
            state = "TIME_WAIT" if kind == "tw_client" else "ESTABLISHED"
            return line("tcp", f"{SERVER}:{r.randrange(32768, 61000)}", f"{ip}:{bport}",
                        state), state
        if kind == "close_wait":
            return line("tcp", f"{SERVER}:8080", f"{r.choice(self.internal)}:{port}",
                        "CLOSE_WAIT", r.choice((0, 0, 0, 1, 517))), "CLOSE_WAIT"
        if kind == "syn_recv":
            src = ".".join(str(r.randrange(1, 255)) for _ in range(4))
            return line("tcp", f"{SERVER}:80", f"{src}:{port}", "SYN_RECV"), "SYN_RECV"
        # netstat without -W cuts a long address so that ADDRESS:PORT fits 23 columns.
        client = f"2001:db8:{r.randrange(65536):x}::{r.randrange(1, 65536):x}"
        client = client[:22 - len(str(port))]
        return line("tcp6", "2001:db8::5:443", f"{client}:{port}", "ESTABLISHED"), \
            "ESTABLISHED"


def generate(path: str, size_mb: int, seed: int) -> dict[str, int]:
    gen = Gen(seed)
    counts: Counter[str] = Counter()
    limit = size_mb << 20
    with open(path, "w") as out:
        written = out.write(HEADER)
        for proto, local, remote in LISTENERS:
            written += out.write(line(proto, local, remote, "LISTEN"))
            counts["LISTEN"] += 1
        while written < limit - len(TAIL):
            chunk = []
            for _ in range(20_000):
                text, state = gen.one()
                chunk.append(text)
                counts[state] += 1
            block = "".join(chunk)
            written += out.write(block)
        out.write(TAIL)
    return dict(counts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    counts = generate(args.out, args.size_mb, args.seed)
    json.dump({"file": args.out, "states": counts, "total": sum(counts.values())},
              sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
