"""`history --html`: one self-contained page (no network, no external script) with
interactive charts: states over time, the largest non-ESTABLISHED owners and remotes over
time, and a findings timeline. Data from the machine is inserted with textContent only.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from tcpdoctor.analysis.severity import Severity
from tcpdoctor.history.query import NON_ESTABLISHED, busy_states
from tcpdoctor.history.store import History
from tcpdoctor.i18n import _, _f, language
from tcpdoctor.i18n.words import PAGE_HEADINGS, PAGE_SCRIPT
from tcpdoctor.model.history import Stored
from tcpdoctor.model.times import iso_ms

SERIES_LIMIT = 6


def page_data(db: History, samples: list[Stored], title: str) -> dict[str, Any]:
    first, last = samples[0].id, samples[-1].id
    ids = [s.id for s in samples]
    states = busy_states(samples)
    data: dict[str, Any] = {
        "title": title, "db": db.path, "from": iso_ms(samples[0].ts), "to": iso_ms(samples[-1].ts),
        "host": samples[-1].host, "netns": samples[-1].netns,
        "t": [round(s.ts, 3) for s in samples],
        "states": {n: [s.states[n] for s in samples] for n in states},
        "total": [s.total for s in samples],
        "findings": findings_timeline(samples),
        "memory": memory_series(samples),
        "host_memory": host_memory_series(samples),
        "groups": {},
    }
    for dim, key, state, total in db.group_totals(first, last, NON_ESTABLISHED, SERIES_LIMIT):
        series = db.group_series(first, last, dim, key, state)
        data["groups"].setdefault(dim, []).append({
            "name": f"{key} {state}", "total": total,
            "values": [series.get(i, 0) for i in ids]})
    return data


def memory_series(samples: list[Stored]) -> dict[str, list[float]]:
    """MB held by all sockets, by their buffers and by the busiest states' sockets, per
    sample (samples recorded before costs were kept read as 0)."""
    keys = [(_("all sockets"), "cost.memory_bytes"), (_("buffers"), "cost.buffer_bytes")]
    per_state = sorted({k for s in samples for k in s.kernel if k.startswith("cost.state.")})
    keys += [(_f("{state} sockets", state=k.removeprefix("cost.state.")), k)
             for k in per_state]
    return _megabytes(samples, keys)


def host_memory_series(samples: list[Stored]) -> dict[str, list[float]]:
    """The kernel's TCP memory (sockstat) is one figure for the whole host, whichever
    namespace was recorded: it gets a chart of its own so that a namespace's few KB are not
    drawn on the scale of another namespace's hundreds of MB."""
    return _megabytes(samples, [(_("kernel TCP (sockstat)"), "cost.tcp_mem_bytes")])


def _megabytes(samples: list[Stored], keys: list[tuple[str, str]]) -> dict[str, list[float]]:
    out = {name: [round(s.kernel.get(key, 0) / 2**20, 2) for s in samples]
           for name, key in keys}
    return {name: values for name, values in out.items() if any(values)}


def findings_timeline(samples: list[Stored]) -> list[dict[str, Any]]:
    """Per finding id, the spans of consecutive samples in which it was active."""
    rows: dict[str, dict[str, Any]] = {}
    open_span: dict[str, list[Any]] = {}
    for i, s in enumerate(samples):
        active = {f["id"]: f for f in s.findings}
        for fid, f in active.items():
            row = rows.setdefault(fid, {"id": fid, "spans": []})
            span = open_span.get(fid)
            if span is not None and span[1] == i - 1:
                span[1] = i
                span[2] = _worse(span[2], f["severity"])
                span[3] = f["summary"]
            else:
                span = [i, i, f["severity"], f["summary"]]
                open_span[fid] = span
                row["spans"].append(span)
    return list(rows.values())


def _worse(a: str, b: str) -> str:
    return str(max(Severity(a), Severity(b)))


def render(db: History, samples: list[Stored], title: str) -> str:
    template = resources.files("tcpdoctor.history").joinpath("report.html").read_text()
    # The page's words in the reader's language: its headings here, and the words its
    # script writes, which it looks up in data.labels.
    for heading in PAGE_HEADINGS:
        template = template.replace(f">{heading}<", f">{_(heading)}<")
    if language() == "zh":
        template = template.replace('<html lang="en">', '<html lang="zh-CN">', 1)
    data = page_data(db, samples, title)
    data["labels"] = {w: _(w) for w in PAGE_SCRIPT}
    payload = json.dumps(data, separators=(",", ":"))
    # Inside <script type="application/json">, "</" could end the element early.
    payload = payload.replace("</", "<\\/")
    return template.replace("/*TCPDOCTOR_DATA*/{}", payload, 1)
