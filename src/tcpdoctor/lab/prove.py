"""`tune --prove`: replay a diagnosed pattern in throwaway namespaces on this kernel, once as
the target is configured (the baseline) and once per candidate change, and measure.

The sandbox copies the target's sysctls that decide the outcome (timestamps, tw_reuse,
somaxconn, ...) and scales the load down so that a run takes seconds: a port range of 200
instead of 28,232, a backlog of 16. Only the sandbox's own namespaces are ever changed; the
caller compares the host's and the target's values before and after.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.i18n import Msg
from tcpdoctor.lab.net import MAIN_ADDR, PEER_ADDR, PHANTOM_NET, LabNet
from tcpdoctor.sources import kstate, netns

PORTS = 200  # the sandbox's port range: exhausted after 2 s at RATE
RATE = 100.0  # new connections a second
SECONDS = 4.0
BACKLOG = 16
SYN_FLOOD = 2000  # spoofed SYNs
# Keys copied from the target into the sandbox: they decide what a change does there.
COPIED = ("net.ipv4.tcp_timestamps", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay",
          "net.core.somaxconn", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_syncookies",
          "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_synack_retries")


@dataclass
class Proof:
    finding: str
    change: str  # "net.ipv4.tcp_tw_reuse = 1", or an application change
    baseline: dict[str, int]
    outcome: dict[str, int]
    verdict: str  # helps, does not help, harmful
    why: str

    def as_json(self) -> dict[str, Any]:
        return {"finding": self.finding, "change": self.change, "baseline": self.baseline,
                "outcome": self.outcome, "verdict": self.verdict, "why": self.why}


@dataclass
class Run:
    """One replay: sysctls set in the sandbox's main namespace, what the application does."""

    sysctls: dict[str, str] = field(default_factory=dict)
    pooled: bool = False  # the application reuses a few connections
    backlog: int = BACKLOG


@contextlib.contextmanager
def _sandbox(target: dict[str, str | None], run: Run) -> Iterator[LabNet]:
    """Throwaway namespaces with the target's deciding sysctls and the run's changes;
    removed with their processes whatever happens (SIGTERM and Ctrl-C included)."""
    with LabNet(prefix="tdprove") as lab:
        for key, value in {**{k: v for k, v in target.items() if v is not None},
                           **run.sysctls}.items():
            lab.sysctl(lab.name, key, str(value))
        yield lab


def _counters(lab: LabNet) -> dict[str, int]:
    state = netns.run_in(lab.name, lambda: kstate.read_state(with_sysctls=False))
    return state.counters


def _ports_run(target: dict[str, str | None], run: Run,
               seconds: float = SECONDS) -> dict[str, int]:
    """A client opening and closing connections to one backend, closing first."""
    with _sandbox(target, run) as lab:
        span = run.sysctls.get("net.ipv4.ip_local_port_range", f"40000 {40000 + PORTS - 1}")
        lab.sysctl(lab.name, "net.ipv4.ip_local_port_range", span)
        lab.spawn(lab.peer, "td-backend", [{"kind": "listen", "addr": PEER_ADDR, "port": 80,
                                            "accept": "close-on-eof"}])
        n = int(RATE * seconds)
        load = ([{"kind": "connect", "addr": PEER_ADDR, "port": 80, "n": 4}] if run.pooled
                else [{"kind": "connect", "addr": PEER_ADDR, "port": 80, "n": n,
                       "then": "close", "rate": RATE, "keep_on_error": True}])
        lab.spawn(lab.name, "td-client", load, timeout=seconds + 30, log=lab.event_log)
        if run.pooled:  # the same requests over four kept connections: nothing to wait for
            return {"connects": 4, "failed_connects": 0}
        done = lab.events().get("finished", {})
        return {"connects": int(done.get("made", 0)), "failed_connects":
                int(done.get("failed", 0))}


def _accept_run(target: dict[str, str | None], run: Run) -> dict[str, int]:
    """A burst of connections to a listener that accepts none: what its queue drops."""
    with _sandbox(target, run) as lab:
        lab.spawn(lab.name, "td-app", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080,
                                        "backlog": run.backlog, "accept": "none"}])
        before = _counters(lab).get("TcpExt.ListenOverflows", 0)
        lab.spawn(lab.peer, "td-clients", [{"kind": "connect", "addr": MAIN_ADDR,
                                            "port": 8080, "n": BACKLOG * 4,
                                            "then": "nonblock"}])
        time.sleep(1.5)  # the handshakes and their retries
        return {"listen_overflows": _counters(lab).get("TcpExt.ListenOverflows", 0) - before}


def _tw_run(target: dict[str, str | None], run: Run) -> dict[str, int]:
    """Connections closed by this side: each should spend 60 s in TIME_WAIT."""
    with _sandbox(target, run) as lab:
        lab.sysctl(lab.name, "net.ipv4.ip_local_port_range", "40000 59999")
        lab.spawn(lab.peer, "td-backend", [{"kind": "listen", "addr": PEER_ADDR, "port": 80,
                                            "accept": "close-on-eof"}])
        before = _counters(lab).get("TcpExt.TCPTimeWaitOverflow", 0)
        n = int(RATE * 2)
        lab.spawn(lab.name, "td-client", [{"kind": "connect", "addr": PEER_ADDR, "port": 80,
                                           "n": n, "then": "close", "rate": RATE}],
                  timeout=30, log=lab.event_log)
        time.sleep(0.5)
        skipped = _counters(lab).get("TcpExt.TCPTimeWaitOverflow", 0) - before
        return {"connections": n, "time_wait_skipped": skipped}


def _syn_run(target: dict[str, str | None], run: Run) -> dict[str, int]:
    """Spoofed SYNs (their SYN-ACKs go nowhere) at a listener, then real clients."""
    with _sandbox(target, run) as lab:
        lab.spawn(lab.name, "td-app", [{"kind": "listen", "addr": MAIN_ADDR, "port": 80,
                                        "backlog": 4096}])
        before = _counters(lab)
        lab.spawn(lab.peer, "td-flood", [{"kind": "connect", "addr": MAIN_ADDR, "port": 80,
                                          "n": SYN_FLOOD, "then": "nonblock",
                                          "bind_spread": PHANTOM_NET}], timeout=60)
        time.sleep(0.5)  # the flood's SYNs reach the listener before the real clients'
        lab.spawn(lab.peer, "td-users", [{"kind": "connect", "addr": MAIN_ADDR, "port": 80,
                                          "n": 8, "rate": 50.0, "keep_on_error": True,
                                          "connect_timeout": 1.5}],
                  timeout=60, log=lab.event_log)
        after = _counters(lab)
        done = lab.events().get("finished", {})
        return {"failed_connects": int(done.get("failed", 0)),
                "syns_dropped": after.get("TcpExt.ListenDrops", 0)
                - before.get("TcpExt.ListenDrops", 0)}


def _judge(base: int, got: int) -> str:
    if got > base:
        return "harmful"
    if base == 0:
        return "not reproduced"  # the baseline showed nothing to remove
    return "helps" if got <= base * 0.1 else "does not help"


def prove_ports(finding: str, target: dict[str, str | None],
                seconds: float = SECONDS) -> list[Proof]:
    base = _ports_run(target, Run(), seconds)
    out = []
    timestamps = target.get("net.ipv4.tcp_timestamps") not in ("0", None)
    if target.get("net.ipv4.tcp_tw_reuse") != "1":
        got = _ports_run(target, Run({"net.ipv4.tcp_tw_reuse": "1"}), seconds)
        verdict = _judge(base["failed_connects"], got["failed_connects"])
        why = (Msg("connect() reuses a port whose TIME_WAIT is older than tcp_tw_reuse_delay")
               if verdict == "helps" else
               Msg("tcp_timestamps=0: a TIME_WAIT port is reused only when both sides use "
                   "timestamps") if not timestamps else
               Msg("ports were still taken by TIME_WAIT younger than tcp_tw_reuse_delay"))
        out.append(Proof(finding, "net.ipv4.tcp_tw_reuse = 1", base, got, verdict, why))
    wide = f"40000 {40000 + PORTS * 4 - 1}"
    got = _ports_run(target, Run({"net.ipv4.ip_local_port_range": wide}), seconds)
    out.append(Proof(finding, f"net.ipv4.ip_local_port_range = {wide}", base, got,
                     _judge(base["failed_connects"], got["failed_connects"]),
                     Msg("four times the sandbox's {n} ports: more ports per destination help "
                         "while rate x 60 s stays below the range; the connections per second "
                         "stay what they were", n=PORTS)))
    got = _ports_run(target, Run(pooled=True), seconds)
    out.append(Proof(finding, Msg("application: reuse connections (keep-alive, a pool)"), base,
                     got, _judge(base["failed_connects"], got["failed_connects"]),
                     Msg("no new connection per request, no TIME_WAIT, no port used up")))
    return out


def prove_accept(finding: str, target: dict[str, str | None], backlog: int) -> list[Proof]:
    small = max(min(backlog, BACKLOG), 1)
    somax = str(max(int(target.get("net.core.somaxconn") or 4096), small) * 8)
    base = _accept_run(target, Run(backlog=small))
    alone = _accept_run(target, Run({"net.core.somaxconn": somax}, backlog=small))
    both = _accept_run(target, Run({"net.core.somaxconn": somax}, backlog=small * 8))
    key = "listen_overflows"
    return [
        Proof(finding, f"net.core.somaxconn = {somax}", base, alone,
              _judge(base[key], alone[key]),
              Msg("the accept queue holds min(listen() backlog, somaxconn): the application "
                  "still listens with backlog {n}", n=small)),
        Proof(finding, Msg("net.core.somaxconn = {v} and the application's listen() backlog "
                           "x8", v=somax), base, both, _judge(base[key], both[key]),
              Msg("both limits of the queue raised")),
    ]


def prove_tw_buckets(finding: str, target: dict[str, str | None]) -> list[Proof]:
    base = _tw_run(target, Run())
    low = _tw_run(target, Run({"net.ipv4.tcp_max_tw_buckets": "50"}))
    key = "time_wait_skipped"
    return [Proof(finding, Msg("net.ipv4.tcp_max_tw_buckets lowered (50 here; blog posts say "
                               "5000)"), base, low, _judge(base[key], low[key]),
                  Msg("past the cap connections skip TIME_WAIT (TCPTimeWaitOverflow): late "
                      "segments of an old connection can reach a new one, and the kernel "
                      "logs nothing"))]


def prove_syn(finding: str, target: dict[str, str | None]) -> list[Proof]:
    base = _syn_run(target, Run())
    out = []
    key = "failed_connects"
    if target.get("net.ipv4.tcp_syncookies") != "1":
        got = _syn_run(target, Run({"net.ipv4.tcp_syncookies": "1"}))
        out.append(Proof(finding, "net.ipv4.tcp_syncookies = 1", base, got,
                         _judge(base[key], got[key]),
                         Msg("past a full SYN queue the listener answers with cookies instead "
                             "of dropping: real clients still connect")))
    bigger = str(max(int(target.get("net.ipv4.tcp_max_syn_backlog") or 128), 128) * 4)
    got = _syn_run(target, Run({"net.ipv4.tcp_max_syn_backlog": bigger}))
    cookies = target.get("net.ipv4.tcp_syncookies") == "1"
    why = (Msg("with syncookies on, the SYN queue's length changes what it holds, not who "
               "connects") if cookies else
           Msg("a longer SYN queue holds this flood ({n:,} SYNs) with room left for real "
               "clients: it helps only while floods stay smaller than it; cookies do not "
               "depend on the flood's size", n=SYN_FLOOD))
    out.append(Proof(finding, f"net.ipv4.tcp_max_syn_backlog = {bigger}", base, got,
                     _judge(base[key], got[key]), why))
    return out


# finding id -> the experiments that prove its advice
PATTERNS: dict[str, tuple[str, ...]] = {
    "EPHEMERAL_PORT_EXHAUSTION": ("ports", "tw_buckets"),
    "TIME_WAIT_CLIENT_SHORT": ("ports", "tw_buckets"),
    "TIME_WAIT_SERVER_CLOSE": ("tw_buckets",),
    "TW_BUCKET_OVERFLOW": ("tw_buckets",),
    "ACCEPT_QUEUE_OVERFLOW": ("accept",),
    "SYN_FLOOD": ("syn",),
}


def prove(finding: str, target: dict[str, str | None], backlog: int = BACKLOG,
          seconds: float = SECONDS) -> list[Proof]:
    out: list[Proof] = []
    for pattern in PATTERNS.get(finding, ()):
        if pattern == "ports":
            out += prove_ports(finding, target, seconds)
        elif pattern == "accept":
            out += prove_accept(finding, target, backlog)
        elif pattern == "syn":
            out += prove_syn(finding, target)
        else:
            out += prove_tw_buckets(finding, target)
    return out


def sysctl_of(change: str) -> str | None:
    """The key a proof's change sets ("net.ipv4.tcp_tw_reuse = 1"), None for others."""
    key, sep, _ = change.partition(" = ")
    return key if sep and key.startswith(("net.", "fs.")) else None
