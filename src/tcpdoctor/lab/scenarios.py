"""The lab's pathologies. Each builds its sockets in a LabNet and states what `check` should say.

The main namespace is the "server" being diagnosed; the peer plays clients or backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.lab.net import MAIN_ADDR, PEER_ADDR, PHANTOM_NET, LabNet
from tcpdoctor.sources.live import take_snapshot


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    finding: str | None  # the finding id check should report (None: healthy)
    severity: str | None
    default_n: int
    process: str | None  # process name the finding should name
    port: int | None  # port the finding's evidence should name
    build: Callable[[LabNet, int], None]
    settle: tuple[str, float]  # (state, share of n) that must be present before holding
    refresh: Callable[[LabNet, int], None] | None = None  # re-run the load: TIME_WAIT and
    refresh_every: float = 50.0  # SYN_RECV expire after ~60 s, so the lab renews them
    check_args: tuple[str, ...] = field(default=())
    age: float = 0.0  # seconds to wait once settled (findings about how long things last)


def _tw_server(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-web", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080,
                                    "accept": "close"}])
    _tw_server_load(lab, n)


def _tw_server_load(lab: LabNet, n: int) -> None:
    lab.retire("td-loadgen")
    lab.spawn(lab.peer, "td-loadgen", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                        "n": n, "then": "wait-eof-close"}])


def _tw_client(lab: LabNet, n: int) -> None:
    lab.spawn(lab.peer, "td-api", [{"kind": "listen", "addr": PEER_ADDR, "port": 8080,
                                    "accept": "close-on-eof"}])
    _tw_client_load(lab, n)


def _tw_client_load(lab: LabNet, n: int) -> None:
    lab.retire("td-client")
    lab.spawn(lab.name, "td-client", [
        {"kind": "connect", "addr": PEER_ADDR, "port": 8080, "n": n, "then": "close"},
        {"kind": "connect", "addr": PEER_ADDR, "port": 8080, "n": 2},  # requests in flight
    ])


def _close_wait(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-leaky", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080}])
    lab.spawn(lab.peer, "td-peer", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                     "n": n, "then": "close"}])


def _syn_flood(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-listener", [{"kind": "listen", "addr": MAIN_ADDR, "port": 80}])
    _syn_flood_load(lab, n)


def _syn_flood_load(lab: LabNet, n: int) -> None:
    # Spoofed sources inside 198.19.0.0/16: the SYN-ACKs are routed to the peer, which drops
    # them, so the handshakes stay half-open.
    lab.spawn(lab.peer, "td-flooder", [{"kind": "connect", "addr": MAIN_ADDR, "port": 80,
                                        "n": n, "then": "nonblock",
                                        "bind_spread": PHANTOM_NET}])


def _accept_overflow(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-slowapp", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080,
                                        "backlog": 16, "accept": "none"}])
    lab.spawn(lab.peer, "td-clients", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                        "n": n, "then": "nonblock"}])


def _scan(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-scanner", [{"kind": "connect", "spread": PHANTOM_NET, "port": 445,
                                        "n": n, "then": "nonblock"}])


def _dead_upstream(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-app", [{"kind": "connect", "addr": "198.19.0.10", "port": 5432,
                                    "n": n, "then": "nonblock"}])


def _idle(lab: LabNet, n: int) -> None:
    lab.spawn(lab.peer, "td-redis", [{"kind": "listen", "addr": PEER_ADDR, "port": 6379}])
    lab.spawn(lab.name, "td-pool", [{"kind": "connect", "addr": PEER_ADDR, "port": 6379,
                                     "n": n}])


def _port_exhaustion(lab: LabNet, n: int) -> None:
    lab.sysctl(lab.name, "net.ipv4.ip_local_port_range", "40000 40999")
    lab.spawn(lab.peer, "td-backend", [{"kind": "listen", "addr": PEER_ADDR, "port": 80}])
    lab.spawn(lab.name, "td-client", [{"kind": "connect", "addr": PEER_ADDR, "port": 80,
                                       "n": n}])


def _memory_hog(lab: LabNet, n: int) -> None:
    # Receive buffers start at tcp_rmem's middle value and grow only as the application
    # reads: 4 MiB here (this namespace only) lets a sink that never reads hold that much.
    lab.sysctl(lab.name, "net.ipv4.tcp_rmem", "4096 4194304 8388608")
    lab.spawn(lab.name, "td-sink", [{"kind": "listen", "addr": MAIN_ADDR, "port": 9000}])
    lab.spawn(lab.peer, "td-producer", [{"kind": "connect", "addr": MAIN_ADDR, "port": 9000,
                                         "n": n, "then": "fill", "bytes": 8 << 20}])


def _unread_close_wait(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-api", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080}])
    lab.spawn(lab.peer, "td-caller", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                       "n": n, "then": "send-close", "bytes": 32768}])


def _stalled_reader(lab: LabNet, n: int) -> None:
    # The server stops reading (a blocked worker pool): each receive buffer fills to its
    # default size, tens of MB over a few hundred connections, far below SOCKET_MEMORY_HOG.
    lab.spawn(lab.name, "td-worker", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080}])
    lab.spawn(lab.peer, "td-caller", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                       "n": n, "then": "fill", "bytes": 4 << 20}])


def _peer_not_reading(lab: LabNet, n: int) -> None:
    # This host sends to consumers that stopped reading: its send queues stay full.
    lab.spawn(lab.peer, "td-consumer", [{"kind": "listen", "addr": PEER_ADDR, "port": 9092}])
    lab.spawn(lab.name, "td-publisher", [{"kind": "connect", "addr": PEER_ADDR, "port": 9092,
                                          "n": n, "then": "fill", "bytes": 4 << 20}])


def _busy_reader(lab: LabNet, n: int) -> None:
    # The same load as stalled-reader, read as it arrives: nothing waits, nothing to report.
    lab.spawn(lab.name, "td-worker", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080,
                                       "accept": "close-on-eof"}])
    lab.spawn(lab.peer, "td-caller", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                       "n": n, "then": "fill", "bytes": 256 << 10}])


# The ramps: a client opening and closing connections to one destination at a fixed rate,
# closing first (TIME_WAIT on its side, 60 s each), with tcp_tw_reuse off so that a port
# in TIME_WAIT cannot be reused: in a range of R ports it runs out after R / rate seconds,
# unless rate x 60 < R, where TIME_WAIT levels off. The worker notes its first failure;
# two connections it holds (requests in flight) name it as the owner of the TIME_WAIT.
RAMP_RATE = 25.0  # connections a second
RAMP_RANGE = "40000 40999"  # 1,000 ports: out after 40 s
PLATEAU_RATE = 10.0
PLATEAU_RANGE = "40000 41999"  # 2,000 ports; TIME_WAIT levels at 600
FD_RAMP_RATE = 10.0
FD_RAMP_LIMIT = 600  # the leaking server's RLIMIT_NOFILE: out after about 60 s


def _port_ramp(lab: LabNet, n: int, rate: float = RAMP_RATE, span: str = RAMP_RANGE) -> None:
    lab.sysctl(lab.name, "net.ipv4.ip_local_port_range", span)
    lab.sysctl(lab.name, "net.ipv4.tcp_tw_reuse", "0")
    lab.spawn(lab.peer, "td-backend", [{"kind": "listen", "addr": PEER_ADDR, "port": 80,
                                        "accept": "close-on-eof"}])
    lab.spawn(lab.name, "td-client", [
        {"kind": "connect", "addr": PEER_ADDR, "port": 80, "n": 2},  # requests in flight
        {"kind": "connect", "addr": PEER_ADDR, "port": 80, "n": n, "then": "close",
         "rate": rate, "background": True, "keep_on_error": True}], log=lab.event_log)


def _port_plateau(lab: LabNet, n: int) -> None:
    _port_ramp(lab, n, PLATEAU_RATE, PLATEAU_RANGE)


def _fd_ramp(lab: LabNet, n: int) -> None:
    # A server that never closes, under a small open-files limit: each client that closes
    # leaves a CLOSE_WAIT and a descriptor behind, FD_RAMP_RATE a second.
    lab.spawn(lab.name, "td-leaky", [{"kind": "listen", "addr": MAIN_ADDR, "port": 8080}],
              nofile=FD_RAMP_LIMIT, log=lab.event_log)
    lab.spawn(lab.peer, "td-peer", [{"kind": "connect", "addr": MAIN_ADDR, "port": 8080,
                                     "n": n, "then": "close", "rate": FD_RAMP_RATE,
                                     "background": True}], log=lab.event_log)


def _healthy(lab: LabNet, n: int) -> None:
    lab.spawn(lab.name, "td-web", [{"kind": "listen", "addr": MAIN_ADDR, "port": 80}])
    lab.spawn(lab.peer, "td-users", [{"kind": "connect", "addr": MAIN_ADDR, "port": 80,
                                      "n": n}])


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("time-wait-server", Msg("a server that closes every connection first"),
             "TIME_WAIT_SERVER_CLOSE", "warning", 3000, "td-web", 8080, _tw_server,
             ("TIME_WAIT", 0.95), refresh=_tw_server_load),
    Scenario("time-wait-client", Msg("a client that opens a new connection per request"),
             "TIME_WAIT_CLIENT_SHORT", "warning", 3000, "td-client", 8080, _tw_client,
             ("TIME_WAIT", 0.95), refresh=_tw_client_load),
    Scenario("close-wait", Msg("a server that never closes connections its clients closed"),
             "CLOSE_WAIT_LEAK", "warning", 200, "td-leaky", 8080, _close_wait,
             ("CLOSE_WAIT", 1.0)),
    Scenario("syn-flood", Msg("half-open SYN_RECV from spoofed sources"),
             "SYN_FLOOD", "warning", 300, "td-listener", 80, _syn_flood,
             ("SYN_RECV", 0.95), refresh=_syn_flood_load),
    Scenario("accept-overflow", Msg("a listener (backlog 16) that never accepts"),
             "ACCEPT_QUEUE_OVERFLOW", "critical", 100, "td-slowapp", 8080, _accept_overflow,
             ("ESTABLISHED", 0.16)),
    Scenario("scan", Msg("SYN_SENT to many distinct hosts (a worm)"),
             "OUTBOUND_SCAN", "critical", 200, "td-scanner", 445, _scan, ("SYN_SENT", 1.0)),
    Scenario("dead-upstream", Msg("a backend that never answers"),
             "UPSTREAM_UNREACHABLE", "warning", 100, "td-app", 5432, _dead_upstream,
             ("SYN_SENT", 1.0)),
    Scenario("idle", Msg("pooled connections that never carry data"),
             "IDLE_ESTABLISHED", "warning", 200, "td-pool", 6379, _idle, ("ESTABLISHED", 1.0),
             check_args=("--threshold", "IDLE_ESTABLISHED.idle_seconds=2"), age=2.5),
    Scenario("port-exhaustion", Msg("one destination using 90% of a 1000-port range"),
             "EPHEMERAL_PORT_EXHAUSTION", "critical", 900, "td-client", 80, _port_exhaustion,
             ("ESTABLISHED", 1.0)),
    Scenario("memory-hog", Msg("a server that stopped reading: receive buffers fill up"),
             "SOCKET_MEMORY_HOG", "warning", 48, "td-sink", 9000, _memory_hog,
             ("ESTABLISHED", 1.0), age=2.5),  # a stalled reader too, once its data is 2 s old
    Scenario("unread-close-wait", Msg("CLOSE_WAIT sockets holding data nobody reads"),
             "CLOSE_WAIT_LEAK", "warning", 300, "td-api", 8080, _unread_close_wait,
             ("CLOSE_WAIT", 1.0)),
    Scenario("stalled-reader", Msg("a server whose workers stopped reading its connections"),
             "STALLED_READER", "warning", 300, "td-worker", 8080, _stalled_reader,
             ("ESTABLISHED", 1.0), age=2.5),
    Scenario("peer-not-reading", Msg("a publisher whose consumers stopped reading"),
             "PEER_NOT_READING", "warning", 100, "td-publisher", 9092, _peer_not_reading,
             ("ESTABLISHED", 1.0)),
    Scenario("busy-reader", Msg("the stalled-reader load, read as it arrives"),
             None, None, 300, "td-worker", 8080, _busy_reader, ("ESTABLISHED", 1.0), age=2.5),
    Scenario("port-ramp", Msg("a client whose ports to one backend run out in 40 s"),
             "EPHEMERAL_PORT_EXHAUSTION", "critical", 3000, "td-client", 80, _port_ramp,
             ("TIME_WAIT", 0.0), age=2.0),
    Scenario("port-plateau", Msg("the same client at a rate whose TIME_WAIT levels off"),
             None, None, 3000, "td-client", 80, _port_plateau, ("TIME_WAIT", 0.0), age=2.0),
    Scenario("fd-ramp", Msg("a CLOSE_WAIT leak growing towards a 600 open-files limit"),
             "CLOSE_WAIT_LEAK", "critical", 3000, "td-leaky", 8080, _fd_ramp,
             ("CLOSE_WAIT", 0.0), age=12.0),
    Scenario("healthy", Msg("a listener with a few hundred ESTABLISHED clients"),
             None, None, 300, "td-web", 80, _healthy, ("ESTABLISHED", 1.0)),
)}


def get(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise TcpDoctorError(Msg("unknown lab scenario {name!r} (choose from {choices})",
                                 name=name, choices=', '.join(SCENARIOS)))
    return SCENARIOS[name]


def wait_settled(lab: LabNet, scenario: Scenario, n: int, timeout: float = 60.0) -> int:
    """Wait until the scenario's state holds its share of n sockets in the main namespace."""
    state, share = scenario.settle
    want = int(share * n)
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = take_snapshot(netns_name=lab.name, want=frozenset({"state"})).state_counts()[state]
        if count >= want:
            return count
        time.sleep(0.2)
    raise TcpDoctorError(Msg("lab {name}: only {count} of {want} {state} sockets "
                             "appeared within {timeout:.0f} s", name=scenario.name,
                             count=count, want=want, state=state, timeout=timeout))


# Files a lab process needs besides its sockets (the interpreter, pipes, the listener).
FD_OVERHEAD = 64


def build(lab: LabNet, scenario: Scenario, n: int) -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and n + FD_OVERHEAD > hard:
        raise TcpDoctorError(Msg(
            "lab {name}: {n:,} sockets are {n:,} open files in one lab process, and this "
            "system allows {hard:,} per process (RLIMIT_NOFILE hard limit): use --sockets "
            "{most:,} or fewer, or raise the limit (ulimit -Hn)", name=scenario.name, n=n,
            hard=hard, most=max(hard - FD_OVERHEAD, 1)))
    scenario.build(lab, n)
    count = wait_settled(lab, scenario, n)
    time.sleep(scenario.age)  # e.g. past the 2 s idle or stall thresholds
    return count
