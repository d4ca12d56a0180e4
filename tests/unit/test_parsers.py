"""Pure parsers on captured files: /proc/net/tcp{,6} against ss, kernel readers on vectors,
and fuzzing that nothing but the tool's own ParseError ever escapes."""

from __future__ import annotations

import contextlib
import io
import ipaddress
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.errors import ParseError
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.tcp import AF_INET, AF_INET6, STATE_NAMES
from tcpdoctor.sources import kstate, netlink, procfs
from tests.conftest import DATA, SS_STATES


def parse(name: str, family: int) -> dict:
    return procfs.parse_file(io.BytesIO((DATA / name).read_bytes()), family, name)


Row = tuple[str, tuple[str, int], tuple[str, int]]


def rows(cols: dict) -> Counter[Row]:
    out: Counter[Row] = Counter()
    for i in range(cols["state"].shape[0]):
        local = (format_addr(cols["laddr_hi"][i], cols["laddr_lo"][i]), int(cols["sport"][i]))
        peer = (format_addr(cols["raddr_hi"][i], cols["raddr_lo"][i]), int(cols["dport"][i]))
        out[(STATE_NAMES[cols["state"][i] - 1], local, peer)] += 1
    return out


def ss_endpoint(text: str) -> tuple[str, int]:
    """ss prints 1.2.3.4:80, [::1]:80, 0.0.0.0:* and [::]:*."""
    addr, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(addr.strip("[]"))), 0 if port == "*" else int(port)


def ss_rows() -> Counter[Row]:
    out: Counter[Row] = Counter()
    for line in (DATA / "proc_net_tcp.ss").read_text().splitlines():
        f = line.split()
        out[(SS_STATES[f[0]], ss_endpoint(f[3]), ss_endpoint(f[4]))] += 1
    return out


def test_proc_net_tcp_equals_ss() -> None:
    v4, v6 = parse("proc_net_tcp", AF_INET), parse("proc_net_tcp6", AF_INET6)
    assert rows(v4) + rows(v6) == ss_rows()


def test_proc_net_tcp_fields() -> None:
    c = parse("proc_net_tcp", AF_INET)
    states = Counter(STATE_NAMES[s - 1] for s in c["state"])
    assert states == {"SYN_RECV": 5, "TIME_WAIT": 4, "FIN_WAIT2": 3, "CLOSE_WAIT": 3,
                      "LISTEN": 3}
    tw = c["state"] == 6
    assert (c["timer"][tw] == 3).all() and (c["inode"][tw] == 0).all()
    assert (c["expires"][tw] > 0).all() and (c["expires"][tw] <= 60_000).all()
    cw = c["state"] == 8
    assert (c["rqueue"][cw] == 1).all() and (c["inode"][cw] > 0).all()


@pytest.mark.parametrize(("text", "line"), [
    (b"garbage\n", 1),
    (b"  sl  local\n   0: 0100007F:0050 00000000:0000 0A\n", 2),
    (b"  sl  local\n   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 "
     b"00000000     0        0 1 1 0\n   1: 0100ZZ7F:0050 00000000:0000 0A 00000000:00000000 "
     b"00:00000000 00000000     0        0 1 1 0\n", 3),
])
def test_procfs_errors_name_the_line(text: bytes, line: int) -> None:
    with pytest.raises(ParseError) as err:
        procfs.parse_file(io.BytesIO(text), AF_INET, "tcp.txt")
    assert err.value.line == line and str(err.value).startswith(f"tcp.txt:{line}: expected")


def test_sockstat_and_counters_vectors() -> None:
    sock = kstate.parse_key_value_lines((DATA / "ne_sockstat").read_text(), "sockstat")
    assert sock["TCP"] == {"inuse": 4, "orphan": 0, "tw": 4, "alloc": 17, "mem": 1}
    sock6 = kstate.parse_key_value_lines((DATA / "ne_sockstat6").read_text(), "sockstat6")
    assert "TCP6" in sock6
    ext = kstate.parse_counter_pairs((DATA / "ne_netstat").read_text(), "netstat")
    assert ext["TcpExt.TW"] == 388812 and ext["TcpExt.ListenOverflows"] == 0
    assert ext["IpExt.InOctets"] == 6286396970
    snmp = kstate.parse_counter_pairs((DATA / "ne_snmp").read_text(), "snmp")
    assert "Tcp.CurrEstab" in snmp and "Tcp.ActiveOpens" in snmp
    ct = kstate.parse_conntrack_stat((DATA / "ne_stat_nf_conntrack").read_text(), "ct")
    assert ct["conntrack.ignore"] == 89738 + 0  # summed over CPUs
    assert "conntrack.entries" not in ct


def test_kernel_state_from_captured_tree(tmp_path) -> None:
    net = tmp_path / "net"
    (net / "stat").mkdir(parents=True)
    for name in ("netstat", "snmp", "sockstat", "sockstat6"):
        (net / name).write_bytes((DATA / f"ne_{name}").read_bytes())
    (net / "stat" / "nf_conntrack").write_bytes((DATA / "ne_stat_nf_conntrack").read_bytes())
    nf = tmp_path / "sys" / "net" / "netfilter"
    nf.mkdir(parents=True)
    for name in ("nf_conntrack_count", "nf_conntrack_max"):
        (nf / name).write_bytes((DATA / f"ne_{name}").read_bytes())
    state = kstate.read_state(str(tmp_path))
    assert state.sockstat["TCP"]["tw"] == 4
    assert state.sysctl_int("net.netfilter.nf_conntrack_max") == 65536
    assert state.sysctls["net.ipv4.tcp_tw_recycle"] is None  # absent, not an error


def test_kernel_state_live() -> None:
    state = kstate.read_state()
    assert "TCP" in state.sockstat and "TcpExt.ListenOverflows" in state.counters
    assert state.sysctl_int("net.ipv4.tcp_max_tw_buckets")
    assert state.sysctls["net.ipv4.tcp_tw_recycle"] is None  # removed in 4.12
    assert kstate.nofile_limit(__import__("os").getpid())


@pytest.mark.parametrize("name", ["ne_netstat", "ne_snmp"])
def test_counter_mismatch_is_parse_error(name: str) -> None:
    lines = (DATA / name).read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0]  # drop one value
    with pytest.raises(ParseError):
        kstate.parse_counter_pairs("\n".join(lines), name)


PROC_LINE = (b"   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
             b"     0        0 81308 1 0000000000000000 100 0 0 10 0\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_procfs_fuzz_random(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        procfs.parse_file(io.BytesIO(b"  sl  local_address\n" + data), AF_INET, "f")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(PROC_LINE) - 1), st.binary(min_size=1, max_size=3))
def test_procfs_fuzz_mutated(pos: int, junk: bytes) -> None:
    line = PROC_LINE[:pos] + junk + PROC_LINE[pos + len(junk):]
    with contextlib.suppress(ParseError):
        procfs.parse_file(io.BytesIO(b"  sl  local_address\n" + line * 3), AF_INET, "f")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_netlink_fuzz(data: bytes) -> None:
    blob = (DATA / "ss1.dump").read_bytes()
    for candidate in (data, blob[: len(data)] + data):
        with contextlib.suppress(ParseError, netlink.NetlinkUnavailable):
            netlink.decode(candidate, stop_at_done=False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_kstate_fuzz(text: str) -> None:
    for fn in (kstate.parse_key_value_lines, kstate.parse_counter_pairs,
               kstate.parse_conntrack_stat):
        with contextlib.suppress(ParseError):
            fn(text, "f")
