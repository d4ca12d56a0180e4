"""Run every command from an install without extras: each works, or says which extra it
needs (exit 3, one line with the pip command). Run with the venv's python (.ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
OK = (0, 1, 2)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tcpdoctor-noextras-") as where:
        return run_all(Path(where))


def run_all(tmp: Path) -> int:
    snap, db = tmp / "s.json.gz", tmp / "h.db"
    cases: list[tuple[list[str], tuple[int, ...], str]] = [
        (["--version"], (0,), ""),
        (["--help"], (0,), ""),
        (["states", "--json"], OK, ""),
        (["top", "--by", "process,state"], OK, ""),
        (["check", "--interval", "0"], OK, ""),
        (["check", "--json", "--interval", "0"], OK, ""),
        (["analyze", str(DATA / "proc_net_tcp")], OK, ""),
        (["snapshot", "-o", str(snap)], (0,), ""),
        (["diff", str(snap), str(snap)], (0,), ""),
        (["tune", "--interval", "0"], OK, ""),
        (["tune", "--explain", "net.ipv4.tcp_fin_timeout"], (0,), ""),
        (["watch", "--count", "1"], (0,), ""),
        (["record", "--count", "1", "--db", str(db), "-q"], (0,), ""),
        (["history", "--db", str(db)], (0,), ""),
        (["history", "--db", str(db), "--html", str(tmp / "h.html")], (0,), ""),
        (["history", "--db", str(db), "--plot", str(tmp / "h.png")], (3,),
         "pip install 'tcpdoctor[plot]'"),
        (["exporter", "--textfile", str(tmp), "--once"], (3,),
         "pip install 'tcpdoctor[exporter]'"),
        (["exporter", "--textfile", str(tmp), "--once", "--otlp", "http://127.0.0.1:9"], (3,),
         "pip install 'tcpdoctor[exporter]'"),
        (["lab", "--list"], (0,), ""),
        (["collect", "-o", str(tmp / "collect.sh")], (0,), ""),
    ]
    failed = 0
    for args, codes, hint in cases:
        proc = subprocess.run([sys.executable, "-m", "tcpdoctor", *args], capture_output=True,
                              text=True, check=False, timeout=300,
                              env={**os.environ, "COLUMNS": "100"})
        good = proc.returncode in codes and "Traceback" not in proc.stderr
        good = good and "internal error" not in proc.stderr
        if hint:
            good = good and hint in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        failed += not good
        print(f"{'ok  ' if good else 'FAIL'} tcpdoctor {' '.join(args)} -> exit "
              f"{proc.returncode}" + ("" if good else f"\n{proc.stderr}"))
    # The build wrote tcpdoctor(1) from the help texts and installed it with the package.
    page = Path(sys.prefix) / "share" / "man" / "man1" / "tcpdoctor.1"
    has_page = page.is_file() and ".SS tcpdoctor collect" in page.read_text()
    print(f"{'ok  ' if has_page else 'FAIL'} man page installed at {page}")
    failed += not has_page
    # The Chinese catalog is in the package: a Chinese locale gets Chinese help and reports.
    zh = subprocess.run([sys.executable, "-m", "tcpdoctor", "analyze", str(DATA / "proc_net_tcp")],
                        capture_output=True, text=True, check=False, timeout=300,
                        env={**os.environ, "LANG": "zh_CN.UTF-8", "COLUMNS": "100"})
    has_zh = "个 TCP 套接字" in zh.stdout and zh.returncode in OK
    print(f"{'ok  ' if has_zh else 'FAIL'} LANG=zh_CN.UTF-8 tcpdoctor analyze: Chinese report")
    failed += not has_zh
    print(f"without extras: {len(cases) + 2 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
