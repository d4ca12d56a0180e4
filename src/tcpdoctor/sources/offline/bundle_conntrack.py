"""A collect bundle's conntrack table (sockets/conntrack.txt: `conntrack -L` or a copy of
/proc/net/nf_conntrack), with the namespace's addresses (`ip -o addr`) and NAT rules
(nft -j, iptables-save), as analyze's rules want them."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from typing import Any

from tcpdoctor.errors import ParseError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.addresses import V4_MAPPED_INT
from tcpdoctor.model.bundle_layout import MAX_SOCKET_BYTES
from tcpdoctor.sources.conntrack import natrange, text


def _read(path: str) -> bytes | None:
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    with open(path, "rb") as fh:
        return fh.read(MAX_SOCKET_BYTES)


def addresses(data: bytes) -> list[int]:
    """`ip -o addr show` lines: `2: eth0    inet 10.0.0.2/24 brd ...` -> the addresses."""
    out = set()
    for line in data.decode("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) < 4 or words[2] not in ("inet", "inet6"):
            continue
        try:
            addr = ipaddress.ip_interface(words[3]).ip
        except ValueError:
            continue
        out.add(V4_MAPPED_INT | int(addr) if addr.version == 4 else int(addr))
    return sorted(out)


def addresses_in(base: str) -> list[int]:
    own = _read(os.path.join(base, "sockets", "addresses.txt"))
    return addresses(own) if own else []


def load(base: str, label: str) -> tuple[dict[str, Any] | None, list[str]]:
    """{"table", "addresses", "ranges"} of the bundle's namespace at base, or None; notes."""
    sockets = os.path.join(base, "sockets")
    path = os.path.join(sockets, "conntrack.txt")
    if not os.path.isfile(path):  # the script could not read the table (or is older)
        return None, []
    data = _read(path) or b""  # present and empty: an empty table
    try:
        table = text.parse(data, f"{label}:sockets/conntrack.txt")
    except ParseError as exc:
        return None, [Msg("conntrack table not read: {error}", error=exc)]
    ranges: dict[int, tuple[int, int]] = {}
    nft = _read(os.path.join(sockets, "nft.json"))
    if nft:
        with contextlib.suppress(ValueError, RecursionError):  # a hostile bundle's JSON
            natrange.from_nft(json.loads(nft), ranges)
    ipt = _read(os.path.join(sockets, "iptables-nat.txt"))
    if ipt:
        natrange.from_iptables(ipt.decode("utf-8", "replace"), ranges)
    own = _read(os.path.join(sockets, "addresses.txt"))
    return {"table": table, "addresses": addresses(own) if own else [], "ranges": ranges}, []
