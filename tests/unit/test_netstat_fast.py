"""The vectorized netstat path must agree with the per-line parser on every input: same
sockets, same rejected line numbers (hypothesis generates good, odd and broken lines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench import bigdump
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.sources.offline import netstat_fast, textdump

GOOD = [
    "tcp        0      0 10.0.0.5:80             198.51.100.7:51234      TIME_WAIT   ",
    "tcp        0      0 0.0.0.0:8080            0.0.0.0:*               LISTEN      ",
    "tcp      517      3 127.0.0.1:6379          127.0.0.1:40000         CLOSE_WAIT",
    "tcp   123456 999999 255.255.255.255:65535   1.2.3.4:1               ESTABLISHED",
    "tcp        0      0 10.0.0.5:80\t198.51.100.7:1\tSYN_RECV\r",
]
ODD = [  # fine for the per-line parser, not for the fast path (or rejected by both)
    "tcp6       0      0 :::22                   :::*                    LISTEN      ",
    "tcp        0      0 10.0.0.5:80             198.51.100.7:51234      TIME_WAIT   1/nginx",
    "tcp        0      0 10.0.0.5:80             198.51.100.7:51234      time_wait",
    "tcp        0      0 10.0.0.5:80             198.51.100.7:51234      BOGUS",
    "tcp        0      0 10.0.0.256:80           198.51.100.7:51234      ESTABLISHED",
    "tcp        0      0 10.0.0.5:70000          198.51.100.7:51234      ESTABLISHED",
    "tcp        0      0 10.0.0:80               198.51.100.7:51234      ESTABLISHED",
    "tcp        x      0 10.0.0.5:80             198.51.100.7:51234      ESTABLISHED",
    "tcp        0      0 10.0.0.5:*              198.51.100.7:5:1        ESTABLISHED",
    "tcp        0      0 1.2.3.4:8               5.6.7.8:**              ESTABLISHED",
    "udp        0      0 0.0.0.0:68              0.0.0.0:*                          ",
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State      ",
    "tcp 0 0 1.2.3.4:5 6.7.8.9:10 LISTEN extra",
    "",
    "tcpx       0      0 1.2.3.4:5               6.7.8.9:10              LISTEN",
]


def both(text: str) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[int], list[int]]:
    """Rows and rejected line numbers: per-line parser alone, and fast path + per-line."""
    lines = list(enumerate(text.split("\n"), 1))
    slow = textdump.Builder("x", False)
    textdump.parse_netstat(lines, slow)
    fast_rows: list[dict[str, np.ndarray]] = []
    fast = textdump.Builder("x", False, sink=fast_rows.append, block=7)
    cols, rest = netstat_fast.parse(text.encode(), 1)
    fast.add_block(cols)
    textdump.parse_netstat(rest, fast)
    fast.flush()
    return (rows(slow.columns(complete=True)), rows_of(fast_rows), slow.bad, fast.bad)


KEYS = ("state", "family", "sport", "dport", "laddr_hi", "laddr_lo", "raddr_hi", "raddr_lo",
        "rqueue", "wqueue", "timer", "pid")


def rows(cols: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    return sorted(zip(*(np.asarray(cols[k]).tolist() for k in KEYS), strict=True))


def rows_of(parts: list[dict[str, np.ndarray]]) -> list[tuple[int, ...]]:
    return sorted(r for p in parts for r in rows(p))


def test_known_lines_agree() -> None:
    text = "\n".join(GOOD + ODD + GOOD)
    slow, fast, bad_slow, bad_fast = both(text)
    assert slow == fast and len(slow) >= 2 * len(GOOD)
    assert bad_slow == bad_fast
    cols, rest = netstat_fast.parse("\n".join(GOOD).encode(), 1)
    assert cols["state"].shape[0] == len(GOOD) and rest == []


def test_generated_dump_agrees(tmp_path: Path) -> None:
    """bench.bigdump's netstat -an layout (IPv4, truncated IPv6, UDP and UNIX sections)."""
    path = tmp_path / "netstat.txt"
    counts = bigdump.generate(str(path), 1, seed=3)
    slow, fast, bad_slow, bad_fast = both(path.read_text())
    assert slow == fast and bad_slow == bad_fast == []
    assert len(fast) == sum(counts.values())


line = st.one_of(st.sampled_from(GOOD + ODD), st.builds(
    lambda a, b, c, d, p, q, s: f"tcp {q} 0 {a}.{b}.{c}.{d}:{p} 9.9.9.9:{p} {s}",
    st.integers(0, 300), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
    st.one_of(st.integers(0, 70000), st.just("*")), st.integers(0, 10**10),
    st.sampled_from(["LISTEN", "ESTABLISHED", "TIME_WAIT", "Listen", "X"])))


@settings(max_examples=150, deadline=None)
@given(st.lists(line, max_size=30), st.integers(0, 3), st.text(max_size=3))
def test_random_blocks_agree(lines: list[str], cut: int, junk: str) -> None:
    if lines:  # damage one line in a random place
        lines[0] = lines[0][:cut * 7] + junk + lines[0][cut * 7:]
    slow, fast, bad_slow, bad_fast = both("\n".join(lines))
    assert slow == fast
    assert bad_slow == bad_fast
