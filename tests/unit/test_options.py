"""One reading of each shared option on every command: --state names, --netns, top-N."""

from __future__ import annotations

import pytest

from tests.conftest import tcpdoctor


@pytest.mark.parametrize("args", [["top", "--state", "bogus"], ["trace", "--state", "bogus"],
                                  ["history", "--state", "bogus", "--db", "/nonexistent.db"]])
def test_an_unknown_state_is_one_line_exit_3(args: list[str]) -> None:
    proc = tcpdoctor(*args)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "unknown TCP state 'bogus'" in proc.stderr


def test_trace_takes_the_shared_options_and_refuses_what_it_cannot_use() -> None:
    help_text = tcpdoctor("trace", "--help").stdout
    for opt in ("--json", "--netns", "-4", "-6", "--source", "--no-processes"):
        assert opt in help_text
    refused = tcpdoctor("trace", "--source", "netlink")
    assert refused.returncode == 3 and "--source: not used by this command" in refused.stderr


@pytest.mark.parametrize("command", ["top", "diff", "record", "history", "exporter"])
def test_top_n_is_spelled_one_way(command: str) -> None:
    assert "-n, --top" in tcpdoctor(command, "--help").stdout
