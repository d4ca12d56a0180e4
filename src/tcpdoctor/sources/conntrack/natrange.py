"""The source-port ranges this namespace's NAT rules may pick from, as `nft -j list
ruleset` and `iptables-save` state them (masquerade to :A-B, --to-ports, snat to
ADDR:A-B). A rule without a range leaves the kernel's default (analysis.conntrack)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from typing import Any

from tcpdoctor.i18n import c_locale
from tcpdoctor.model.addresses import parse_addr

TIMEOUT = 10.0
MAX_OUTPUT = 16 << 20
ANY = -1  # the range of a masquerade rule: whatever address the interface has
_IPT = re.compile(r"-j (MASQUERADE|SNAT)\b(?:.*?--to-source ([0-9a-fA-F.:\[\]]+?)"
                  r"(?::(\d+)(?:-(\d+))?)?(?:\s|$))?(?:.*?--to-ports (\d+)(?:-(\d+))?)?")


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False,
                              env=c_locale())
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout[:MAX_OUTPUT].decode("utf-8", "replace")


def read_ranges() -> dict[int, tuple[int, int]]:
    """{translated address (128-bit) or ANY: (first port, last port)} of this namespace."""
    out: dict[int, tuple[int, int]] = {}
    text = _run(["nft", "-j", "list", "ruleset"])
    if text:
        with contextlib.suppress(ValueError):
            from_nft(json.loads(text), out)
    text = _run(["iptables-save", "-t", "nat"])
    if text:
        from_iptables(text, out)
    return out


def _port_range(port: Any) -> tuple[int, int] | None:
    if isinstance(port, int):
        return port, port
    if isinstance(port, dict) and isinstance(port.get("range"), list) \
            and len(port["range"]) == 2 and all(isinstance(p, int) for p in port["range"]):
        return int(port["range"][0]), int(port["range"][1])
    return None


def from_nft(doc: Any, out: dict[int, tuple[int, int]]) -> None:
    """Every masquerade/snat statement with a port range, wherever it sits."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for kind in ("masquerade", "snat"):
                stmt = node.get(kind)
                if isinstance(stmt, dict) and (rng := _port_range(stmt.get("port"))):
                    addr = stmt.get("addr")
                    key = _address(addr) if isinstance(addr, str) else ANY
                    out[key if key is not None else ANY] = rng
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def from_iptables(text: str, out: dict[int, tuple[int, int]]) -> None:
    for line in text.splitlines():
        m = _IPT.search(line)
        if not m:
            continue
        _kind, addr, a1, a2, p1, p2 = m.groups()
        first, last = (a1, a2) if a1 else (p1, p2)
        if first is None:
            continue
        key = _address(addr) if addr else ANY
        out[key if key is not None else ANY] = (int(first), int(last or first))


def _address(text: str) -> int | None:
    try:
        hi, lo, _ = parse_addr(text.split("-")[0])
    except ValueError:
        return None
    return (hi << 64) | lo
