"""The conntrack readers and join without root, from one NAT gateway recorded three ways
at the same moment (tests/data/conntrack: the raw ctnetlink dump, /proc/net/nf_conntrack,
`conntrack -L`): the three read alike, counts per state equal the listing's own words;
hostile bytes give a ParseError, never a traceback; the join finds ghosts on either end,
leaves addresses of several namespaces unattributed; NAT ranges from nft and iptables."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.analysis import conntrack as ct
from tcpdoctor.errors import ParseError
from tcpdoctor.model.addresses import V4_MAPPED_INT
from tcpdoctor.model.conntrack import CT_COLUMNS, CT_STATE_CODES, ConntrackTable
from tcpdoctor.model.tcp import TCP_ESTABLISHED
from tcpdoctor.sources.conntrack import natrange, text
from tcpdoctor.sources.conntrack.decode import decode

DATA = Path(__file__).resolve().parents[1] / "data" / "conntrack"
KEYS = ("ct_state", "orig_src_lo", "orig_sport", "orig_dst_lo", "orig_dport", "reply_src_lo",
        "reply_sport", "reply_dst_lo", "reply_dport", "mark", "zone", "family")


def rows(cols: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    return sorted(zip(*(cols[k].tolist() for k in KEYS), strict=True))


def test_the_three_recordings_read_alike_and_match_the_listing() -> None:
    by_netlink = decode((DATA / "nat-gateway.ctnetlink").read_bytes())
    by_proc = text.read_file(str(DATA / "nat-gateway.proc"))
    listing = (DATA / "nat-gateway.conntrack-L").read_text()
    by_tool = text.parse(listing.encode(), "conntrack -L")
    assert by_netlink.done and by_netlink.other == 0 and by_netlink.odd == 0
    assert rows(by_netlink.columns) == rows(by_proc.columns) == rows(by_tool.columns)
    said = Counter(line.split()[3] for line in listing.splitlines())
    assert by_tool.state_counts() == dict(said) == ConntrackTable(
        by_netlink.columns, "netlink").state_counts()
    assert len(by_tool) == 14
    # The timeouts the listing states, entry by entry.
    assert sorted(by_tool.columns["timeout"].tolist()) == sorted(
        int(line.split()[2]) for line in listing.splitlines())


def test_other_protocols_are_counted_not_kept_and_ipv6_is_read() -> None:
    lines = (
        b"ipv4     2 udp      17 29 src=10.0.0.2 dst=8.8.8.8 sport=5353 dport=53 [UNREPLIED] "
        b"src=8.8.8.8 dst=10.0.0.2 sport=53 dport=5353 mark=0 zone=0 use=2\n"
        b"ipv6     10 tcp      6 60 SYN_SENT src=2001:db8::1 dst=2001:db8::2 sport=1234 "
        b"dport=443 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 sport=443 dport=1234 mark=5 "
        b"zone=3 use=2\n"
        b"ipv4     2 icmp     1 29 src=10.0.0.2 dst=10.0.0.1 type=8 code=0 id=7 src=10.0.0.1 "
        b"dst=10.0.0.2 type=0 code=0 id=7 mark=0 zone=0 use=2\n")
    t = text.parse(lines, "x")
    assert len(t) == 1 and t.other_entries == 2
    c = t.columns
    assert c["family"].tolist() == [10] and c["zone"].tolist() == [3] and c["mark"].tolist() == [5]
    assert (int(c["orig_src_hi"][0]) << 64 | int(c["orig_src_lo"][0])) == 0x20010DB8 << 96 | 1
    assert c["status"][0] & 2 == 0  # [UNREPLIED]: no reply seen


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.binary(min_size=1, max_size=4))
def test_hurt_dumps_give_a_parse_error_or_columns(where: int, junk: bytes) -> None:
    blob = (DATA / "nat-gateway.ctnetlink").read_bytes()
    at = where % len(blob)
    with contextlib.suppress(ParseError):
        got = decode(blob[:at] + junk + blob[at + len(junk):])
        assert set(got.columns) == set(CT_COLUMNS)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_hurt_listings_give_a_parse_error_or_columns(junk: bytes) -> None:
    listing = (DATA / "nat-gateway.conntrack-L").read_bytes()
    for data in (junk, listing[:len(junk)] + junk, junk + listing[:200]):
        with contextlib.suppress(ParseError):
            text.parse(data, "x")


def v4(a: str) -> int:
    b = [int(x) for x in a.split(".")]
    return V4_MAPPED_INT | (b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3])


def table(entries: list[tuple[str, str, int, str, int, str, int, str, int]]) -> ConntrackTable:
    """(state, orig src, sport, orig dst, dport, reply src, sport, reply dst, dport)."""
    n = len(entries)
    cols = {k: np.zeros(n, dtype=dt) for k, dt in CT_COLUMNS.items()}
    for i, (state, os_, osp, od, odp, rs, rsp, rd, rdp) in enumerate(entries):
        cols["ct_state"][i] = CT_STATE_CODES[state]
        for name, addr in (("orig_src", os_), ("orig_dst", od), ("reply_src", rs),
                           ("reply_dst", rd)):
            cols[f"{name}_lo"][i] = v4(addr)
        cols["orig_sport"][i], cols["orig_dport"][i] = osp, odp
        cols["reply_sport"][i], cols["reply_dport"][i] = rsp, rdp
        cols["status"][i] = 0x10 if (rd, rdp) != (os_, osp) else 0
    return ConntrackTable(cols, "test")


def sockets(rows_: list[tuple[int, str, int, str, int]]) -> dict[str, np.ndarray]:
    """(namespace, local, lport, remote, rport), all ESTABLISHED."""
    return {"netns_id": np.array([r[0] for r in rows_], np.uint16),
            "state": np.full(len(rows_), TCP_ESTABLISHED, np.uint8),
            "laddr_hi": np.zeros(len(rows_), np.uint64),
            "laddr_lo": np.array([v4(r[1]) for r in rows_], np.uint64),
            "sport": np.array([r[2] for r in rows_], np.uint16),
            "raddr_hi": np.zeros(len(rows_), np.uint64),
            "raddr_lo": np.array([v4(r[3]) for r in rows_], np.uint64),
            "dport": np.array([r[4] for r in rows_], np.uint16)}


SPACES = [{"netns": "host"}, {"netns": "pod-a", "pod": "default/a"}, {"netns": "srv"},
          {"netns": "pod-b"}]
ADDRS = [[v4("127.0.0.1"), v4("203.0.113.1")], [v4("127.0.0.1"), v4("10.0.0.2")],
         [v4("127.0.0.1"), v4("10.9.0.9")], [v4("127.0.0.1"), v4("10.0.0.3")]]


def test_ghosts_on_either_end_and_none_where_sockets_exist() -> None:
    t = table([
        # pod a -> srv through SNAT: both sockets exist
        ("ESTABLISHED", "10.0.0.2", 1000, "10.9.0.9", 80, "10.9.0.9", 80, "203.0.113.1", 41000),
        # pod a's socket gone (the server's still there): a ghost on the originator's end
        ("ESTABLISHED", "10.0.0.2", 1001, "10.9.0.9", 80, "10.9.0.9", 80, "203.0.113.1", 41001),
        # an outside client to srv; the server socket gone: a ghost on the responder's end
        ("CLOSE_WAIT", "198.51.100.7", 5555, "10.9.0.9", 80, "10.9.0.9", 80, "198.51.100.7",
         5555),
        # TIME_WAIT without sockets is no ghost (not an open state)
        ("TIME_WAIT", "10.0.0.3", 7, "10.9.0.9", 80, "10.9.0.9", 80, "10.0.0.3", 7),
        # loopback in the table's own namespace (host), its socket there
        ("ESTABLISHED", "127.0.0.1", 9, "127.0.0.1", 6379, "127.0.0.1", 6379, "127.0.0.1", 9),
    ])
    socks = sockets([(1, "10.0.0.2", 1000, "10.9.0.9", 80),
                     (2, "10.9.0.9", 80, "203.0.113.1", 41000),
                     (2, "10.9.0.9", 80, "203.0.113.1", 41001),
                     (0, "127.0.0.1", 9, "127.0.0.1", 6379),
                     (0, "127.0.0.1", 6379, "127.0.0.1", 9)])
    j = ct.join(t, SPACES, ADDRS, 0, socks)
    assert j.ghost.tolist() == [False, True, True, False, False]
    assert j.origin.tolist() == [1, 1, -1, 3, 0]
    g = ct.ghosts(j)
    assert g["count"] == 2 and g["by_state"] == {"ESTABLISHED": 1, "CLOSE_WAIT": 1}
    assert {(e["namespace"], e["side"]) for e in g["entries"]} == {
        ("default/a", "originator"), ("srv", "responder")}
    # 127.0.0.1 is every namespace's: read in pod-b's table it is pod-b's, never another's.
    assert ct.join(t, SPACES, ADDRS, 3, socks).origin.tolist()[4] == 3


def test_snat_ports_per_destination_and_the_range_that_applies() -> None:
    t = table([("ESTABLISHED", "10.0.0.2", 1000 + i, "10.9.0.9", 80, "10.9.0.9", 80,
                "203.0.113.1", 40000 + i) for i in range(6)]
              + [("ESTABLISHED", "10.0.0.2", 2000, "10.9.0.8", 443, "10.9.0.8", 443,
                  "203.0.113.1", 40000)])
    got = ct.snat_usage(t, {-1: (40000, 40007)})
    assert [(r["destination"], r["ports_used"], r["ports_available"]) for r in got] == [
        ("10.9.0.9:80", 6, 8), ("10.9.0.8:443", 1, 8)]
    assert ct.snat_usage(t)[0]["range"] == "1024-65535" and not ct.snat_usage(t)[0][
        "range_known"]


def test_nat_ranges_from_nft_json_and_iptables_save() -> None:
    doc = {"nftables": [{"rule": {"expr": [{"match": {}}, {"masquerade": {
        "port": {"range": [40000, 40009]}}}]}}, {"rule": {"expr": [{"snat": {
            "addr": "203.0.113.5", "port": {"range": [2000, 2999]}}}]}}]}
    out: dict[int, tuple[int, int]] = {}
    natrange.from_nft(json.loads(json.dumps(doc)), out)
    assert out == {-1: (40000, 40009), v4("203.0.113.5"): (2000, 2999)}
    out = {}
    natrange.from_iptables(
        "-A POSTROUTING -o eth0 -j MASQUERADE --to-ports 1024-2047\n"
        "-A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 198.51.100.1:5000-5099\n"
        "-A POSTROUTING -j MASQUERADE\n", out)
    assert out == {-1: (1024, 2047), v4("198.51.100.1"): (5000, 5099)}


def test_a_namespace_without_sockets_joins_with_owners_unknown() -> None:
    """check --netns GATEWAY: entries, no socket there (with the owner column): no crash,
    every origin elsewhere, owners unknown."""
    t = table([("ESTABLISHED", "10.0.0.2", 1000, "10.9.0.9", 80, "10.9.0.9", 80,
                "203.0.113.1", 41000)])
    empty = {k: np.zeros(0, v.dtype) for k, v in sockets([(0, "1.1.1.1", 1, "2.2.2.2", 2)]).items()}
    empty["pid"] = np.zeros(0, np.int32)
    j = ct.join(t, [{"netns": "gw"}], [[v4("203.0.113.1")]], 0, empty, {})
    assert j.origin.tolist() == [-1] and not j.ghost.any()
    assert j.origin_pid is not None and j.origin_pid.tolist() == [-1]
    assert ct.group(j, ["process"]) == [{"process": "-", "entries": 1, "ghosts": 0}]
