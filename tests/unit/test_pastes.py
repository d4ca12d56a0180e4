"""Issue 15's diagnosis fixes on pasted captures: which side is the server without LISTEN
rows, outbound CLOSE_WAIT by remote service, evidence the input does not carry, SYN floods
named by subnet. (The corpus of real captures the issue asks for is not built yet.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import tcpdoctor, tcpdoctor_json

HEAD = "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"


def analyze(tmp_path: Path, rows: list[str]) -> dict[str, Any]:
    path = tmp_path / "paste.txt"
    path.write_text(HEAD + "".join(f"tcp        0      0 {r}\n" for r in rows))
    return {f["id"]: f for f in tcpdoctor_json("analyze", str(path), "--json")["findings"]}


def test_grep_time_wait_without_listen_rows_is_server_side(tmp_path: Path) -> None:
    found = analyze(tmp_path, [f"127.0.0.1:3306   127.0.0.1:{35000 + i}   TIME_WAIT"
                               for i in range(2500)])
    assert "TIME_WAIT_CLIENT_SHORT" not in found
    server = found["TIME_WAIT_SERVER_CLOSE"]
    assert "3306" in server["summary"] and "no LISTEN rows" in server["summary"]
    assert server["evidence"]["service_ports_from"].startswith("inferred")


def test_client_time_wait_without_listen_rows_stays_client_side(tmp_path: Path) -> None:
    found = analyze(tmp_path, [f"10.0.0.7:{40000 + i}   10.0.0.5:443   TIME_WAIT"
                               for i in range(2500)])
    assert "TIME_WAIT_SERVER_CLOSE" not in found
    client = found["TIME_WAIT_CLIENT_SHORT"]
    assert "10.0.0.5:443" in client["summary"]
    assert client["evidence"]["ip_local_port_range"].startswith("not in the input (assumed")


def test_outbound_close_wait_is_grouped_by_remote_service(tmp_path: Path) -> None:
    found = analyze(tmp_path, [f"10.0.0.7:{43000 + 7 * i}   10.0.0.5:6379   CLOSE_WAIT"
                               for i in range(300)])
    leak = found["CLOSE_WAIT_LEAK"]
    assert "towards 10.0.0.5:6379 (300)" in leak["summary"]
    assert "local_ports" not in leak["evidence"]


def test_syn_flood_named_by_subnet_and_rates_not_in_the_input(tmp_path: Path) -> None:
    rows = [f"10.0.0.5:80   198.51.100.{i % 250}:{30000 + i}   SYN_RECV" for i in range(300)]
    rows += [f"10.0.0.5:80   203.0.113.{i}:{40000 + i}   SYN_RECV" for i in range(20)]
    flood = analyze(tmp_path, rows)["SYN_FLOOD"]
    assert "198.51.100.0/24 (300)" in flood["summary"]
    assert flood["evidence"]["SyncookiesSent_delta"] == "not in the input"
    assert "syncookies sent during the sample: not in the input" in flood["summary"]


def test_macos_netstat_is_read_with_a_platform_note(tmp_path: Path) -> None:
    path = tmp_path / "mac.txt"
    path.write_text(
        "Active Internet connections (including servers)\n"
        "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)\n"
        "tcp4       0      0  192.168.1.5.22         10.0.0.1.51234         ESTABLISHED\n"
        "tcp4       0      0  *.22                   *.*                    LISTEN\n"
        "tcp6       0      0  *.443                  *.*                    LISTEN\n"
        "tcp6       0      0  fe80::1%lo0.8080       fe80::1%lo0.50000      CLOSE_WAIT\n"
        "tcp4       0      0  192.168.1.5.51000      93.184.216.34.443      TIME_WAIT\n"
        "udp4       0      0  *.5353                 *.*\n")
    report = tcpdoctor_json("analyze", str(path), "--json")
    got = {k: v for k, v in report["states"].items() if v}
    assert got == {"ESTABLISHED": 1, "LISTEN": 2, "CLOSE_WAIT": 1, "TIME_WAIT": 1}
    assert report["lines_unparsed"] == 0
    assert any("macOS/FreeBSD" in n for n in report["notes"])


def test_linux_netstat_with_tcp6_rows_is_not_taken_for_bsd(tmp_path: Path) -> None:
    path = tmp_path / "linux.txt"
    path.write_text(HEAD + "tcp6       0      0 :::22                   :::*      LISTEN\n"
                    "tcp        0      0 10.0.0.7:22   10.0.0.9:50000   ESTABLISHED\n")
    report = tcpdoctor_json("analyze", str(path), "--json")
    assert report["total"] == 2 and report["source"].startswith("netstat")


def test_ss_summary_is_read_as_counts(tmp_path: Path) -> None:
    """Issue 26 turned the refusal into a reading: `ss -s` states established and TIME_WAIT
    counts, which are all it says; what it cannot say is named."""
    from tests.conftest import tcpdoctor

    path = tmp_path / "sss.txt"
    path.write_text("Total: 182\nTCP:   9 (estab 3, closed 1, orphaned 0, timewait 1)\n\n"
                    "Transport Total     IP        IPv6\nTCP\t  8         6         2\n")
    proc = tcpdoctor("analyze", "--json", str(path))
    got = json.loads(proc.stdout)
    assert proc.returncode == 0 and got["total"] == 4
    assert {k: v for k, v in got["states"].items() if v} == {"ESTABLISHED": 3, "TIME_WAIT": 1}
    assert any("ss -tan" in n for n in got["notes"])


def test_translated_state_names_of_net_tools(tmp_path: Path) -> None:
    path = tmp_path / "loc.txt"
    path.write_text(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name\n"
        "tcp        0      0 10.0.0.7:22   10.0.0.9:50000   VERBUNDEN   1/sshd\n"
        "tcp        0      0 0.0.0.0:22   0.0.0.0:*   NASLOUCHÁ   1/sshd\n"
        "tcp        1      0 10.0.0.7:22   10.0.0.9:50001   POSLEDNÍ ACK   -\n"
        "tcp        0      0 10.0.0.7:22   10.0.0.9:50002   ESPERANDO_FECHAR   -\n"
        "tcp        0      0 10.0.0.7:22   10.0.0.9:50003   STÄNG_VÄNTA   -\n"
        "tcp        0      0 10.0.0.7:22   10.0.0.9:50004   TEMPS   -\n")
    report = tcpdoctor_json("analyze", str(path), "--json")
    got = {k: v for k, v in report["states"].items() if v}
    assert got == {"ESTABLISHED": 1, "LISTEN": 1, "LAST_ACK": 1, "CLOSE_WAIT": 2,
                   "TIME_WAIT": 1}
    assert report["lines_unparsed"] == 0


def test_capture_without_n_reads_names_and_services(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text(
        HEAD + "tcp        0      0 *:ssh                   *:*                     LISTEN\n"
        "tcp        0      0 localhost:60930         localhost:mysql         ESTABLISHED\n"
        "tcp        0      0 web1.example.com:https  client.example.net:51234 ESTABLISHED\n"
        "tcp        0      0 localhost.localdomain:www  10.0.0.9:50000   TIME_WAIT\n")
    report = tcpdoctor_json("analyze", str(path), "--json")
    assert report["total"] == 4 and report["lines_unparsed"] == 0
    assert any("without -n" in n for n in report["notes"])


def test_windows_capture_says_linux_advice_does_not_apply(tmp_path: Path) -> None:
    path = tmp_path / "win.txt"
    path.write_text("\nActive Connections\n\n"
                    "  Proto  Local Address          Foreign Address        State           PID\n"
                    "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1044\n"
                    "  TCP    10.0.0.5:49712         52.1.2.3:443           TIME_WAIT       0\n")
    report = tcpdoctor_json("analyze", str(path), "--json")
    assert report["total"] == 2
    assert any("TcpTimedWaitDelay" in n and "netsh" in n for n in report["notes"])


def test_two_captures_in_one_file_are_before_and_after(tmp_path: Path) -> None:
    before = [f"10.0.0.7:{43000 + 7 * i}   10.0.0.5:6379   CLOSE_WAIT" for i in range(300)]
    after = [f"10.0.0.7:{43000 + 7 * i}   10.0.0.5:6379   ESTABLISHED" for i in range(20)]
    path = tmp_path / "ticket.txt"
    rows = "".join(f"tcp        0      0 {r}\n" for r in before)
    rows2 = "".join(f"tcp        0      0 {r}\n" for r in after)
    path.write_text("before:\n" + HEAD + rows + "\nafter the fix:\n"
                    "Active Internet connections (servers and established)\n" + HEAD + rows2)
    report = tcpdoctor_json("analyze", str(path), "--json")
    assert [c["total"] for c in report["captures"]] == [300, 20]
    assert report["total"] == 20  # the report is the last capture's, not a sum
    assert report["comparison"]["findings"]["resolved"] == ["CLOSE_WAIT_LEAK"]
    assert "2 captures" in report["notes"][0]


def test_ss_a_with_every_netid_and_netstat_aeep(tmp_path: Path) -> None:
    ssa = tmp_path / "ssa.txt"
    ssa.write_text(
        "Netid State      Recv-Q Send-Q Local Address:Port   Peer Address:Port Process\n"
        "nl    UNCONN     0      0             rtnl:kernel           *\n"
        "u_str ESTAB      0      0                * 24531            * 24532\n"
        "udp   UNCONN     0      0          0.0.0.0:68         0.0.0.0:*\n"
        "tcp   LISTEN     0      128        0.0.0.0:22         0.0.0.0:*\n"
        "tcp   ESTAB      0      0        10.0.0.7:22        10.0.0.9:50000\n"
        "v_str ESTAB      0      0                3:1023               2:5000\n")
    report = tcpdoctor_json("analyze", str(ssa), "--json")
    assert report["total"] == 2 and report["lines_unparsed"] == 0
    aeep = tmp_path / "aeep.txt"
    aeep.write_text(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "User       Inode      PID/Program name\n"
        "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      "
        "root       18923      845/sshd: /usr/sbin\n"
        + "".join(f"tcp        1      0 10.0.0.7:8080           10.0.0.9:{50000 + i}  "
                  f"CLOSE_WAIT  app        {70000 + i}      977/java\n" for i in range(150)))
    report = tcpdoctor_json("analyze", str(aeep), "--json")
    leak = {f["id"]: f for f in report["findings"]}["CLOSE_WAIT_LEAK"]
    assert leak["processes"][0]["name"] == "java" and report["lines_unparsed"] == 0


def test_proc_net_tcp_under_a_prompt_and_in_a_fence(tmp_path: Path) -> None:
    """Issue 26: `$ cat /proc/1/net/tcp` above the table, a Markdown fence around it and a
    prompt after it are not socket rows: read the table, count nothing as lost."""
    table = (Path(__file__).parents[1] / "data" / "proc_net_tcp").read_text()
    want = json.loads(tcpdoctor("analyze", "--json", str(_write(tmp_path, "plain", table)))
                      .stdout)["states"]
    for name, text in {
        "prompt": "$ cat /proc/1/net/tcp\n" + table,
        "fenced": "```\nroot@web1:~# cat /proc/net/tcp\n" + table + "root@web1:~# \n```\n",
    }.items():
        proc = tcpdoctor("analyze", "--json", str(_write(tmp_path, name, text)))
        got = json.loads(proc.stdout)
        assert got["states"] == want and got["lines_unparsed"] == 0, name
    # Prose around the table loses nothing; a damaged row is a real loss, still reported.
    damaged = "  99: 0100007F:0019 00000000:0000 0A 0000 garbled\n"
    for tail, lost in (("this is not a row\n", 0), (damaged, 1)):
        proc = tcpdoctor("analyze", "--json", str(_write(tmp_path, "tail", table + tail)))
        assert json.loads(proc.stdout)["lines_unparsed"] == lost, tail


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.txt"
    path.write_text(text)
    return path


FENCED = {
    "netstat": ("```tcp        0      0 10.0.0.5:443     10.0.0.9:{p}     CLOSE_WAIT\n",
                "tcp        0      0 10.0.0.5:443     10.0.0.9:{p}     CLOSE_WAIT\n",
                "tcp        0      0 10.0.0.5:443     10.0.0.9:{p}     CLOSE_WAIT```\n"),
    "ss": ("~~~CLOSE-WAIT 1 0 10.0.0.5:443 10.0.0.9:{p}\n",
           "CLOSE-WAIT 1 0 10.0.0.5:443 10.0.0.9:{p}\n",
           "CLOSE-WAIT 1 0 10.0.0.5:443 10.0.0.9:{p} ```\n"),
}


def test_rows_glued_to_a_fence_are_read_and_a_language_tag_is_not(tmp_path: Path) -> None:
    """Issue 26: a fence glued to the first or last row (```tcp 0 0 ..., ... CLOSE_WAIT```)
    loses no row; a fence with a language tag (```text) stays chatter."""
    for kind, (first, middle, last) in FENCED.items():
        text = "```text\n" + first.format(p=50001) + "".join(
            middle.format(p=50002 + i) for i in range(5)) + last.format(p=50100)
        path = tmp_path / f"{kind}.txt"
        path.write_text("$ ss -tan state close-wait\n" + text)
        doc = tcpdoctor_json("analyze", str(path), "--json")
        assert doc["states"]["CLOSE_WAIT"] == 7, kind
        assert doc["lines_unparsed"] == 0, kind


def test_other_tools_tables_are_read_by_their_header(tmp_path: Path) -> None:
    """Issue 26: any header naming local, remote and state columns, in any order."""
    router = ("router> show net\nProto  Local            Remote              State\n"
              "tcp    192.168.0.1:23   192.168.0.10:51514  ESTABLISHED\n"
              "udp    0.0.0.0:161      0.0.0.0:0\n"
              "tcp    192.168.0.1:23   192.168.0.11:51600  CLOSE_WAIT\n")
    assert _read(tmp_path, "router", router) == ({"ESTABLISHED": 1, "CLOSE_WAIT": 1}, 0)
    from tcpdoctor.sources.offline.captures import load_captures

    remote_first = "State  Remote  Local\nESTABLISHED 10.0.0.2:5000 10.0.0.1:22\n"
    snap = load_captures(str(_write(tmp_path, "rf", remote_first)))[0][0]
    assert snap.columns["sport"].tolist() == [22] and snap.columns["dport"].tolist() == [5000]
    solaris = ("TCP: IPv4\n   Local Address        Remote Address    Swind Send-Q Rwind "
               "Recv-Q    State\n" + "-" * 20 + " " + "-" * 20 + "\n"
               "192.168.1.5.22       192.168.1.9.51234    64128      0 64240      0 ESTABLISHED\n"
               "      *.22                 *.*                0      0 49152      0 LISTEN\n")
    assert _read(tmp_path, "solaris", solaris) == ({"ESTABLISHED": 1, "LISTEN": 1}, 0)
    broken = ("Local Remote State\nESTABLISHED 10.0.0.1:22\n"  # one endpoint: a lost row
              "ESTABLISHED 10.0.0.1:22 10.0.0.3:4000\n")
    assert _read(tmp_path, "b", broken) == ({"ESTABLISHED": 1}, 1)


def test_wrapped_rows_and_a_lost_first_cell_are_read(tmp_path: Path) -> None:
    text = ("Proto Recv-Q Send-Q Local Address Foreign Address State PID/Program name\n"
            "tcp6 0 0 2001:db8:1234:5678:9abc:def0:1234:5678:443\n"
            "   2001:db8:aaaa:bbbb:cccc:dddd:eeee:2:51234 ESTABLISHED 123/nginx\n"
            "0 0 10.0.0.1:22 10.0.0.9:5555 ESTABLISHED 77/sshd\n"
            "tcp 0 0 10.0.0.1:80 0.0.0.0:* LISTEN 1/init\n")
    assert _read(tmp_path, "wrapped", text) == ({"ESTABLISHED": 2, "LISTEN": 1}, 0)
    windows = ("  TCP    [2001:db8:1234:5678:9abc:def0:1234:5678]:443\n"
               "         [2001:db8::2]:51234    ESTABLISHED     4242\n"
               "  TCP    10.0.0.1:445   10.0.0.2:50000   ESTABLISHED     4\n"
               "         10.0.0.1:445   10.0.0.3:50001   ESTABLISHED     4\n")
    assert _read(tmp_path, "win", windows) == ({"ESTABLISHED": 3}, 0)


def test_prose_between_rows_is_not_a_lost_row(tmp_path: Path) -> None:
    text = ("I see this on the server:\n\n    $ ss -ant\n"
            "    State   Recv-Q Send-Q Local Address:Port  Peer Address:Port\n"
            "    ESTAB   0      0      10.0.0.1:22         10.0.0.9:5555\n"
            "and at 14:05 it is worse.\n")
    assert _read(tmp_path, "prose", text) == ({"ESTABLISHED": 1}, 0)


def _read(tmp_path: Path, name: str, text: str) -> tuple[dict[str, int], int]:
    """The states analyze reads from a paste (those with sockets), and its lost lines."""
    got = tcpdoctor_json("analyze", "--json", str(_write(tmp_path, name, text)))
    return {k: v for k, v in got["states"].items() if v}, got["lines_unparsed"]
