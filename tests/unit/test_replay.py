"""Replay real kernel replies captured by other projects (pyroute2-style replay tests)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.errors import ParseError
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.sources import netlink
from tests.conftest import DATA


def rows(cols: dict) -> list[tuple[str, str, str]]:
    out = []
    for i in range(cols["state"].shape[0]):
        local = f"{format_addr(cols['laddr_hi'][i], cols['laddr_lo'][i])}:{cols['sport'][i]}"
        peer = f"{format_addr(cols['raddr_hi'][i], cols['raddr_lo'][i])}:{cols['dport'][i]}"
        out.append((STATE_NAMES[cols["state"][i] - 1], local, peer))
    return out


def test_ss1_dump_first_dump_is_what_ss_prints() -> None:
    data = (DATA / "ss1.dump").read_bytes()
    cols, done = netlink.decode(data)  # stops at the first NLMSG_DONE, as ss does
    assert done
    # `TCPDIAG_FILE=ss1.dump ss -Htna` prints exactly these four sockets.
    assert rows(cols) == [
        ("LISTEN", "0.0.0.0:22", "0.0.0.0:0"),
        ("ESTABLISHED", "10.0.0.1:22", "10.0.0.1:36266"),
        ("ESTABLISHED", "10.0.0.1:36266", "10.0.0.1:22"),
        ("ESTABLISHED", "10.0.0.1:22", "10.0.0.2:50312"),
    ]
    assert cols["wqueue"][0] == 128 and cols["rqueue"][0] == 0  # LISTEN: backlog 128


def test_ss1_dump_whole_file_holds_the_ipv6_dump_too() -> None:
    cols, _ = netlink.decode((DATA / "ss1.dump").read_bytes(), stop_at_done=False)
    assert rows(cols)[4:] == [
        ("LISTEN", ":::22", ":::0"),
        ("ESTABLISHED", "fec0:42::24:40520", "fec0:42::1:22"),
        ("ESTABLISHED", "fec0:42::24:22", "fec0:42::1:44248"),
    ]


@pytest.mark.parametrize("cut", [1, 7, 20, 95, 97])
def test_truncated_dump_is_a_parse_error(cut: int) -> None:
    data = (DATA / "ss1.dump").read_bytes()[:cut]
    with pytest.raises(ParseError):
        netlink.decode(data)


# --- tcp_info (INET_DIAG_INFO), byte for byte ---------------------------------------------

def _ss_info(path: Path) -> list[dict[str, Any]]:
    """iproute2's decoding of a dump (ss -Htani output): per socket, the tcp_info fields
    tcpdoctor reads (rtt in microseconds), or {} where ss printed none."""
    out: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue  # the empty detail line of a socket without tcp_info
        if not line.startswith("\t"):
            out.append({"row": line.split()})
            continue
        info = dict(re.findall(r"\b(lastsnd|lastrcv|lastack):(\d+)", line))
        rtt = re.search(r"\brtt:([\d.]+)/", line)
        if rtt:
            out[-1]["rtt"] = round(float(rtt.group(1)) * 1000)
        out[-1].update({k: int(v) for k, v in info.items()})
    return out


def test_captured_tcp_info_reply_decodes_as_ss_decodes_it() -> None:
    """A real reply (ss -tani -D in a lab namespace), checked against iproute2's decoding
    of the very same bytes, socket by socket."""
    data = (DATA / "ss_tani_lab.dump").read_bytes()
    cols, _ = netlink.decode(data, info=True)  # the first dump, as ss reads it back
    expected = _ss_info(DATA / "ss_tani_lab.ss")
    assert len(expected) == cols["state"].shape[0] == 10
    with_info = 0
    for i, exp in enumerate(expected):
        assert exp["row"][0].replace("ESTAB", "ESTABLISHED").replace("-", "_") == \
            STATE_NAMES[cols["state"][i] - 1]
        if "lastsnd" in exp:
            with_info += 1
            assert cols["has_info"][i]
            got = {k: int(cols[k][i]) for k in ("lastsnd", "lastrcv", "lastack", "rtt")}
            assert got == {k: exp[k] for k in got}, (i, exp)
        elif exp["row"][0] == "TIME-WAIT":
            assert not cols["has_info"][i]  # minisockets carry no tcp_info
    assert with_info == 6
    if shutil.which("ss"):  # the oracle again, live, when iproute2 is here
        env = {**os.environ, "TCPDIAG_FILE": str(DATA / "ss_tani_lab.dump"), "LC_ALL": "C"}
        live = subprocess.run(["ss", "-Htani"], capture_output=True, text=True, env=env,
                              check=True).stdout
        assert [ln.rstrip() for ln in live.splitlines()] == \
            (DATA / "ss_tani_lab.ss").read_text().splitlines()


def test_captured_reply_ipv6_dump_carries_tcp_info_too() -> None:
    cols, _ = netlink.decode((DATA / "ss_tani_lab.dump").read_bytes(), info=True,
                             stop_at_done=False)
    v6 = cols["family"] == 10
    assert int(v6.sum()) == 5 and bool(cols["has_info"][v6].all())  # LISTEN + 4 ESTAB
    established = v6 & (cols["state"] == 1)
    assert (cols["lastsnd"][established] > 0).all() and (cols["rtt"][established] > 0).all()


TCP_INFO_LEN = 232  # struct tcp_info of Linux 6.x; the decoder reads the first 72 bytes
INET_DIAG_CONG = 4


def _attr(rta_type: int, payload: bytes, pad: bool = True) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), rta_type) + payload
    return raw + b"\0" * ((-len(raw)) % 4 if pad else 0)


def _tcp_info(lastsnd: int, lastrcv: int, lastack: int, rtt: int, size: int) -> bytes:
    info = bytearray(size)
    for off, value in ((44, lastsnd), (52, lastrcv), (56, lastack), (68, rtt)):
        struct.pack_into("=I", info, off, value)
    return bytes(info)


def _message(sport: int, attrs: bytes, seq: int = 7, port: int = 99) -> bytes:
    body = struct.pack("=BBBB", 2, 1, 0, 0)  # AF_INET, ESTABLISHED, no timer, no retrans
    body += struct.pack(">HH", sport, 443) + bytes([10, 0, 0, 1]) + bytes(12)
    body += bytes([192, 0, 2, 9]) + bytes(12) + struct.pack("=I", 0) + bytes(8)
    body += struct.pack("=IIIII", 0, 0, 0, 1000, 4242)
    assert len(body) == 72
    length = 16 + len(body) + len(attrs)
    return struct.pack("=IHHII", length, 20, 2, seq, port) + body + attrs


def _reply(*messages: bytes) -> bytes:
    out = b"".join(m + b"\0" * ((-len(m)) % 4) for m in messages)
    return out + struct.pack("=IHHIIi", 20, 3, 2, 7, 99, 0)


def test_equal_length_messages_with_different_attribute_layouts() -> None:
    """Rows are grouped by message length and read at the first row's offsets, unless
    their attribute headers differ: same length, other order, still decoded right."""
    cong = _attr(INET_DIAG_CONG, b"bbr\0")
    a = _message(1001, _attr(2, _tcp_info(11, 12, 13, 14, TCP_INFO_LEN)) + cong)
    b = _message(1002, cong + _attr(2, _tcp_info(21, 22, 23, 24, TCP_INFO_LEN)))
    c = _message(1003, _attr(2, _tcp_info(31, 32, 33, 34, TCP_INFO_LEN)) + cong)
    assert len(a) == len(b) == len(c)
    cols, done = netlink.decode(_reply(a, b, c), info=True)
    assert done and list(cols["sport"]) == [1001, 1002, 1003]
    assert [list(cols[k]) for k in ("lastsnd", "lastrcv", "lastack", "rtt")] == [
        [11, 21, 31], [12, 22, 32], [13, 23, 33], [14, 24, 34]]
    assert cols["has_info"].all()


@pytest.mark.parametrize("size", [233, 235, 237, 72, 73])
def test_odd_length_messages_carry_their_tcp_info(size: int) -> None:
    """A last attribute left unpadded makes nlmsg_len odd: its tcp_info is still read,
    next to messages of even length and messages without tcp_info."""
    odd = _message(2001, _attr(2, _tcp_info(5, 6, 7, 8, size), pad=False))
    even = _message(2002, _attr(2, _tcp_info(15, 16, 17, 18, TCP_INFO_LEN)))
    bare = _message(2003, b"")
    odd2 = _message(2004, _attr(2, _tcp_info(25, 26, 27, 28, size), pad=False))
    assert len(odd) % 2 == size % 2
    cols, _ = netlink.decode(_reply(odd, even, bare, odd2), info=True)
    assert list(cols["sport"]) == [2001, 2002, 2003, 2004]
    assert list(cols["lastsnd"]) == [5, 15, 0, 25] and list(cols["rtt"]) == [8, 18, 0, 28]
    assert list(cols["has_info"]) == [True, True, False, True]


def test_short_tcp_info_is_not_read() -> None:
    """An INET_DIAG_INFO too short for the fields read is ignored, not read past its end."""
    cols, _ = netlink.decode(_reply(_message(3001, _attr(2, bytes(40)))), info=True)
    assert not cols["has_info"][0] and cols["lastsnd"][0] == 0


def _messages(data: bytes) -> list[tuple[int, int]]:
    out, off = [], 0
    while off + 16 <= len(data):
        length = struct.unpack_from("=I", data, off)[0]
        out.append((off, length))
        off += (length + 3) & ~3
    return out


def test_corrupted_length_fields_end_in_bounded_time() -> None:
    """Every message's length field moved by -8..+8 and the file cut around it: each
    decode returns or raises ParseError, and never loops (it once did, forever)."""
    import signal

    def too_slow(*_: Any) -> None:
        raise AssertionError("decode did not finish within 2 s")

    data = (DATA / "ss1.dump").read_bytes()
    old = signal.signal(signal.SIGALRM, too_slow)
    tried = 0
    try:
        for off, length in _messages(data):
            for delta in range(-8, 9):
                for cut in {len(data), off + length + delta, off + length - 1, off + length}:
                    mutated = bytearray(data[:max(cut, 0)])
                    if off + 4 <= len(mutated):
                        struct.pack_into("=I", mutated, off, max(0, length + delta))
                    signal.alarm(2)
                    with contextlib.suppress(ParseError, netlink.NetlinkUnavailable):
                        netlink.decode(bytes(mutated), info=True, stop_at_done=False)
                    signal.alarm(0)
                    tried += 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert tried > 500


def test_message_whose_padding_was_cut_is_read() -> None:
    """The last message of a cut file, whole but for its alignment padding, is decoded."""
    data = bytearray((DATA / "ss1.dump").read_bytes())
    off, length = next(m for m in _messages(bytes(data)) if m[0] == 604)
    struct.pack_into("=I", data, off, length - 2)
    cols, done = netlink.decode(bytes(data[:off + length - 2]), stop_at_done=False)
    assert done and cols["state"].shape[0] == 7  # done: the first dump's NLMSG_DONE
