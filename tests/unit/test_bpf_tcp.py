"""Issue 33: the TCP iterator's reader without a kernel: nested BTF members found through
anonymous unions, the program's jumps and loads, inet_diag's rules applied to recorded
records (timers per kind, queues, tcp_info's idle times, addresses), the jiffies' unit
told from the boot offset, columns kept as one value until another comes, and records
split across reads joined. No root needed."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.columns import BASE_COLUMNS, INFO_COLUMNS, is_constant
from tcpdoctor.sources import bpf_tcp, btf
from tcpdoctor.sources import bpf_tcp_prog as prog

HZ = 250
NOW = 10_000_000  # jiffies when the records were read


def _btf_blob() -> bytes:
    """int; struct in {int a[4]}; struct sock_common {union {u64 pair; struct {u32 d;
    u32 s;}}; u16 family; struct in v6;}; a typedef of it; struct sock {typedef common;
    u32 x:3 (a bitfield); struct {u32 counter;} rmem (anonymous type)}."""
    names = (b"\0int\0in\0a\0sock_common\0pair\0d\0s\0family\0v6\0common_t\0sock\0"
             b"__sk_common\0x\0rmem\0counter\0")
    off = {n.decode(): names.index(b"\0" + n + b"\0") + 1 for n in names.split(b"\0") if n}

    def member(name: str, type_id: int, bits: int) -> bytes:
        return struct.pack("=III", off[name] if name else 0, type_id, bits)

    types = [
        struct.pack("=III", off["int"], 1 << 24, 4) + struct.pack("=I", 32),        # 1
        struct.pack("=III", 0, 3 << 24, 0) + struct.pack("=III", 1, 1, 4),        # 2 int[4]
        struct.pack("=III", off["in"], (4 << 24) | 1, 16) + member("a", 2, 0),    # 3
        struct.pack("=III", 0, (4 << 24) | 2, 8) + member("d", 1, 0)              # 4 anon
        + member("s", 1, 32),
        struct.pack("=III", 0, (5 << 24) | 2, 8) + member("pair", 1, 0)           # 5 anon u
        + member("", 4, 0),
        struct.pack("=III", off["sock_common"], (4 << 24) | 3, 40)                # 6
        + member("", 5, 0) + member("family", 1, 64) + member("v6", 3, 128),
        struct.pack("=III", off["common_t"], 8 << 24, 6),                          # 7 typedef
        struct.pack("=III", 0, (4 << 24) | 1, 4) + member("counter", 1, 0),       # 8 anon
        struct.pack("=III", off["sock"], (1 << 31) | (4 << 24) | 3, 52)           # 9
        + member("__sk_common", 7, 0) + member("x", 1, (3 << 24) | 320)
        + member("rmem", 8, 384),
    ]
    blob = b"".join(types)
    return struct.pack("=HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(blob), len(blob),
                       len(names)) + blob + names


def test_btf_fields_are_found_through_typedefs_and_anonymous_members() -> None:
    types = btf.Btf(_btf_blob())
    assert types.field("sock_common", "pair") == (0, 4)
    assert types.field("sock_common", "s") == (4, 4)  # in an anonymous struct in a union
    assert types.field("sock_common", "v6") == (16, 16)
    assert types.field("sock_common", "v6.a") == (16, 16)
    assert types.field("sock", "__sk_common.family") == (8, 4)  # through a typedef
    assert types.field("sock", "rmem.counter") == (48, 4)
    assert types.field("sock", "x") is None  # a bitfield
    assert types.field("sock", "nothing") is None
    assert types.field("tcp_sock", "srtt_us") is None


def _fields() -> dict[tuple[str, str], tuple[int, int]]:
    """Where each member the program reads sits, as a kernel's BTF would say."""
    table = {}
    for n, (struct_name, fields) in enumerate((
            ("sock_common", prog.COMMON + prog.COMMON_V6), ("tcp_sock", prog.FULL),
            ("tcp_timewait_sock", prog.TIME_WAIT), ("tcp_request_sock", prog.REQUEST))):
        for i, (name, path) in enumerate(fields):
            size = prog.FIELDS[name][0].itemsize
            table[(struct_name, path)] = (1000 * n + 16 * i, size)
    table[("tcp_sock", prog.TIMEOUT[1])] = (1500, 8)  # no icsk_timeout: Linux 6.15+
    return table


def test_program_reads_the_given_offsets_and_every_jump_lands_inside() -> None:
    table = _fields()
    loads = prog.resolve(lambda s, p: table.get((s, p)))
    assert loads is not None
    assert ("timeout", 1500, 8) in loads["full"]
    assert ("daddr6", 0 + 16 * 5, 8) in loads["v6"] and ("daddr6+8", 88, 8) in loads["v6"]
    code = prog.program(loads)
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    assert insns[-1][0] == 0x95 and insns[-2] == (0xB7, 0, 0, 0)  # return 0
    for pc, (op, _regs, off, _imm) in enumerate(insns):
        if op in (0x15, 0x05):  # jeq, ja
            assert 0 < pc + 1 + off < len(insns)
    calls = [imm for op, _r, _o, imm in insns if op == 0x85]
    assert calls == [118, 46, 137, 138, 139, 127]
    assert (0x79, 0x82, 1500, 0) in insns  # r2 = *(u64 *)(r8 + 1500): the tcp_sock
    del table[("tcp_timewait_sock", "tw_sk.tw_substate")]
    assert prog.resolve(lambda s, p: table.get((s, p))) is None


def _record(**values: object) -> np.ndarray:
    rec = np.zeros(1, prog.RECORD)
    rec["jiffies"] = NOW
    rec["family"] = 2
    for name, value in values.items():
        rec[name] = value
    return rec


def _one(**values: object) -> dict[str, int]:
    cols = bpf_tcp.convert(_record(**values), HZ, True)
    return {k: int(v[0]) for k, v in cols.items()}


def _v4(a: str) -> int:
    return int.from_bytes(bytes(int(x) for x in a.split(".")), "little")


def test_a_full_ipv4_socket_reads_as_inet_diag_gives_it() -> None:
    got = _one(kind=1, state=1, portpair=(8080 << 16) | int.from_bytes(
        (51000).to_bytes(2, "big"), "little"),
        addrpair=_v4("10.0.0.2") | (_v4("10.0.0.1") << 32), pending=1, retransmits=2,
        probes_out=5, timeout=NOW + 50, rcv_nxt=1010, copied_seq=1000, write_seq=5000,
        snd_una=4000, uid=1000, ino=123456, lsndtime=NOW - 25, lrcvtime=NOW - 250,
        rcv_tstamp=NOW - 1, srtt_us=8000, rmem_alloc=300, sndbuf=87040, cookie=99,
        ifindex=3)
    assert (got["sport"], got["dport"]) == (8080, 51000)
    assert got["laddr_lo"] == int(V4_MAPPED) | 0x0A000001 and got["laddr_hi"] == 0
    assert got["raddr_lo"] == int(V4_MAPPED) | 0x0A000002
    assert (got["timer"], got["retrans"], got["expires"]) == (1, 2, 200)  # 50 jiffies
    assert (got["rqueue"], got["wqueue"], got["uid"], got["inode"]) == (10, 1000, 1000,
                                                                         123456)
    assert (got["lastsnd"], got["lastrcv"], got["lastack"], got["rtt"]) == (100, 1000, 4,
                                                                            1000)
    assert got["has_info"] == got["has_mem"] == 1 and got["rmem_alloc"] == 300
    assert (got["cookie"], got["ifindex"], got["state"]) == (99, 3, 1)


def test_timers_and_queues_follow_inet_diag_per_kind_and_state() -> None:
    probe = _one(kind=1, state=1, pending=3, probes_out=4, retransmits=1, timeout=NOW + 5)
    assert (probe["timer"], probe["retrans"], probe["expires"]) == (4, 4, 20)
    keep = _one(kind=1, state=1, sk_timer_armed=1, sk_timer=NOW + 1000, probes_out=2)
    assert (keep["timer"], keep["retrans"], keep["expires"]) == (2, 2, 4000)
    idle = _one(kind=1, state=1, sk_timer=NOW + 1000)  # not armed: no timer
    assert (idle["timer"], idle["retrans"], idle["expires"]) == (0, 0, 0)
    late = _one(kind=1, state=2, pending=1, timeout=NOW - 3)  # overdue: 0, never negative
    assert (late["timer"], late["expires"]) == (1, 0)
    ahead = _one(kind=1, state=8, rcv_nxt=5, copied_seq=9)  # copied past rcv_nxt: 0
    assert ahead["rqueue"] == 0
    listen = _one(kind=1, state=10, ack_backlog=3, max_ack_backlog=4096, lsndtime=1,
                  srtt_us=80, rcv_nxt=50)
    assert (listen["rqueue"], listen["wqueue"]) == (3, 4096)
    assert (listen["lastsnd"], listen["rtt"], listen["has_info"]) == (0, 0, 1)
    tw = _one(kind=2, state=5, timeout=NOW + 7500, uid=1000, ino=77, rmem_alloc=9)
    assert (tw["state"], tw["timer"], tw["expires"], tw["retrans"]) == (5, 3, 30000, 0)
    assert (tw["uid"], tw["inode"], tw["has_info"], tw["has_mem"], tw["rmem_alloc"]) == (
        0, 0, 0, 0, 0)
    req = _one(kind=3, state=12, retransmits=2, timeout=NOW + 250, uid=1000, ino=5)
    assert (req["state"], req["timer"], req["retrans"], req["expires"]) == (3, 1, 2, 1000)
    assert (req["uid"], req["inode"], req["rqueue"], req["wqueue"]) == (0, 0, 0, 0)


def test_ipv6_addresses_and_clock_wraps() -> None:
    local = bytes.fromhex("20010db8000000000000000000000001")
    got = _one(kind=1, state=1, family=10,
               saddr6=[int.from_bytes(local[:8], "little"), int.from_bytes(local[8:],
                                                                           "little")],
               lsndtime=(NOW + 10) & 0xFFFF_FFFF)  # a stamp "after" now: u32 wrap
    assert got["laddr_hi"] == 0x20010DB800000000 and got["laddr_lo"] == 1
    assert got["raddr_hi"] == got["raddr_lo"] == 0
    assert got["lastsnd"] == (2**32 - 10) * 4 % 2**32  # what jiffies_to_msecs(u32) gives
    mem_only = bpf_tcp.convert(_record(kind=1, state=1, lsndtime=NOW - 5, srtt_us=80), HZ,
                               False)
    assert int(mem_only["lastsnd"][0]) == 0 and not mem_only["has_info"][0]
    assert mem_only["has_mem"][0]


@pytest.mark.parametrize("hz", [100, 250, 1000])
def test_the_jiffies_unit_is_told_from_the_boot_offset(hz: int) -> None:
    for uptime in (20.0, 3600.0, 86400.0 * 90):
        jiffies = 2**32 - 300 * hz + int(uptime * hz)
        assert bpf_tcp.jiffies_hz(jiffies, uptime + 0.5) == hz
    assert bpf_tcp.jiffies_hz(2**32 + 1000, 301.0) == 0  # ambiguous: about 300 s up
    assert bpf_tcp.jiffies_hz(2**32 - 300 * 300 + 3600 * 300, 3600.0) == 0  # HZ=300


def test_columns_stay_one_value_until_another_comes() -> None:
    names = {"state": "u1", "uid": "u4", "rtt": "u4"}
    sink = bpf_tcp._Sink(names, 4)
    for i in range(5):
        sink.add({"state": np.full(3, 1, np.uint8), "uid": np.zeros(3, np.uint32),
                  "rtt": np.full(3, 7 if i < 3 else i, np.uint32)})
    cols = sink.columns()
    assert is_constant(cols["state"]) and is_constant(cols["uid"]) and cols["uid"].shape == (15,)
    assert cols["rtt"].tolist() == [7] * 9 + [3] * 3 + [4] * 3  # grown past its room too
    assert bpf_tcp._Sink(names, 4).columns()["state"].shape == (0,)


def test_records_split_across_reads_are_joined(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffers of a few records (not a multiple of the record's size) and a cut record at
    the end: every whole record read once, in order."""
    monkeypatch.setattr(bpf_tcp, "READ_SIZE", 1000)
    n = 257
    recs = np.zeros(n, prog.RECORD)
    uptime = time.clock_gettime(time.CLOCK_MONOTONIC)
    recs["jiffies"] = 2**32 - 300 * HZ + int(uptime * HZ)
    recs["family"], recs["kind"], recs["state"] = 2, 1, 1
    recs["portpair"] = np.arange(n, dtype=np.uint32) << 16
    recs["srtt_us"] = np.arange(n, dtype=np.uint32) * 8
    path = tmp_path / "records"
    path.write_bytes(recs.tobytes() + b"\1" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        cols = bpf_tcp._read(fd, frozenset(BASE_COLUMNS), True)
    finally:
        os.close(fd)
    assert cols is not None and set(cols) == set(BASE_COLUMNS) | set(INFO_COLUMNS)
    assert cols["sport"].tolist() == list(range(n)) and cols["rtt"].tolist() == list(range(n))


def test_the_reader_is_not_tried_off_the_host_or_when_switched_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not bpf_tcp.available("/tmp/proc-fixture")
    monkeypatch.setenv("TCPDOCTOR_NO_BPF", "1")
    assert not bpf_tcp.available("/proc")


def test_a_time_namespace_offset_turns_the_reader_off(tmp_path: Path) -> None:
    """The jiffies' unit comes from CLOCK_MONOTONIC: an offset one (a container's time
    namespace) would mislead it, and the netlink reader serves instead."""
    path = tmp_path / "timens_offsets"
    for text, offset in (("monotonic 0 0\nboottime 0 0\n", 0),
                         ("monotonic 86400 0\nboottime 0 0\n", 86400),
                         ("monotonic 0 5\n", 1), ("monotonic x 0\n", None), ("", 0)):
        path.write_text(text)
        assert bpf_tcp._monotonic_offset(str(path)) == offset, text
    assert bpf_tcp._monotonic_offset(str(tmp_path / "none")) == 0  # before Linux 5.6


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=prog.RECORD.itemsize * 6),
       st.sampled_from(bpf_tcp.EXACT_HZ), st.booleans())
def test_any_record_bytes_convert_without_error(data: bytes, hz: int, info: bool) -> None:
    """Whatever a kernel writes into the fields (a kind, a state or a family this reader
    does not know, counters that wrapped), every record becomes one row of each column."""
    n = len(data) // prog.RECORD.itemsize
    recs = np.frombuffer(data[:n * prog.RECORD.itemsize], prog.RECORD)
    cols = bpf_tcp.convert(recs, hz, info)
    assert set(cols) >= set(BASE_COLUMNS) | set(INFO_COLUMNS)
    assert all(v.shape == (n,) for v in cols.values())
    assert bool((cols["state"] != 12).all())  # request sockets folded into SYN_RECV
