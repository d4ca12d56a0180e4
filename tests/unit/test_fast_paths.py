"""Issue 33: the paths that make `check` fast at a million sockets give the answers of the
plain ones: the owner table from the BPF iterator's records and through /proc, the dense
inode lookup and the binary search, packed group keys and a lexsort, columns drained and
joined; runs of equal-length netlink messages and the full scan; the BTF reader on a
recorded blob of the kernel's format. No root needed."""

from __future__ import annotations

import importlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.analysis import cost
from tcpdoctor.errors import ParseError
from tcpdoctor.model import columns
from tcpdoctor.model.addresses import V4_MAPPED
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.sources import bpf_iter, btf, netlink, owners
from tests import synth

DUMP = Path(__file__).resolve().parents[1] / "data" / "ss1.dump"


def _blob() -> bytes:
    """A BTF blob as the kernel writes it: an int, two structs (one with a bitfield), a
    function prototype and the iterator's target function."""
    names = b"\0int\0file\0f_mode\0f_inode\0inode\0i_flags\0i_mode\0bpf_iter_task_file\0"
    off = {n.decode(): names.index(b"\0" + n + b"\0") + 1 for n in names.split(b"\0") if n}
    types = b"".join([
        struct.pack("=III", off["int"], 1 << 24, 4) + struct.pack("=I", 32),
        struct.pack("=III", off["file"], (4 << 24) | 2, 16)
        + struct.pack("=III", off["f_mode"], 1, 0) + struct.pack("=III", off["f_inode"], 1, 64),
        struct.pack("=III", off["inode"], (1 << 31) | (4 << 24) | 2, 8)
        + struct.pack("=III", off["i_flags"], 1, (3 << 24) | 0)
        + struct.pack("=III", off["i_mode"], 1, 32),
        struct.pack("=III", 0, 13 << 24, 0),
        struct.pack("=III", off["bpf_iter_task_file"], 12 << 24, 4),
    ])
    header = struct.pack("=HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(types), len(types),
                         len(names))
    return header + types + names


def test_btf_reader_finds_functions_and_member_offsets() -> None:
    types = btf.Btf(_blob())
    assert types.find(btf.KIND_FUNC, "bpf_iter_task_file") == 5
    assert types.member_offset("file", "f_inode") == 8
    assert types.member_offset("inode", "i_mode") == 4
    assert types.member_offset("inode", "i_flags") is None  # a bitfield: no byte load
    assert types.member_offset("file", "nothing") is None
    assert types.member_offset("task_struct", "tgid") is None


def test_btf_reader_refuses_what_is_not_btf(tmp_path: object) -> None:
    for blob in (b"", b"\0" * 24, _blob()[:10]):
        try:
            btf.Btf(blob)
        except (ValueError, struct.error):
            continue
        raise AssertionError(blob)
    assert btf.load("/nonexistent/vmlinux") is None


@pytest.mark.parametrize("expect", [0, 10, 300_000, 10_000_000])
def test_iterator_output_is_read_whole_whatever_the_estimate(tmp_path: Path,
                                                             expect: int) -> None:
    """Records are read whole and in order when the host's open-file estimate is far too
    small (the buffer grows several times), close, or far too large."""
    records = np.zeros(300_001, bpf_iter.RECORD)
    records["pid"] = np.arange(300_001) // 7
    records["fd"] = np.arange(300_001) % 7
    records["ino"] = np.arange(300_001, dtype=np.uint64) * 3
    path = tmp_path / "records"
    path.write_bytes(records.tobytes() + b"\1\2\3")  # a cut record at the end: left out
    with open(path, "rb") as fh:
        got = bpf_iter._read_all(fh.fileno(), expect)
    assert got.dtype == bpf_iter.RECORD and np.array_equal(got, records)


def test_iterator_program_is_whole_instructions_with_the_given_offsets() -> None:
    code = bpf_iter.program(f_inode=40, i_mode=0, i_ino=64, tgid=1300)
    assert len(code) % 8 == 0 and len(code) // 8 == 24
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    assert (0x79, 0x72, 40, 0) in insns and (0x61, 0x85, 1300, 0) in insns
    assert insns[-1][0] == 0x95  # exit
    assert not bpf_iter.available("/tmp/proc-fixture")


def test_owner_table_from_records_equals_the_proc_scan_semantics() -> None:
    """Lowest pid for a shared socket, every descriptor counted, non-sockets ignored."""
    rows = [(10, 0, 0), (10, 1, 0), (10, 3, 500), (10, 4, 501), (7, 5, 501), (7, 0, 0),
            (12, 9, 700)]
    files = np.array(rows, dtype=bpf_iter.RECORD)
    table = owners._from_records(files, "/nonexistent")
    assert table.inodes.tolist() == [500, 501, 700] and table.pids.tolist() == [10, 7, 12]
    assert table.fd_counts == {7: 2, 10: 4, 12: 1}
    assert table.names == {7: "?", 10: "?", 12: "?"}  # gone processes keep a placeholder


def test_dense_inode_lookup_equals_the_binary_search() -> None:
    rng = np.random.default_rng(7)
    for spread in (3, 10_000_000):  # a dense range, and one too sparse for a direct table
        inodes = np.unique(rng.integers(1, 200_000 * spread, 50_000)).astype(np.uint32)
        pids = rng.integers(1, 400, inodes.shape[0]).astype(np.int32)
        table = owners.OwnerTable(inodes, pids)
        asked = np.concatenate([rng.choice(inodes, 20_000), rng.integers(0, 2**32 - 1, 5000),
                                [0, int(inodes[0]) - 1, int(inodes[-1]) + 1]]).astype(np.uint32)
        got = owners.lookup(table, asked)
        idx = np.minimum(np.searchsorted(inodes, asked), inodes.shape[0] - 1)
        want = np.where((inodes[idx] == asked) & (asked != 0), pids[idx], -1)
        assert np.array_equal(got, want)


def test_packed_group_keys_equal_the_lexsort() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    cases = [
        [(np.uint64(0xFFFF) << np.uint64(32)) | rng.integers(0, 300, n).astype(np.uint64),
         rng.integers(20000, 20070, n).astype(np.uint16)],
        [rng.integers(-1, 50, n).astype(np.int32), rng.integers(1, 12, n).astype(np.uint8)],
        [rng.integers(0, 2**63, n, dtype=np.uint64), rng.integers(0, 9, n).astype(np.uint16)],
    ]
    for cols in cases:
        for weights in (None, rng.integers(1, 5, n)):
            fast = columns.group_rows(cols, weights)
            slow = columns._runs(cols, n, weights)
            assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=True))


def test_drained_columns_join_the_parts_and_keep_uniform_ones_as_one_value() -> None:
    parts = [{"state": np.array([1, 2], np.uint8), "optmem": np.zeros(2, np.uint32)},
             {"state": np.array([8], np.uint8), "optmem": np.zeros(1, np.uint32)}]
    out = columns.drain_columns(parts, {"state": "u1", "optmem": "u4"})
    assert parts == [] and out["state"].tolist() == [1, 2, 8]
    assert columns.is_constant(out["optmem"]) and out["optmem"].tolist() == [0, 0, 0]
    table, slot = columns.owner_slots(np.array([5, -1, 9, 5, 77], np.int32), [9, 5])
    assert table.tolist() == [-1, 5, 9] and slot.tolist() == [1, 0, 2, 1, 0]


def test_owner_slots_direct_table_equals_the_search() -> None:
    rng = np.random.default_rng(7)
    for dtype in (np.int32, np.int64):
        pid = rng.integers(-1, 5000, 20_000).astype(dtype)
        owners = [int(p) for p in rng.integers(0, 6000, 300)] + [0]
        table, slot = columns.owner_slots(pid, owners)
        expected = np.searchsorted(table, pid)
        expected[(expected >= table.shape[0])
                 | (table[np.minimum(expected, table.shape[0] - 1)] != pid)] = 0
        assert np.array_equal(slot, expected)
    # a pid beyond any pid_max (a recorded fixture's) takes the search, with the same answer
    table, slot = columns.owner_slots(np.array([1 << 40, 3, -1], np.int64), [1 << 40, 3])
    assert table.tolist() == [-1, 3, 1 << 40] and slot.tolist() == [2, 1, 0]


def _messages() -> list[bytes]:
    """The recorded dump's messages, each with its padding (NLMSG_DONE dropped)."""
    blob, out, off = DUMP.read_bytes(), [], 0
    while off + 16 <= len(blob):
        length, mtype = struct.unpack_from("=IH", blob, off)
        if mtype == 20:  # SOCK_DIAG_BY_FAMILY
            out.append(blob[off:off + ((length + 3) & ~3)])
        off += (length + 3) & ~3
    return out


def _decoded(data: bytes) -> dict[str, list[int]] | str:
    try:
        cols, _ = netlink.decode(data, stop_at_done=False)
    except (ParseError, netlink.NetlinkUnavailable) as exc:
        return type(exc).__name__
    return {k: np.asarray(v).tolist() for k, v in cols.items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 150)), min_size=1, max_size=6),
       st.integers(0, 10**6), st.binary(min_size=0, max_size=2))
def test_equal_length_runs_decode_as_the_full_scan(runs: list[tuple[int, int]], where: int,
                                                   junk: bytes) -> None:
    msgs = _messages()
    chosen = [msgs[i % len(msgs)] for i, k in runs for _ in range(k)]
    data = b"".join(chosen)
    starts = np.cumsum([0] + [len(m) for m in chosen])
    # Half the time a header is hurt (length, type, sequence or port id), else anything.
    at = int(starts[where % len(chosen)]) + where % 16 if where % 2 else where % len(data)
    data = data[:at] + junk + data[at + len(junk):]  # a header or a body hurt, or none
    fast = _decoded(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.import_module("tcpdoctor.sources.netlink.chain"), "_LEAST_RUN",
                   10**9)
        assert fast == _decoded(data)
    if not junk and isinstance(fast, dict):
        assert len(fast["state"]) == sum(k for _, k in runs)


LAB = DUMP.with_name("ss_tani_lab.dump")  # replies with tcp_info and skmem, of four lengths


def _reference(msg: bytes) -> dict[str, int]:
    """One message decoded field by field with struct: what the columnar decoder must give."""
    fam, state = msg[16], msg[17]
    sport, dport = struct.unpack_from(">HH", msg, 20)
    rqueue, _, _, inode = struct.unpack_from("=IIII", msg, 72)
    hi, lo = int.from_bytes(msg[24:32], "big"), int.from_bytes(msg[32:40], "big")
    if fam == 2:
        hi, lo = 0, (hi >> 32) | int(V4_MAPPED)
    out = {"state": state, "sport": sport, "dport": dport, "rqueue": rqueue, "inode": inode,
           "laddr_hi": hi, "laddr_lo": lo, "has_info": 0, "has_mem": 0, "lastrcv": 0,
           "lastsnd": 0, "rmem_alloc": 0, "wmem_queued": 0}
    pos = 88
    while pos + 4 <= len(msg):
        rta_len, rta_type = struct.unpack_from("=HH", msg, pos)
        if rta_len < 4:
            break
        if rta_type == 2 and rta_len - 4 >= 72:  # INET_DIAG_INFO
            out["has_info"] = 1
            out["lastsnd"], out["lastrcv"] = struct.unpack_from("=I4xI", msg, pos + 4 + 44)
        if rta_type == 7 and rta_len - 4 >= 28:  # INET_DIAG_SKMEMINFO
            out["has_mem"] = 1
            out["rmem_alloc"], = struct.unpack_from("=I", msg, pos + 4)
            out["wmem_queued"], = struct.unpack_from("=I", msg, pos + 4 + 20)
        pos += (rta_len + 3) & ~3
    return out


def _with_skmem(msg: bytes, k: int) -> bytes:
    """The message with an INET_DIAG_SKMEMINFO attribute (nine u32) appended."""
    attr = struct.pack("=HH", 4 + 36, 7) + struct.pack("=9I", *(1000 * k + i for i in range(9)))
    return struct.pack("=I", len(msg) + len(attr)) + msg[4:] + attr


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 120)), min_size=1, max_size=5))
def test_rows_and_strided_views_read_every_field_as_struct_does(
        runs: list[tuple[int, int]]) -> None:
    # Runs of one message (evenly spaced: strided views) and mixtures (row gathers).
    blob, msgs, off = LAB.read_bytes(), [], 0
    while off + 16 <= len(blob):
        length, mtype = struct.unpack_from("=IH", blob, off)
        if mtype == 20:
            msgs.append(blob[off:off + ((length + 3) & ~3)])
        off += (length + 3) & ~3
    msgs += [_with_skmem(m, k) for k, m in enumerate(msgs)]  # the recording has no skmem
    chosen = [msgs[i % len(msgs)] for i, k in runs for _ in range(k)]
    cols, _ = netlink.decode(b"".join(chosen), info=True, stop_at_done=False)
    want = [_reference(m) for m in chosen]
    for name in want[0]:
        assert np.asarray(cols[name]).astype(np.int64).tolist() == [w[name] for w in want], name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.sampled_from(["ESTABLISHED", "TIME_WAIT",
                                                              "CLOSE_WAIT", "SYN_RECV"]),
                          st.sampled_from([-1, 7, 300, 4_000_000]), st.integers(0, 5000),
                          st.integers(0, 3000)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, 2**32)))
def test_cost_views_from_one_sheet_equal_per_socket_sums(
        groups: list[tuple[int, str, int, int, int]], pick: int | None) -> None:
    """by_state, by_process and largest, read from one sheet of (state, owner) sums, give
    the sums written out socket by socket (owners unknown, large pids, a masked subset)."""
    snap = synth.snapshot(*[{"n": n, "state": state, "pid": pid, "rmem_alloc": r,
                             "wmem_queued": w, "has_mem": 1, "inode": 5 if pid >= 0 else 0}
                            for n, state, pid, r, w in groups],
                          names={7: "a", 300: "b", 4_000_000: "c"})
    kernel = KernelState(0.0, slab={"TCP": (2000, 0), "tw_sock_TCP": (200, 0),
                                    "request_sock_TCP": (300, 0)})
    sc = cost.socket_cost(snap, kernel)
    c = snap.columns
    rows = range(len(snap))
    def total(col: np.ndarray, where: list[int]) -> int:
        return sum(int(col[i]) for i in where)
    for code, name in enumerate(STATE_NAMES, 1):
        mine = [i for i in rows if c["state"][i] == code]
        got = cost.by_state(snap, sc).get(name)
        assert (got is None) == (not mine)
        if mine:
            assert got == {"sockets": len(mine), "object_bytes": total(sc.objects, mine),
                           "buffer_bytes": total(sc.buffers, mine),
                           "fds": total(sc.fds, mine),
                           "memory_bytes": total(sc.objects + sc.buffers, mine)}
    for item in cost.by_process(snap, sc):
        mine = [i for i in rows if c["pid"][i] == item["pid"]]
        assert item["sockets"] == len(mine) and item["fds"] == total(sc.fds, mine)
        assert item["memory_bytes"] == total(sc.objects + sc.buffers, mine)
    mask = None if pick is None else np.array([(pick >> (i % 32)) & 1 == 1 for i in rows])
    for item in cost.largest(snap, sc, 3, mask):
        column = {"receive buffers": sc.receive, "send buffers": sc.send,
                  "socket objects": sc.objects}[item["what"]]
        mine = [i for i in rows if (mask is None or mask[i])
                and STATE_NAMES[c["state"][i] - 1] == item["state"]
                and (c["pid"][i] if c["pid"][i] in (7, 300, 4_000_000) else -1) == item["pid"]]
        assert item["sockets"] == len(mine) and item["bytes"] == total(column, mine) > 0


def test_port_membership_by_table_equals_isin() -> None:
    rng = np.random.default_rng(7)
    col = rng.integers(0, 1 << 16, 50_000).astype(np.uint16)
    for ports in (np.array([], np.int64), np.array([0, 22, 443, 65535]),
                  np.unique(col[:300]), np.array([-1, 70000, 80])):
        assert np.array_equal(columns.among_ports(col, ports), np.isin(col, ports))
        wide = col.astype(np.int32)  # another width: isin itself
        assert np.array_equal(columns.among_ports(wide, ports), np.isin(wide, ports))


def test_cost_views_keep_a_socket_of_no_known_state_out_of_every_state() -> None:
    """A damaged capture's state code (found by the fuzzer: the sheet's reshape failed): the
    socket counts for its owner, in no state and in no largest item."""
    snap = synth.snapshot({"n": 3, "state": "ESTABLISHED", "pid": 7, "rmem_alloc": 10,
                           "has_mem": 1, "inode": 5},
                          {"n": 2, "state": "CLOSE_WAIT", "pid": 7, "rmem_alloc": 1000,
                           "has_mem": 1, "inode": 6}, names={7: "a"})
    snap.columns["state"][3:] = 40
    sc = cost.socket_cost(snap, None)
    assert cost.by_state(snap, sc) == {"ESTABLISHED": {
        "sockets": 3, "object_bytes": 0, "buffer_bytes": 30, "fds": 3, "memory_bytes": 30}}
    assert cost.by_process(snap, sc)[0]["sockets"] == 5
    items = cost.largest(snap, sc)
    assert [(i["state"], i["bytes"]) for i in items] == [("ESTABLISHED", 30)]
