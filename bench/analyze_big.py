"""Bounded memory on a huge dump: `tcpdoctor analyze` of a generated 1 GiB `netstat -an`.

    python -m bench.analyze_big [--size-mb 1024] [--file PATH] [--json OUT]

Generates the dump with bench.bigdump (unless --file names an existing one with its
.json of counts beside it), then measures as whole processes, peak RSS by GNU time:
`tcpdoctor analyze FILE --json` and, for scale, the seed's one-liner
`awk '$1 ~ /^tcp/ {print $6}' FILE | sort | uniq -c`. Checks that tcpdoctor's state counts
equal the generator's, and prints the figures (the issue's target: peak RSS under 300 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import bigdump

TARGET_MB = 300


def timed(cmd: list[str], shell: bool = False) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one whole process under GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        argv = ["/usr/bin/time", "-f", "%M", "-o", tf.name]
        argv += ["sh", "-c", cmd[0]] if shell else cmd
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.monotonic() - start
        if proc.returncode not in (0, 1, 2):
            raise SystemExit(f"{cmd}: exit {proc.returncode}: {proc.stderr[-500:]}")
        return wall, int(tf.read().strip().splitlines()[-1]) / 1024, proc.stdout


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--file", help="an existing dump (with FILE.json of its counts)")
    ap.add_argument("--json", dest="json_out", help="write the results here")
    args = ap.parse_args(argv)
    tmp = None
    if args.file:
        path = args.file
        expected = json.loads(Path(path + ".json").read_text())["states"]
    else:
        tmp = tempfile.mkdtemp(prefix="tcpdoctor-big-")
        path = os.path.join(tmp, "netstat-an.txt")
        print(f"generating {args.size_mb} MiB netstat -an in {path} ...", file=sys.stderr)
        expected = bigdump.generate(path, args.size_mb, 1)
    try:
        result = run(path, expected)
    finally:
        if tmp:
            os.unlink(path)
            os.rmdir(tmp)
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


def run(path: str, expected: dict[str, int]) -> dict[str, Any]:
    size = os.path.getsize(path)
    wall, rss, out = timed([sys.executable, "-m", "tcpdoctor", "analyze", path, "--json"])
    report = json.loads(out)
    got = {k: v for k, v in report["states"].items() if v}
    awk_wall, awk_rss, _ = timed([f"awk '$1 ~ /^tcp/ {{print $6}}' {path} | sort | uniq -c"],
                                 shell=True)
    result = {
        "file_bytes": size, "sockets": sum(expected.values()),
        "tcpdoctor_analyze": {"seconds": round(wall, 1), "peak_rss_mb": round(rss, 1),
                              "findings": [f"{f['id']} ({f['severity']})"
                                           for f in report["findings"]],
                              "notes": report["notes"]},
        "awk_sort_uniq": {"seconds": round(awk_wall, 1), "peak_rss_mb": round(awk_rss, 1)},
        "states_exact": got == expected,
        "peak_rss_under_target": rss < TARGET_MB,
    }
    print(f"{size / 2**20:,.0f} MiB, {result['sockets']:,} sockets: tcpdoctor analyze "
          f"{wall:.1f} s, peak RSS {rss:.0f} MB (target < {TARGET_MB} MB: "
          f"{'met' if rss < TARGET_MB else 'MISSED'}); awk|sort|uniq {awk_wall:.1f} s, "
          f"{awk_rss:.0f} MB; state counts exact: {got == expected}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
