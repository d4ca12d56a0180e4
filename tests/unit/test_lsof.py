"""Issue 26 (part 1): `lsof -i` read as sockets: one socket counted once however many
descriptors show it, its owner's command and pid, listeners without a peer, names and
service names of a capture taken without -n/-P, rows without the header (`| grep TCP`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tcpdoctor

HEAD = "COMMAND     PID   USER   FD   TYPE             DEVICE SIZE/OFF NODE NAME\n"
LINUX = HEAD + """\
nginx       812   root    6u  IPv4  31337      0t0  TCP *:80 (LISTEN)
nginx       813    www    6u  IPv4  31337      0t0  TCP *:80 (LISTEN)
dotnet     9337    app   45u  IPv4  41001      0t0  TCP 10.1.2.3:51234->10.9.8.7:9443 (CLOSE_WAIT)
dotnet     9337    app   46u  IPv4  41002      0t0  TCP 10.1.2.3:51236->10.9.8.7:9443 (CLOSE_WAIT)
dotnet     9337    app   47u  IPv4  41003      0t0  TCP 10.1.2.3:51240->10.9.8.7:9443 (CLOSE_WAIT)
dotnet     9337    app   48u  IPv4  41003      0t0  TCP 10.1.2.3:51240->10.9.8.7:9443 (CLOSE_WAIT)
sshd        101   root    3u  IPv6  23456      0t0  TCP [::1]:22->[::1]:55550 (ESTABLISHED)
chronyd     500 chrony    5u  IPv4  23460      0t0  UDP 127.0.0.1:323
"""
MACOS = HEAD + """\
Google 1234 alice 23u IPv4 0x8c1f3d5e 0t0 TCP 192.168.1.10:50123->142.250.80.46:443 (ESTABLISHED)
Google 1234 alice 24u IPv4 0x8c1f3d6f 0t0 TCP 192.168.1.10:50124->142.250.80.46:443 (TIME_WAIT)
rapportd   567   alice    4u  IPv6 0x8c1f3d5e7a9b1c2e      0t0  TCP *:49152 (LISTEN)
rapportd   567   alice    5u  IPv4 0x8c1f3d5e7a9b1c2f      0t0  TCP *:49152 (LISTEN)
"""
NAMES = HEAD + """\
java 2210 app 88u IPv6 99001 0t0 TCP localhost:http-alt->localhost:53422 (CLOSE_WAIT)
java 2210 app 89u IPv6 99002 0t0 TCP localhost:http-alt->localhost:53424 (CLOSE_WAIT)
java 2210 app 90u IPv6 99003 0t0 TCP web1.example.com:https->client.example.net:61000 (ESTABLISHED)
"""
GREP = "$ lsof -p 9337 | grep TCP\n" + "".join(
    f"dotnet  9337 app {45 + i}u IPv4 {41001 + i} 0t0 TCP 10.1.2.3:{51234 + i}->10.9.8.7:9443 "
    "(CLOSE_WAIT)\n" for i in range(5))

CASES = {
    "linux": (LINUX, {"LISTEN": 1, "CLOSE_WAIT": 3, "ESTABLISHED": 1}, 2,
              {"nginx", "dotnet", "sshd"}),
    "macos": (MACOS, {"ESTABLISHED": 1, "TIME_WAIT": 1, "LISTEN": 2}, 0, {"Google", "rapportd"}),
    "names": (NAMES, {"CLOSE_WAIT": 2, "ESTABLISHED": 1}, 0, {"java"}),
    "grep": (GREP, {"CLOSE_WAIT": 5}, 0, {"dotnet"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lsof_is_read_one_socket_once(tmp_path: Path, case: str) -> None:
    text, states, shared, owners = CASES[case]
    path = tmp_path / "lsof.txt"
    path.write_text(text)
    proc = tcpdoctor("analyze", "--json", str(path))
    assert "Traceback" not in proc.stderr
    got = json.loads(proc.stdout)
    assert got["source"].startswith("lsof") and got["lines_unparsed"] == 0
    assert {k: v for k, v in got["states"].items() if v} == states
    repeated = [n for n in got["notes"] if "repeat a socket" in n]
    assert (repeated[0].startswith(f"{shared} row") if shared else not repeated)
    names = {p["name"] for f in got["findings"] for p in f["processes"]}
    assert names <= owners


def test_lsof_leak_is_named_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "grep.txt"
    path.write_text(GREP)
    got = json.loads(tcpdoctor("analyze", "--json", str(path)).stdout)
    [leak] = got["findings"]
    assert leak["id"] == "CLOSE_WAIT_LEAK" and leak["processes"] == [
        {"pid": 9337, "name": "dotnet", "count": 5}]
