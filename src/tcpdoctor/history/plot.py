"""`history --plot FILE.png`: states over time and findings as shaded spans (matplotlib, an
optional extra: `pip install 'tcpdoctor[plot]'`)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.history.html import findings_timeline
from tcpdoctor.history.query import busy_states
from tcpdoctor.i18n import Msg
from tcpdoctor.model.history import Stored
from tcpdoctor.util.atomic import atomic_write_bytes

SEVERITY_COLOURS = {"info": "#7aa5e8", "warning": "#e0a02b", "critical": "#d63b3b"}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file
        import matplotlib.pyplot as plt
    except ImportError:
        raise TcpDoctorError(Msg("--plot needs matplotlib: pip install 'tcpdoctor[plot]' (or "
                                 "use --html, which needs nothing)")) from None
    return plt


def plot(samples: list[Stored], path: str, title: str) -> None:
    if not path.lower().endswith(".png"):
        raise TcpDoctorError(Msg("--plot: {path}: expected a file name ending in .png", path=path))
    plt = _pyplot()
    import io

    times = [datetime.fromtimestamp(s.ts) for s in samples]
    rows = findings_timeline(samples)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True,
        gridspec_kw={"height_ratios": [4, max(1, len(rows)) * 0.4 + 0.6]})
    for name in busy_states(samples):
        top.plot(times, [s.states[name] for s in samples], label=name, linewidth=1.8)
    top.set_ylabel("sockets")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8, ncols=4)
    for r, row in enumerate(rows):
        for a, b, sev, _ in row["spans"]:
            end = times[min(b + 1, len(times) - 1)]
            bottom.barh(r, end - times[a], left=times[a], height=0.6,
                        color=SEVERITY_COLOURS.get(sev, "#999"))
    bottom.set_yticks(range(len(rows)), [row["id"] for row in rows], fontsize=8)
    bottom.set_ylim(-0.7, max(1, len(rows)) - 0.3)
    bottom.set_title("findings", fontsize=9, loc="left")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(os.fspath(path), buf.getvalue())
