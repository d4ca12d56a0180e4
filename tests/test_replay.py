"""Replay real kernel replies captured by other projects (pyroute2-style replay tests)."""

from __future__ import annotations

import pytest

from tcpdoctor.errors import ParseError
from tcpdoctor.model.addresses import format_addr
from tcpdoctor.model.tcp import STATE_NAMES
from tcpdoctor.sources import netlink

from .conftest import DATA


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
