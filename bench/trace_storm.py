"""`tcpdoctor trace` under a loopback connection storm (issue: >= 15,000 connections/s).

    sudo python -m bench.trace_storm                      # 15,000/s for 10 s, raw and text
    sudo python -m bench.trace_storm --rate 20000 --out docs/bench-trace.json

In a namespace of its own (removed afterwards), bench.storm connects and closes on loopback:
  1. as fast as it can, untraced and then traced: the storm's own rate, and so the overhead
     tracing puts on the traced workload;
  2. at the paced rate for --seconds, traced through the raw per-CPU buffers and then
     through the text pipe: events lost (the kernel's count, and connections the summary
     missed against the storm's own count), the tracer's CPU during the storm (share of one
     core), its RSS sampled every half second.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from tcpdoctor.lab.net import LabNet

PY = sys.executable
PORT = 7001
INSTANCES = "/sys/kernel/tracing/instances"


def storm_argv(ns: str, rate: float, seconds: float) -> list[str]:
    return ["ip", "netns", "exec", ns, PY, "-m", "bench.storm", "--port", str(PORT), "--rate",
            str(rate), "--seconds", str(seconds)]


def storm(ns: str, rate: float, seconds: float) -> dict[str, Any]:
    out = subprocess.run(storm_argv(ns, rate, seconds), capture_output=True, text=True,
                         check=True, timeout=seconds + 60)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_tracer(reader: str) -> subprocess.Popen[str]:
    # SIGINT back to its default: a shell's `&` ignores it, and the child would inherit that.
    proc = subprocess.Popen([PY, "-m", "tcpdoctor", "trace", "--summary", "--json",
                             "--duration", "3600", "--reader", reader],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    # Its instance is named tcpdoctor-PID-TOKEN.
    while not glob.glob(f"{INSTANCES}/tcpdoctor-{proc.pid}-*/tracing_on"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the tracer did not start: {proc.communicate()[1][-400:]}")
        time.sleep(0.05)
    time.sleep(1.0)  # its reader opens after the instance is made
    return proc


def stop_tracer(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the tracer reads what is left and sums up
    out, err = proc.communicate(timeout=120)
    if not out.strip():
        raise SystemExit(f"the tracer printed no summary: {err[-400:]}")
    result: dict[str, Any] = json.loads(out)
    return result


@contextlib.contextmanager
def tracing(reader: str) -> Iterator[subprocess.Popen[str]]:
    """A tracer for the with block; killed (by pid) if it is still running at the end."""
    tracer = start_tracer(reader)
    try:
        yield tracer
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()


def traced_storm(ns: str, reader: str, rate: float, seconds: float) -> dict[str, Any]:
    with tracing(reader) as tracer:
        cpu0 = cpu_seconds(tracer.pid)
        runner = subprocess.Popen(storm_argv(ns, rate, seconds), stdout=subprocess.PIPE,
                                  text=True)
        rss = []
        while runner.poll() is None:
            rss.append(rss_mb(tracer.pid))
            time.sleep(0.5)
        cpu = cpu_seconds(tracer.pid) - cpu0
        made = json.loads(runner.communicate()[0])
        time.sleep(1.0)
        summary = stop_tracer(tracer)
    seen = {"client": _opened(summary["remote_services"], "service", f"127.0.0.1:{PORT}"),
            "server": _opened(summary["local_ports"], "port", PORT)}
    return {"reader": reader, "storm": made, "events": summary["events"],
            "events_lost": summary["events_lost"],
            "lost_share": summary["events_lost"] / max(1, summary["events"]
                                                       + summary["events_lost"]),
            "connections_seen": seen,
            "connections_missed": {k: made["connections"] - v for k, v in seen.items()},
            "cpu_share_of_one_core": round(cpu / made["seconds"], 3),
            "rss_mb": {"first": round(rss[0], 1) if rss else 0.0,
                       "last": round(rss[-1], 1) if rss else 0.0,
                       "max": round(max(rss), 1) if rss else 0.0}}


def _opened(rows: list[dict[str, Any]], key: str, value: Any) -> int:
    return sum(r["opened"] for r in rows if r[key] == value)


def overhead(ns: str, seconds: float) -> dict[str, Any]:
    plain = storm(ns, 0, seconds)
    with tracing("raw") as tracer:
        traced = storm(ns, 0, seconds)
        time.sleep(1.0)
        summary = stop_tracer(tracer)
    return {"untraced_rate": plain["rate"], "traced_rate": traced["rate"],
            "slowdown": round(1 - traced["rate"] / plain["rate"], 3),
            "traced_events_lost": summary["events_lost"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=15_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default=None, help="also write the figures here (JSON)")
    args = ap.parse_args()
    with LabNet(prefix="tdbench") as lab:
        for key, value in (("net.ipv4.ip_local_port_range", "1024 65535"),
                           ("net.ipv4.tcp_tw_reuse", "1")):
            lab.sysctl(lab.name, key, value)
        result = {"rate": args.rate, "seconds": args.seconds,
                  "overhead": overhead(lab.name, 5.0),
                  "raw": traced_storm(lab.name, "raw", args.rate, args.seconds),
                  "text": traced_storm(lab.name, "text", args.rate, args.seconds)}
    report(result)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")


def report(r: dict[str, Any]) -> None:
    o = r["overhead"]
    print(f"storm as fast as it can: {o['untraced_rate']:,.0f}/s untraced, "
          f"{o['traced_rate']:,.0f}/s traced (slowdown {o['slowdown']:.1%})")
    for mode in ("raw", "text"):
        m = r[mode]
        print(f"{mode:>4}: storm {m['storm']['rate']:,.0f} connections/s for "
              f"{m['storm']['seconds']} s; events {m['events']:,}, lost {m['events_lost']:,} "
              f"({m['lost_share']:.2%}); connections missed {m['connections_missed']}; "
              f"CPU {m['cpu_share_of_one_core']:.0%} of a core; RSS {m['rss_mb']} MB")


if __name__ == "__main__":
    main()
