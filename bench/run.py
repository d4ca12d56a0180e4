"""tcpdoctor against ss, netstat, psutil and node_exporter on one socket population.

    sudo python -m bench.run                 # 100k and 1M sockets
    sudo python -m bench.run --quick         # 20k sockets, about a minute (CI smoke)

Builds the population in a private network namespace (bench.population), then times every
tool as a whole process (interpreter start-up and imports included) in alternating rounds:
median wall time and peak RSS (wait4). Prints one table per population with ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

from bench.population import build
from tcpdoctor.lab.net import LabNet

PY = sys.executable
NODE = "node_exporter tcpstat scrape"
EXPORTER = "tcpdoctor exporter scrape"
AWK_STATES = "awk '{++s[$1]} END {for (k in s) print k, s[k]}'"
AWK_SEED = "awk '/^tcp/ {++y[$NF]} END {for (w in y) print w, y[w]}'"
PSUTIL = ("import psutil, collections; "
          "collections.Counter(c.status for c in psutil.net_connections('tcp'))")


def tools(ports: dict[str, int]) -> dict[str, list[str]]:
    td = [PY, "-m", "tcpdoctor"]
    out = {
        "floor (netlink dump, discard)": [PY, "-m", "bench.floor"],
        "tcpdoctor states --json": [*td, "states", "--json"],
        "tcpdoctor top --by remote-ip,state --json": [*td, "top", "--by", "remote-ip,state",
                                                      "--json"],
        "tcpdoctor check --json --interval 0": [*td, "check", "--json", "--interval", "0"],
        "ss -tan | awk": ["sh", "-c", f"ss -tan | {AWK_STATES} > /dev/null"],
        "ss -tanp > /dev/null": ["sh", "-c", "ss -tanp > /dev/null"],
        "netstat -an | awk": ["sh", "-c", f"netstat -an | {AWK_SEED} > /dev/null"],
        "psutil net_connections + Counter": [PY, "-c", PSUTIL],
    }
    for key, name in (("node", NODE), ("tcpdoctor", EXPORTER)):
        if key in ports:
            out[name] = ["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{ports[key]}/metrics"]
    return out


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GNU_TIME = "/usr/bin/time"


class Run(NamedTuple):
    wall: float  # seconds
    rss_kb: int  # peak resident set
    cpu: float  # the command's user + system seconds
    steal: float  # CPU seconds the hypervisor gave to others meanwhile (all CPUs)


def steal_seconds() -> float:
    """The machine's stolen time so far (/proc/stat): on a shared VM it explains a slow
    run that the command itself did not cause."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def measure(ns: str, argv: list[str], timeout: float) -> Run | None:
    """Wall seconds, peak RSS, CPU seconds and stolen seconds of one run in the namespace.

    The tool is started by GNU time, a 2 MB process: a child forked (or vforked) straight
    from this 40 MB benchmark is charged our resident pages up to its exec, which would hide
    every small tool's real peak behind ours.
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    with tempfile.NamedTemporaryFile("r") as out:
        t0, stolen = time.perf_counter(), steal_seconds()
        proc = subprocess.Popen([GNU_TIME, "-f", "%M %U %S", "-o", out.name, "ip", "netns", "exec",
                                 ns, *argv], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the tool and its pipeline
            proc.wait()
            return None
        wall, stolen = time.perf_counter() - t0, steal_seconds() - stolen
        rss, user, system = out.read().strip().splitlines()[-1].split()
    if proc.returncode not in (0, 1, 2):  # check exits 1/2 when it finds problems
        raise RuntimeError(f"{' '.join(argv)} failed with {proc.returncode}")
    return Run(wall, int(rss), float(user) + float(system), stolen)


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Medians of one command's runs, and every run in the order run: the spread beside the
    median, and which slow runs coincided with stolen time."""
    return {"wall": statistics.median(r.wall for r in runs),
            "rss_mb": max(r.rss_kb for r in runs) / 1024, "runs": len(runs),
            "cpu": statistics.median(r.cpu for r in runs),
            "steal": statistics.median(r.steal for r in runs),
            "walls": [round(r.wall, 3) for r in runs],
            "steals": [round(r.steal, 2) for r in runs]}


def serve(ns: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """A server started inside the namespace, once it accepts on `argv`'s port (30 s)."""
    port = int(argv[-1].rsplit(":", 1)[1])
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv],
                            env=dict(os.environ, PYTHONPATH=ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = ["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-m", "1",
             f"http://127.0.0.1:{port}/"]
    for _ in range(60):
        if proc.poll() is not None or subprocess.run(probe).returncode == 0:
            break
        time.sleep(0.5)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_servers(ns: str) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    """node_exporter's tcpstat collector (where installed) and tcpdoctor's exporter, each
    serving /metrics on the namespace's loopback: their scrapes are timed like the tools."""
    out = {}
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is not None:
        port = free_port()
        out["node"] = (serve(ns, [binary, "--collector.disable-defaults",
                                  "--collector.tcpstat",
                                  f"--web.listen-address=127.0.0.1:{port}"]), port)
    port = free_port()
    out["tcpdoctor"] = (serve(ns, [PY, "-m", "tcpdoctor", "exporter", "--listen",
                                   f"127.0.0.1:{port}"]), port)
    return out


def peak_rss_mb(proc: subprocess.Popen[bytes]) -> float:
    """A server's own peak RSS (VmHWM): curl's is what GNU time sees of a scrape."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def counts(ns: str) -> dict[str, int]:
    out = subprocess.run(["ip", "netns", "exec", ns, PY, "-m", "tcpdoctor", "states", "--json"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    return {"total": data["total"], **{k: v for k, v in data["states"].items() if v}}


def compiled() -> None:
    """Byte-compile the package first, as an installation does: an editable checkout under
    PYTHONDONTWRITEBYTECODE would otherwise bill every run ~60 ms of compiling."""
    import tcpdoctor

    subprocess.run([PY, "-m", "compileall", "-q", os.path.dirname(tcpdoctor.__file__)],
                   check=True, stdout=subprocess.DEVNULL)


def bench_population(sockets: int, runs: int, time_wait: int,
                     timeout: float) -> dict[str, Any]:
    compiled()
    with LabNet(prefix="tdbench") as lab:
        t0 = time.monotonic()
        build(lab, sockets, time_wait=time_wait, close_wait=max(100, sockets // 200),
              syn_sent=max(50, sockets // 1000))
        built = time.monotonic() - t0
        servers = start_servers(lab.name)
        ports = {k: port for k, (_, port) in servers.items()}
        try:
            before = counts(lab.name)
            results: dict[str, list[Run]] = {}
            slow: set[str] = set()
            for _ in range(runs):
                for name, argv in tools(ports).items():  # alternate: every tool each round
                    if name in slow:
                        continue
                    got = measure(lab.name, argv, timeout)
                    if got is None:  # past --timeout: reported as such, not run again
                        slow.add(name)
                        continue
                    results.setdefault(name, []).append(got)
            after = counts(lab.name)
            server_rss = {k: peak_rss_mb(proc) for k, (proc, _) in servers.items()}
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait()
    out = {k: summarize(v) for k, v in results.items()}
    if EXPORTER in out:
        out[EXPORTER]["server_rss_mb"] = server_rss["tcpdoctor"]
    for name in slow - set(results):
        out[name] = {"wall": float("inf"), "rss_mb": float("nan"), "runs": 0}
    return {"sockets": sockets, "built_seconds": round(built, 1), "before": before,
            "after": after, "runs": runs, "timeout": timeout, "results": out}


def ratio(res: dict[str, Any], a: str, b: str, timeout: float = 0.0) -> str:
    if a not in res or b not in res:
        return "n/a"
    if res[a]["runs"] == 0:
        return "timeout"
    if res[b]["runs"] == 0:  # the peer ran past the timeout: tcpdoctor is at least this fast
        return f"< {res[a]['wall'] / timeout:.2f}x"
    return f"{res[a]['wall'] / res[b]['wall']:.2f}x"


def report(data: dict[str, Any]) -> str:
    res = data["results"]
    lines = [f"population: {data['before']['total']:,} sockets before, "
             f"{data['after']['total']:,} after the runs "
             f"({', '.join(f'{k} {v:,}' for k, v in data['before'].items() if k != 'total')}); "
             f"median of {data['runs']} alternating runs, whole process; CPU: the command's "
             "user + system time; stolen: CPU time the hypervisor gave elsewhere meanwhile",
             "", f"{'command':45} {'wall s':>8} {'peak RSS MB':>12} {'CPU s':>7} {'stolen s':>9}"]
    for name, r in res.items():
        if r["runs"] == 0:
            lines.append(f"{name:45} {'> ' + format(data['timeout'], '.0f'):>8} {'':>12}")
        else:
            note = "" if r["runs"] == data["runs"] else f"  ({r['runs']} runs)"
            if name == EXPORTER:  # the scrape's work happens in the server
                note += "  (CPU: the HTTP client's)"
            lines.append(f"{name:45} {r['wall']:8.3f} {r['rss_mb']:12.1f} {r['cpu']:7.2f} "
                         f"{r['steal']:9.2f}{note}")
    st, top, chk = ("tcpdoctor states --json", "tcpdoctor top --by remote-ip,state --json",
                    "tcpdoctor check --json --interval 0")
    floor = "floor (netlink dump, discard)"
    lines += ["", "ratios (wall time; < 1 means tcpdoctor is faster):",
              f"  states / floor              {ratio(res, st, floor):>8}   "
              "(target <= 1.1x at 1M)",
              f"  states / ss -tan | awk      {ratio(res, st, 'ss -tan | awk'):>8}   "
              "(target <= 0.5x at 200k, 0.33x at 1M)",
              f"  states / netstat -an | awk  {ratio(res, st, 'netstat -an | awk'):>8}   "
              "(target <= 0.3x at 200k, 0.2x at 1M)",
              f"  states / psutil             "
              f"{ratio(res, st, 'psutil net_connections + Counter'):>8}   (target <= 0.05x)",
              f"  states / node_exporter      {ratio(res, st, NODE):>8}",
              f"  exporter scrape / check     {ratio(res, EXPORTER, chk):>8}   "
              f"(the exporter's peak RSS "
              f"{res.get(EXPORTER, {}).get('server_rss_mb', float('nan')):.1f} MB)",
              f"  top / floor                 {ratio(res, top, floor):>8}   (target <= 1.5x)",
              f"  check / states              {ratio(res, chk, st):>8}   "
              f"(check: {res.get(chk, {}).get('wall', float('nan')):.3f} s, "
              f"{res.get(chk, {}).get('rss_mb', float('nan')):.1f} MB; "
              "target <= 2.5 s and 200 MB at 1M)",
              f"  check (owners) / ss -tanp   "
              f"{ratio(res, chk, 'ss -tanp > /dev/null', data['timeout']):>8}   "
              "(target <= 1.0x)",
              f"  states peak RSS             {res[st]['rss_mb']:8.1f} MB (target <= 150 MB)"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockets", default="100000,1000000",
                    help="comma-separated population sizes (ESTABLISHED sockets)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--time-wait", type=float, default=0.1,
                    help="TIME_WAIT sockets as a share of the population")
    ap.add_argument("--quick", action="store_true", help="20k sockets, 3 runs (CI smoke)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds after which a tool's run is stopped and reported as slower")
    ap.add_argument("--json", dest="json_out", help="also write the results to this file")
    args = ap.parse_args()
    # Always tear the namespaces down: SIGTERM, and SIGINT even when started in the background
    # (a non-interactive shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it builds the population in network namespaces)")
    sizes = [20000] if args.quick else [int(x) for x in args.sockets.split(",")]
    runs = 3 if args.quick else args.runs
    out = []
    for n in sizes:
        data = bench_population(n, runs, int(n * args.time_wait), args.timeout)
        out.append(data)
        print(report(data), "\n", flush=True)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
