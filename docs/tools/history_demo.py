"""Make the README's history pictures from a real run (root): a lab where td-leaky's
CLOSE_WAIT climbs while td-web serves steady ESTABLISHED clients, recorded by
`tcpdoctor record`, drawn by `history --html` (screenshot by headless Chromium) and --plot.

    sudo python docs/tools/history_demo.py docs/   (about 4 minutes)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tcpdoctor.lab.net import MAIN_ADDR, LabNet

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="tcpdoctor-demo-"))
    db = work / "history.db"
    with LabNet(prefix="tddemo") as lab:
        lab.spawn(lab.name, "td-web", [{"kind": "listen", "addr": MAIN_ADDR, "port": 443}])
        lab.spawn(lab.peer, "td-users", [{"kind": "connect", "addr": MAIN_ADDR, "port": 443,
                                          "n": 150}])
        lab.spawn(lab.name, "td-leaky", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080}])
        rec = subprocess.Popen([sys.executable, "-m", "tcpdoctor", "record", "--db", str(db),
                                "--netns", lab.name, "--interval", "2", "-q"])
        try:
            time.sleep(30)  # a quiet start
            for i in range(16):  # then the leak: 40 more CLOSE_WAIT every 10 s
                lab.spawn(lab.peer, f"td-client{i}", [{"kind": "connect", "addr": MAIN_ADDR,
                                                       "port": 8080, "n": 40,
                                                       "then": "close"}])
                time.sleep(10)
        finally:
            rec.terminate()
            rec.wait(timeout=30)
    page = work / "report.html"
    subprocess.run([sys.executable, "-m", "tcpdoctor", "history", "--db", str(db), "--html",
                    str(page)], check=True)
    subprocess.run([sys.executable, "-m", "tcpdoctor", "history", "--db", str(db), "--plot",
                    str(out / "history-plot.png")], check=True)
    subprocess.run(["chromium", *FLAGS, f"--user-data-dir={work / 'ud'}",
                    f"--screenshot={out / 'history-report.png'}", "--window-size=1100,1350",
                    page.as_uri()], check=True, capture_output=True)
    print(f"database {db}; pictures in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
