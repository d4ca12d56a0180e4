"""Issue 15: captures other people published (tests/data/real, see its PROVENANCE.md).

Every capture gives the per-state counts counted without tcpdoctor (expected.json), or a
one-line refusal; none gives exit 0 when rows were left out; the diagnosis fixes are
checked on these captures, with thresholds lowered to their size where a rule counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.sources.offline.captures import load_captures
from tests.conftest import tcpdoctor, tcpdoctor_json

REAL = Path(__file__).parents[1] / "data" / "real"
EXPECTED: dict[str, dict[str, Any]] = json.loads((REAL / "expected.json").read_text())
READ = sorted(name for name, e in EXPECTED.items() if "refused" not in e)
REFUSED = sorted(name for name, e in EXPECTED.items() if "refused" in e)


def test_the_corpus_is_big_enough_and_documented() -> None:
    provenance = (REAL / "PROVENANCE.md").read_text()
    assert len(EXPECTED) >= 70
    assert {p.name for p in REAL.glob("*.txt")} == set(EXPECTED)
    for name in EXPECTED:
        stem = name.split("__")[0] if name.startswith("jc-") else name
        assert stem.split(".txt")[0] in provenance or name.startswith("jc-"), name


@pytest.mark.parametrize("name", READ)
def test_states_are_counted_exactly(name: str) -> None:
    captures = load_captures(str(REAL / name))
    assert len(captures) == 1, "no file of the corpus holds two captures"
    snap = captures[0][0]
    assert {k: v for k, v in snap.state_counts().items() if v} == EXPECTED[name]["states"]
    assert snap.unparsed == EXPECTED[name].get("unread", 0)


@pytest.mark.parametrize("name", REFUSED)
def test_refused_formats_say_what_to_capture(name: str) -> None:
    with pytest.raises(TcpDoctorError, match=EXPECTED[name]["refused"].replace("`", ".")):
        load_captures(str(REAL / name))
    proc = tcpdoctor("analyze", str(REAL / name))
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1
    assert "capture" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", READ)
def test_no_capture_is_exit_0_with_rows_left_out(name: str) -> None:
    proc = tcpdoctor("analyze", str(REAL / name))
    unread = EXPECTED[name].get("unread", 0)
    assert "Traceback" not in proc.stderr, name
    if unread:
        assert proc.returncode != 0, name
        assert "No problems found" not in proc.stdout
        assert "could not be read" in proc.stdout and "line 4: 'TCP bubba" in proc.stdout
    else:  # a capture whose counts reach a rule's thresholds says so in its exit code
        assert proc.returncode == EXPECTED[name].get("exit", 0), (name, proc.stdout,
                                                                  proc.stderr)
    if "findings" in EXPECTED[name]:
        got = tcpdoctor_json("analyze", str(REAL / name))
        assert {f["id"]: f["severity"] for f in got["findings"]} == EXPECTED[name]["findings"]


@pytest.mark.parametrize("prefix", ["    ", "\t", "> ", ">    "])
@pytest.mark.parametrize("name", ["jc-centos-7.7__ss-sudo-a.txt",
                                  "jc-ubuntu-18.04__netstat-sudo-aeep.txt",
                                  "jc-osx-10.14.6__netstat-An.txt",
                                  "pages-mylazyadmin-ss-wrapped-syn-recv.txt",
                                  "pages-admincmd-windows-netstat-na.txt"])
def test_indented_and_quoted_pastes(tmp_path: Path, name: str, prefix: str) -> None:
    text = (REAL / name).read_text()
    quoted = tmp_path / "quoted.txt"
    quoted.write_text("".join(prefix + line for line in text.splitlines(keepends=True)))
    snap = load_captures(str(quoted))[0][0]
    assert {k: v for k, v in snap.state_counts().items() if v} == EXPECTED[name]["states"]
    assert snap.unparsed == 0


def findings(name: str, *threshold: str) -> dict[str, Any]:
    args = [a for t in threshold for a in ("--threshold", t)]
    report = tcpdoctor_json("analyze", str(REAL / name), "--json", *args)
    return {"report": report, **{f["id"]: f for f in report["findings"]}}


def test_time_wait_without_listen_rows_is_called_server_side() -> None:
    # `netstat | grep TIME_WAI` on a web server: port 80, no LISTEN row in the paste.
    found = findings("pages-lttop-grep-time-wait-server.txt",
                     "TIME_WAIT_SERVER_CLOSE.warning=5", "TIME_WAIT_CLIENT_SHORT.warning=5")
    assert "TIME_WAIT_CLIENT_SHORT" not in found
    server = found["TIME_WAIT_SERVER_CLOSE"]
    assert "80" in server["summary"] and "no LISTEN rows" in server["summary"]
    assert server["evidence"]["service_ports_from"].startswith("inferred")


def test_syn_flood_sources_are_named_by_subnet() -> None:
    flood = findings("pages-adib-synflood-netstat-ptuan.txt", "SYN_FLOOD.warning=5")
    summary = flood["SYN_FLOOD"]["summary"]
    assert "177.8.132.0/24 (5)" in summary and "177.8.135.0/24 (3)" in summary
    # A pasted netstat has no kernel counters: said, not shown as a zero.
    assert flood["SYN_FLOOD"]["evidence"]["SyncookiesSent_delta"] == "not in the input"


def test_windows_client_close_wait_is_grouped_by_remote_service_with_windows_facts() -> None:
    found = findings("jc-windows-10__netstat-aonb.txt", "CLOSE_WAIT_LEAK.warning=3")
    leak = found["CLOSE_WAIT_LEAK"]
    assert "82.102.152.152:443 (2)" in leak["summary"]
    assert "SearchApp.exe (pid 27568)" in leak["summary"]  # from -b's [name] lines
    assert "local ports" not in leak["summary"]
    notes = " ".join(found["report"]["notes"])
    assert "TcpTimedWaitDelay" in notes
    advice = json.dumps(found["report"]["findings"])
    assert "sysctl" not in advice and "tcp_tw_reuse" not in advice


def test_redacted_addresses_count_in_states_and_stay_out_of_address_groupings() -> None:
    """Issue 26: "...", "XX.XX.XX.XX", "*snip*", "192.168.1.x" are redactions, not peers."""
    from tcpdoctor.analysis.groups import group

    for name, redacted in (("issues-node-fin-wait2-xx-redacted.txt", 4),
                           ("issues-diamond-netstat-dots-redacted.txt", 4),
                           ("issues-haproxy-lsof-p-snip-redacted.txt", 2),
                           ("issues-linenum-netstat-x-redacted.txt", 2)):
        snap = load_captures(str(REAL / name))[0][0]
        assert snap.redacted == redacted, name
        assert any(f"{redacted} row(s)" in n and "redacted" in n for n in snap.notes), name
        by_peer = group(snap, ["remote-ip"], limit=None)
        assert all("redacted" not in json.dumps(g["key"]) for g in by_peer.groups), name
        assert sum(g["count"] for g in by_peer.groups) == int(snap.addressed().sum()), name
    # The pattern is still read from what the rows do show: one owner.
    found = findings("issues-node-fin-wait2-xx-redacted.txt")
    assert "held by node (pid 26375)" in found["FIN_WAIT2_BUILDUP"]["summary"]


def test_close_wait_no_process_holds_is_called_never_accepted() -> None:
    """The poster's cause: CLOSE_WAIT sockets without an owner sit in the listen backlog."""
    found = findings("pages-example-a-close-wait-backlog-excerpt.txt")
    advice = " ".join(found["CLOSE_WAIT_LEAK"]["actions"])
    assert "port(s) 8000 accepts too slowly" in advice and "accept queue" in advice
    assert "read() returns 0" not in advice


def test_counts_with_a_remark_read_as_a_pattern_without_owner() -> None:
    found = findings("issues-guanhui07-awk-counts-comment-zh.txt")
    leak = found["CLOSE_WAIT_LEAK"]
    assert leak["severity"] == "info" and leak["evidence"]["counts_only"] is True
    assert "23 of 24" in leak["summary"]
